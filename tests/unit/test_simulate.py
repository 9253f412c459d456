"""Request simulator over hand-built Envoy xDS resources."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import any_pb2, wrappers_pb2
from google.protobuf.message import Message

from gossamer.debug import Request, SimulationError, simulate
from gossamer.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

REVIEWS = "reviews.default.svc.cluster.local"
V1 = f"outbound|9080|v1|{REVIEWS}"
V2 = f"outbound|9080|v2|{REVIEWS}"
V3 = f"outbound|9080|v3|{REVIEWS}"
RATINGS = "outbound|9080||ratings.default.svc.cluster.local"
MYSQL = "outbound|3306||mysql.default.svc.cluster.local"
MYSQL_VIP = "10.96.0.30"
PASSTHROUGH = "PassthroughCluster"


def _any(msg: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg)
    return out


def _addr(ip: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=ip, port_value=port))


def _hcm(rds: str = "", inline: route_pb2.RouteConfiguration | None = None, **kw: object) -> lc.Filter:
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix="x", **kw)
    if inline is not None:
        hcm.route_config.CopyFrom(inline)
    else:
        hcm.rds.route_config_name = rds
    return lc.Filter(name="envoy.filters.network.http_connection_manager", typed_config=_any(hcm))


def _tcp(cluster: str = "", weighted: tuple[tuple[str, int], ...] = ()) -> lc.Filter:
    tcp = tcp_proxy_pb2.TcpProxy(stat_prefix="x")
    if weighted:
        tcp.weighted_clusters.clusters.extend(
            tcp_proxy_pb2.TcpProxy.WeightedCluster.ClusterWeight(name=n, weight=w) for n, w in weighted
        )
    else:
        tcp.cluster = cluster
    return lc.Filter(name="envoy.filters.network.tcp_proxy", typed_config=_any(tcp))


def _listener(name: str, ip: str, port: int, *filters: lc.Filter, bind: bool = True) -> listener_pb2.Listener:
    out = listener_pb2.Listener(name=name, address=_addr(ip, port), filter_chains=[lc.FilterChain(filters=filters)])
    if not bind:
        out.bind_to_port.value = False
    return out


def _sm(**kw: object) -> string_pb2.StringMatcher:
    return string_pb2.StringMatcher(**kw)


def _regex(pattern: str) -> regex_pb2.RegexMatcher:
    return regex_pb2.RegexMatcher(regex=pattern)


def _route(match: rc.RouteMatch, cluster: str = "", name: str = "", **kw: object) -> rc.Route:
    route = rc.Route(name=name, match=match, **kw)
    if cluster:
        route.route.cluster = cluster
    return route


def _weighted(*entries: tuple[str, int]) -> rc.RouteAction:
    return rc.RouteAction(
        weighted_clusters=rc.WeightedCluster(
            clusters=[
                rc.WeightedCluster.ClusterWeight(name=n, weight=wrappers_pb2.UInt32Value(value=w)) for n, w in entries
            ]
        )
    )


def _reviews_vhost() -> rc.VirtualHost:
    return rc.VirtualHost(
        name=f"{REVIEWS}:9080",
        domains=[REVIEWS, f"{REVIEWS}:9080", "reviews", "reviews:9080", "reviews.default", "reviews.default:9080"],
        request_headers_to_add=[base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key="x-vh", value="1"))],
        routes=[
            _route(
                rc.RouteMatch(prefix="/", headers=[rc.HeaderMatcher(name="end-user", string_match=_sm(exact="jason"))]),
                V2,
                name="jason",
                decorator=rc.Decorator(operation="reviews-v2"),
                request_headers_to_add=[
                    base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key="x-route", value="jason"))
                ],
            ),
            rc.Route(
                name="canary",
                match=rc.RouteMatch(prefix="/", headers=[rc.HeaderMatcher(name="x-canary", present_match=True)]),
                route=_weighted((V1, 80), (V3, 20)),
            ),
            _route(rc.RouteMatch(safe_regex=_regex(r"/reviews/[0-9]+/raw")), V3, name="regex"),
            _route(
                rc.RouteMatch(path="/Exact", case_sensitive=wrappers_pb2.BoolValue(value=False)), V3, name="exact-ci"
            ),
            _route(
                rc.RouteMatch(
                    prefix="/api",
                    headers=[rc.HeaderMatcher(name="x-env", string_match=_sm(prefix="prod"), invert_match=True)],
                ),
                V3,
                name="not-prod",
            ),
            _route(
                rc.RouteMatch(
                    prefix="/", query_parameters=[rc.QueryParameterMatcher(name="debug", string_match=_sm(exact="on"))]
                ),
                V3,
                name="debug-query",
            ),
            rc.Route(
                name="old",
                match=rc.RouteMatch(path_separated_prefix="/old"),
                redirect=rc.RedirectAction(path_redirect="/new", response_code=rc.RedirectAction.FOUND),
            ),
            rc.Route(
                name="teapot",
                match=rc.RouteMatch(prefix="/teapot"),
                direct_response=rc.DirectResponseAction(status=418),
            ),
            _route(rc.RouteMatch(prefix="/"), V1, name="default"),
        ],
    )


def _mesh(with_clusters: bool = False) -> dict[str, dict[str, Message]]:
    outbound = listener_pb2.Listener(
        name="virtualOutbound",
        address=_addr("0.0.0.0", 15001),
        use_original_dst=wrappers_pb2.BoolValue(value=True),
        default_filter_chain=lc.FilterChain(name="PassthroughFilterChain", filters=[_tcp(PASSTHROUGH)]),
    )
    inbound = listener_pb2.Listener(
        name="virtualInbound",
        address=_addr("0.0.0.0", 15006),
        filter_chains=[
            lc.FilterChain(
                name="0.0.0.0_9080",
                filter_chain_match=lc.FilterChainMatch(destination_port=wrappers_pb2.UInt32Value(value=9080)),
                filters=[
                    _hcm(
                        inline=route_pb2.RouteConfiguration(
                            name="inbound|9080||",
                            virtual_hosts=[
                                rc.VirtualHost(
                                    name="inbound|http|9080",
                                    domains=["*"],
                                    routes=[
                                        _route(
                                            rc.RouteMatch(prefix="/"),
                                            "inbound|9080||",
                                            decorator=rc.Decorator(operation="reviews:9080/*"),
                                        )
                                    ],
                                )
                            ],
                        )
                    )
                ],
            ),
            lc.FilterChain(
                name="0.0.0.0_3306",
                filter_chain_match=lc.FilterChainMatch(destination_port=wrappers_pb2.UInt32Value(value=3306)),
                filters=[_tcp("inbound|3306||")],
            ),
        ],
        default_filter_chain=lc.FilterChain(
            name="InboundPassthroughFilterChain", filters=[_tcp("InboundPassthroughCluster")]
        ),
    )
    http = _listener("0.0.0.0_9080", "0.0.0.0", 9080, _hcm(rds="9080"), bind=False)
    mysql = _listener(f"{MYSQL_VIP}_3306", MYSQL_VIP, 3306, _tcp(MYSQL), bind=False)
    wildcard_3306 = _listener("0.0.0.0_3306", "0.0.0.0", 3306, _tcp(weighted=(("a", 60), ("b", 40))), bind=False)
    routes = route_pb2.RouteConfiguration(
        name="9080",
        virtual_hosts=[
            _reviews_vhost(),
            rc.VirtualHost(
                name="ratings.default.svc.cluster.local:9080",
                domains=["ratings:9080", "*.ratings.example"],
                routes=[_route(rc.RouteMatch(prefix="/"), RATINGS)],
            ),
            rc.VirtualHost(name="allow_any", domains=["*"], routes=[_route(rc.RouteMatch(prefix="/"), PASSTHROUGH)]),
        ],
    )
    res: dict[str, dict[str, Message]] = {
        LISTENER: {lis.name: lis for lis in (outbound, inbound, http, mysql, wildcard_3306)},
        ROUTE: {"9080": routes},
    }
    if with_clusters:
        res[CLUSTER] = {n: cluster_pb2.Cluster(name=n, type=cluster_pb2.Cluster.EDS) for n in (V1, V2)}
        res[ENDPOINT] = {
            V1: endpoint_pb2.ClusterLoadAssignment(
                cluster_name=V1,
                endpoints=[
                    endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint_components_pb2.LbEndpoint()])
                ],
            )
        }
    return res


def _go(**kw: object) -> object:
    return simulate(_mesh(), Request(**kw))  # type: ignore[arg-type]


def test_jason_reaches_v2_with_headers_and_operation() -> None:
    r = simulate(_mesh(), Request(host="reviews:9080", path="/reviews/0", headers={"end-user": "jason"}, port=9080))
    assert r.listener == "0.0.0.0_9080"
    assert r.route_config == "9080"
    assert r.virtual_host == f"{REVIEWS}:9080"
    assert r.route == "jason"
    assert r.operation == "reviews-v2"
    assert r.cluster == V2 and r.clusters == ((V2, 100),)
    assert r.status is None
    assert r.request_headers_to_add == (("x-route", "jason"), ("x-vh", "1"))
    text = "\n".join(r.explanation)
    assert "listener 0.0.0.0_9080 (original destination port 9080" in text
    assert "matched domain 'reviews:9080' exactly" in text
    assert "route #1 'jason': prefix '/' and header end-user exact 'jason' (value 'jason') matched" in text


def test_anonymous_reaches_v1() -> None:
    r = simulate(_mesh(), Request(host="reviews:9080", path="/reviews/0", port=9080))
    assert r.cluster == V1 and r.route == "default"
    assert "header end-user exact 'jason' (header absent) did not match" in "\n".join(r.explanation)


def test_header_value_mismatch_is_v1() -> None:
    r = simulate(_mesh(), Request(host="reviews:9080", headers={"end-user": "Jason"}, port=9080))
    assert r.cluster == V1


def test_unknown_host_goes_to_passthrough() -> None:
    r = simulate(_mesh(), Request(host="example.com:9080", port=9080))
    assert r.virtual_host == "allow_any" and r.cluster == PASSTHROUGH


def test_host_without_port_matches_only_declared_domains() -> None:
    # "ratings" (no port) is only declared as "ratings:9080": the full authority is compared.
    r = simulate(_mesh(), Request(host="ratings", port=9080))
    assert r.cluster == PASSTHROUGH
    r = simulate(_mesh(), Request(host="ratings:9080", port=9080))
    assert r.cluster == RATINGS


def test_port_hint_when_domain_lacks_port() -> None:
    routes = route_pb2.RouteConfiguration(
        name="gw",
        virtual_hosts=[
            rc.VirtualHost(name="bookinfo", domains=["bookinfo.com"], routes=[_route(rc.RouteMatch(prefix="/"), V1)])
        ],
    )
    res: dict[str, dict[str, Message]] = {
        LISTENER: {"0.0.0.0_8080": _listener("0.0.0.0_8080", "0.0.0.0", 8080, _hcm(rds="gw"))},
        ROUTE: {"gw": routes},
    }
    r = simulate(res, Request(host="bookinfo.com:8080", port=8080))
    assert r.status == 404 and r.virtual_host is None and r.clusters == ()
    assert any("including ':8080'" in step for step in r.explanation)
    assert simulate(res, Request(host="BookInfo.com", port=8080)).cluster == V1


def test_vhost_precedence_exact_suffix_prefix_default() -> None:
    def vh(name: str, *domains: str) -> rc.VirtualHost:
        return rc.VirtualHost(name=name, domains=domains, routes=[_route(rc.RouteMatch(prefix="/"), name)])

    routes = route_pb2.RouteConfiguration(
        name="r",
        virtual_hosts=[
            vh("default", "*"),
            vh("prefix", "api.*"),
            vh("short-suffix", "*.com"),
            vh("long-suffix", "*.example.com"),
            vh("exact", "api.example.com"),
        ],
    )
    res: dict[str, dict[str, Message]] = {LISTENER: {"gw": _listener("gw", "0.0.0.0", 80, _hcm(inline=routes))}}
    assert simulate(res, Request(host="api.example.com")).cluster == "exact"
    assert simulate(res, Request(host="www.example.com")).cluster == "long-suffix"
    assert simulate(res, Request(host="www.other.com")).cluster == "short-suffix"
    assert simulate(res, Request(host="api.other.org")).cluster == "prefix"
    assert simulate(res, Request(host="other.org")).cluster == "default"
    # A wildcard must cover at least one character.
    assert simulate(res, Request(host=".com")).cluster == "default"


def test_weighted_split_reported_with_weights() -> None:
    r = simulate(_mesh(), Request(host="reviews:9080", headers={"x-canary": ""}, port=9080))
    assert r.route == "canary"
    assert r.clusters == ((V1, 80), (V3, 20))
    assert r.cluster is None


def test_regex_path_is_full_match_without_query() -> None:
    assert simulate(_mesh(), Request(host="reviews:9080", path="/reviews/12/raw?x=1", port=9080)).route == "regex"
    assert simulate(_mesh(), Request(host="reviews:9080", path="/reviews/12/raw/more", port=9080)).route == "default"


def test_exact_path_case_insensitive() -> None:
    assert simulate(_mesh(), Request(host="reviews:9080", path="/eXaCt", port=9080)).route == "exact-ci"
    assert simulate(_mesh(), Request(host="reviews:9080", path="/exact/x", port=9080)).route == "default"


def test_case_sensitive_prefix_by_default() -> None:
    assert simulate(_mesh(), Request(host="reviews:9080", path="/Teapot", port=9080)).route == "default"
    r = simulate(_mesh(), Request(host="reviews:9080", path="/teapot/x", port=9080))
    assert r.route == "teapot" and r.status == 418 and r.clusters == ()


def test_inverted_header_match() -> None:
    ok = simulate(_mesh(), Request(host="reviews:9080", path="/api", headers={"x-env": "staging"}, port=9080))
    assert ok.route == "not-prod"
    prod = simulate(_mesh(), Request(host="reviews:9080", path="/api", headers={"x-env": "production"}, port=9080))
    assert prod.route == "default"
    # Envoy: an absent header never satisfies a value matcher, inverted or not.
    assert simulate(_mesh(), Request(host="reviews:9080", path="/api", port=9080)).route == "default"


def test_query_parameters() -> None:
    assert simulate(_mesh(), Request(host="reviews:9080", path="/p?a=1&debug=on", port=9080)).route == "debug-query"
    assert simulate(_mesh(), Request(host="reviews:9080", path="/p?debug=off&debug=on", port=9080)).route == "default"
    assert simulate(_mesh(), Request(host="reviews:9080", path="/p?debug=%6Fn", port=9080)).route == "debug-query"


def test_path_separated_prefix_redirect() -> None:
    assert simulate(_mesh(), Request(host="reviews:9080", path="/old/x", port=9080)).status == 302
    assert simulate(_mesh(), Request(host="reviews:9080", path="/old", port=9080)).status == 302
    assert simulate(_mesh(), Request(host="reviews:9080", path="/older", port=9080)).route == "default"


def test_inbound_port_chain() -> None:
    r = simulate(_mesh(), Request(host="reviews:9080", port=9080, address="10.0.0.5", inbound=True))
    assert (r.listener, r.filter_chain, r.cluster) == ("virtualInbound", "0.0.0.0_9080", "inbound|9080||")
    assert r.operation == "reviews:9080/*"
    tcp = simulate(_mesh(), Request(host="", port=3306, inbound=True))
    assert (tcp.filter_chain, tcp.cluster, tcp.route_config) == ("0.0.0.0_3306", "inbound|3306||", None)
    other = simulate(_mesh(), Request(host="x", port=7777, inbound=True))
    assert (other.filter_chain, other.cluster) == ("InboundPassthroughFilterChain", "InboundPassthroughCluster")


def test_exact_ip_listener_beats_wildcard() -> None:
    r = simulate(_mesh(), Request(host="mysql", port=3306, address=MYSQL_VIP))
    assert r.listener == f"{MYSQL_VIP}_3306" and r.cluster == MYSQL and r.route is None
    other = simulate(_mesh(), Request(host="mysql", port=3306, address="10.96.0.99"))
    assert other.listener == "0.0.0.0_3306" and other.clusters == (("a", 60), ("b", 40))


def test_unknown_port_uses_virtual_outbound_default_chain() -> None:
    r = simulate(_mesh(), Request(host="example.com", port=5555, address="1.2.3.4"))
    assert (r.listener, r.filter_chain, r.cluster) == ("virtualOutbound", "PassthroughFilterChain", PASSTHROUGH)


def test_gateway_404_without_catch_all_vhost() -> None:
    routes = route_pb2.RouteConfiguration(
        name="http.8080",
        virtual_hosts=[
            rc.VirtualHost(
                name="bookinfo.com:80",
                domains=["bookinfo.com"],
                routes=[_route(rc.RouteMatch(prefix="/productpage"), "outbound|9080||productpage")],
            )
        ],
    )
    res: dict[str, dict[str, Message]] = {
        LISTENER: {"0.0.0.0_8080": _listener("0.0.0.0_8080", "0.0.0.0", 8080, _hcm(rds="http.8080"))},
        ROUTE: {"http.8080": routes},
    }
    assert simulate(res, Request(host="evil.com", port=8080)).status == 404
    r = simulate(res, Request(host="bookinfo.com", path="/static", port=8080))
    assert r.status == 404 and r.virtual_host == "bookinfo.com:80" and r.route is None
    assert simulate(res, Request(host="bookinfo.com", path="/productpage", port=8080)).status is None
    with pytest.raises(SimulationError):
        simulate(res, Request(host="bookinfo.com", port=9999))


def test_gateway_ignores_unbound_listeners() -> None:
    res: dict[str, dict[str, Message]] = {LISTENER: {"x": _listener("x", "0.0.0.0", 80, _tcp("c"), bind=False)}}
    with pytest.raises(SimulationError):
        simulate(res, Request(host="a"))


def test_missing_rds_and_no_listeners_raise() -> None:
    with pytest.raises(SimulationError):
        simulate({}, Request(host="a"))
    res = _mesh()
    del res[ROUTE]["9080"]
    with pytest.raises(SimulationError, match="RDS"):
        simulate(res, Request(host="reviews:9080", port=9080))


def test_cluster_missing_from_cds_is_503_and_endpoints_are_described() -> None:
    res = _mesh(with_clusters=True)
    r = simulate(res, Request(host="reviews:9080", port=9080))
    assert r.cluster == V1 and r.status is None
    assert any("1 endpoint(s)" in s for s in r.explanation)
    missing = simulate(res, Request(host="ratings:9080", port=9080))
    assert missing.cluster == RATINGS and missing.status == 503


def test_cluster_header_and_present_match_false() -> None:
    routes = route_pb2.RouteConfiguration(
        name="r",
        virtual_hosts=[
            rc.VirtualHost(
                name="v",
                domains=["*"],
                routes=[
                    rc.Route(
                        match=rc.RouteMatch(
                            prefix="/", headers=[rc.HeaderMatcher(name="x-cluster", present_match=False)]
                        ),
                        direct_response=rc.DirectResponseAction(status=400),
                    ),
                    rc.Route(match=rc.RouteMatch(prefix="/"), route=rc.RouteAction(cluster_header="x-cluster")),
                ],
            )
        ],
    )
    res: dict[str, dict[str, Message]] = {LISTENER: {"gw": _listener("gw", "0.0.0.0", 80, _hcm(inline=routes))}}
    assert simulate(res, Request(host="a")).status == 400
    r = simulate(res, Request(host="a", headers={"x-cluster": "dyn"}))
    assert r.cluster == "dyn" and r.status is None


def test_pseudo_header_matchers() -> None:
    routes = route_pb2.RouteConfiguration(
        name="r",
        virtual_hosts=[
            rc.VirtualHost(
                name="v",
                domains=["*"],
                routes=[
                    _route(
                        rc.RouteMatch(
                            prefix="/",
                            headers=[
                                rc.HeaderMatcher(name=":method", string_match=_sm(exact="POST")),
                                rc.HeaderMatcher(name=":path", string_match=_sm(suffix="?v=2")),
                            ],
                        ),
                        "post-v2",
                    ),
                    _route(
                        rc.RouteMatch(
                            prefix="/",
                            headers=[
                                rc.HeaderMatcher(
                                    name=":authority", string_match=_sm(contains="EXAMPLE", ignore_case=True)
                                )
                            ],
                        ),
                        "example",
                    ),
                    _route(rc.RouteMatch(prefix="/"), "other"),
                ],
            )
        ],
    )
    res: dict[str, dict[str, Message]] = {LISTENER: {"gw": _listener("gw", "0.0.0.0", 80, _hcm(inline=routes))}}
    assert simulate(res, Request(host="a", method="POST", path="/x?v=2")).cluster == "post-v2"
    assert simulate(res, Request(host="www.example.org", path="/x?v=2")).cluster == "example"
    assert simulate(res, Request(host="a")).cluster == "other"


def test_strip_any_host_port_and_filter_chain_prefix_ranges() -> None:
    routes = route_pb2.RouteConfiguration(
        name="r",
        virtual_hosts=[
            rc.VirtualHost(name="v", domains=["bookinfo.com"], routes=[_route(rc.RouteMatch(prefix="/"), "bi")])
        ],
    )
    gw = listener_pb2.Listener(
        name="gw",
        address=_addr("0.0.0.0", 80),
        filter_chains=[
            lc.FilterChain(name="any", filters=[_hcm(inline=routes, strip_any_host_port=True)]),
            lc.FilterChain(
                name="internal",
                filter_chain_match=lc.FilterChainMatch(
                    prefix_ranges=[
                        address_pb2.CidrRange(address_prefix="10.0.0.0", prefix_len=wrappers_pb2.UInt32Value(value=8))
                    ]
                ),
                filters=[_tcp("internal")],
            ),
        ],
    )
    res: dict[str, dict[str, Message]] = {LISTENER: {"gw": gw}}
    r = simulate(res, Request(host="bookinfo.com:80", address="192.168.1.1"))
    assert (r.filter_chain, r.cluster) == ("any", "bi")
    r = simulate(res, Request(host="bookinfo.com:80", address="10.1.2.3"))
    assert (r.filter_chain, r.cluster) == ("internal", "internal")
