"""VirtualService http route actions and DestinationRule traffic policies: their semantics,
checked on the IR, against Istio's documented and implemented behaviour."""

from __future__ import annotations

import pytest

from gossamer.ir.route_actions import FractionalPercent
from gossamer.ir.traffic_policy import MAX_UINT32, CircuitBreakers, HashPolicy
from gossamer.ir.types import Cluster, HttpRoute, ProxyConfig
from gossamer.resources.enforcement import not_enforced_fields
from gossamer.resources.loader import parse_documents
from gossamer.resources.networking import DestinationRule
from gossamer.translate import translate_proxy
from gossamer.translate.route_actions import DEFAULT_RETRY, parse_retry_on
from gossamer.translate.traffic_policy import merge_traffic_policy
from tests.support.offline import gateway_proxy, proxy_for, snapshot_from_yaml

BASE = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}, {name: http-admin, port: 9090}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1}
spec:
  selector: {matchLabels: {app: reviews, version: v1}}
  template:
    metadata: {labels: {app: reviews, version: v1}}
    spec: {containers: [{name: reviews, image: x, command: ["true"]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: client}
spec:
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec: {containers: [{name: client, image: x, command: ["true"]}]}
"""


def translate(extra: str) -> ProxyConfig:
    snapshot = snapshot_from_yaml(BASE + "---\n" + extra)
    return translate_proxy(snapshot, proxy_for(snapshot, "client"))


def reviews_routes(config: ProxyConfig, port: str = "9080") -> list[HttpRoute]:
    table = next(t for t in config.route_tables if t.name == port)
    vhost = next(v for v in table.virtual_hosts if v.name.startswith("reviews."))
    return list(vhost.routes)


def cluster(config: ProxyConfig, name: str) -> Cluster:
    return next(c for c in config.clusters if c.name == name)


def vs(http: str) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
{http}
"""


# ---------------------------------------------------------------------------- retries and timeout


def test_default_retry_policy_on_default_and_vs_routes() -> None:
    (default_route,) = reviews_routes(translate(""))
    assert default_route.retry == DEFAULT_RETRY
    assert DEFAULT_RETRY.num_retries == 2
    assert DEFAULT_RETRY.retry_on == "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    assert DEFAULT_RETRY.retriable_status_codes == (503,)
    assert DEFAULT_RETRY.previous_hosts_predicate and DEFAULT_RETRY.host_selection_retry_max_attempts == 5
    (route,) = reviews_routes(translate(vs("  - route: [{destination: {host: reviews}}]")))
    assert route.retry == DEFAULT_RETRY
    assert route.timeout == 0.0


def test_allow_any_passthrough_route_has_no_retries() -> None:
    config = translate("")
    table = next(t for t in config.route_tables if t.name == "9080")
    allow_any = next(v for v in table.virtual_hosts if v.name == "allow_any")
    assert allow_any.routes[0].retry is None


def test_attempts_zero_disables_retries() -> None:
    (route,) = reviews_routes(
        translate(
            vs("""  - retries: {attempts: 0, perTryTimeout: 1s}
    route: [{destination: {host: reviews}}]""")
        )
    )
    assert route.retry is None


def test_explicit_retries_timeout_and_retry_on() -> None:
    (route,) = reviews_routes(
        translate(
            vs("""  - timeout: 2.5s
    retries:
      attempts: 4
      perTryTimeout: 250ms
      retryOn: "cancelled, deadline-exceeded,internal,resource-exhausted,unavailable,502,503"
      retryRemoteLocalities: true
    route: [{destination: {host: reviews}}]""")
        )
    )
    assert route.timeout == 2.5
    r = route.retry
    assert r is not None
    assert r.num_retries == 4 and r.per_try_timeout == 0.25
    assert r.retry_on == "cancelled,deadline-exceeded,internal,resource-exhausted,unavailable,retriable-status-codes"
    assert r.retriable_status_codes == (502, 503)
    assert r.previous_priorities and r.previous_hosts_predicate
    assert r.host_selection_retry_max_attempts == 5


def test_retry_on_without_codes_drops_default_503() -> None:
    (route,) = reviews_routes(
        translate(
            vs("""  - retries: {attempts: 3, retryOn: gateway-error}
    route: [{destination: {host: reviews}}]""")
        )
    )
    assert route.retry is not None
    assert route.retry.retry_on == "gateway-error" and route.retry.retriable_status_codes == ()


def test_retry_on_attempts_only_keeps_default_conditions() -> None:
    (route,) = reviews_routes(
        translate(
            vs("""  - retries: {attempts: 5}
    route: [{destination: {host: reviews}}]""")
        )
    )
    assert route.retry is not None
    assert route.retry.num_retries == 5
    assert route.retry.retry_on == DEFAULT_RETRY.retry_on and route.retry.retriable_status_codes == (503,)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5xx,retriable-status-codes,503", ("5xx,retriable-status-codes", (503,))),
        ("999,connect-failure", ("999,connect-failure", ())),  # not an HTTP status Go knows
        (" , reset ,", ("reset", ())),
    ],
)
def test_parse_retry_on(text: str, expected: tuple[str, tuple[int, ...]]) -> None:
    assert parse_retry_on(text) == expected


def test_gateway_routes_get_the_default_retry_policy() -> None:
    snapshot = snapshot_from_yaml(
        BASE
        + """---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front}
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{route: [{destination: {host: reviews, port: {number: 9080}}}]}]
"""
    )
    config = translate_proxy(snapshot, gateway_proxy(snapshot))
    routes = [r for t in config.route_tables for v in t.virtual_hosts for r in v.routes]
    assert routes and all(r.retry == DEFAULT_RETRY for r in routes)


# ---------------------------------------------------------------------------- fault, mirror, redirect, cors


def test_fault_percentages() -> None:
    (route,) = reviews_routes(
        translate(
            vs("""  - fault:
      delay: {fixedDelay: 1s, percent: 30}
      abort: {httpStatus: 500}
    route: [{destination: {host: reviews}}]""")
        )
    )
    assert route.fault is not None and route.fault.delay is not None and route.fault.abort is not None
    assert route.fault.delay.percent == FractionalPercent(30, "HUNDRED")
    assert route.fault.abort.http_status == 500 and route.fault.abort.percent is None


def test_exponential_delay_alone_is_dropped() -> None:
    (route,) = reviews_routes(
        translate(
            vs("""  - fault: {delay: {exponentialDelay: 1s}}
    route: [{destination: {host: reviews}}]""")
        )
    )
    assert route.fault is None


def test_mirror_percentages() -> None:
    (route,) = reviews_routes(
        translate(
            vs("""  - mirror: {host: reviews, subset: v1}
    mirrors:
    - destination: {host: reviews, port: {number: 9090}}
      percentage: {value: 0.5}
    - destination: {host: reviews}
      percentage: {value: 0}
    route: [{destination: {host: reviews}}]""")
        )
    )
    assert [(m.cluster, m.percent) for m in route.mirrors] == [
        ("outbound|9080|v1|reviews.default.svc.cluster.local", FractionalPercent(100)),
        ("outbound|9090||reviews.default.svc.cluster.local", FractionalPercent(5000, "MILLION")),
    ]
    (route,) = reviews_routes(
        translate(
            vs("""  - mirror: {host: reviews}
    mirrorPercentage: {value: 0}
    route: [{destination: {host: reviews}}]""")
        )
    )
    assert route.mirrors == ()


def test_redirect_ports_and_codes() -> None:
    routes = reviews_routes(
        translate(
            vs("""  - match: [{uri: {prefix: /a}}]
    redirect: {uri: /b, derivePort: FROM_REQUEST_PORT}
  - match: [{uri: {prefix: /c}}]
    redirect: {port: 80}
  - match: [{uri: {prefix: /d}}]
    redirect: {authority: x, redirectCode: 308}""")
        )
    )
    assert len(routes) == 3
    a, c, d = (r.redirect for r in routes)
    assert a is not None and a.port == 9080 and a.path == "/b" and a.response_code == 301
    assert c is not None and c.port == 0  # :80 is elided for http
    assert d is not None and d.host == "x" and d.response_code == 308
    assert all(r.destinations == () and r.retry is None for r in routes)


def test_cors_policy() -> None:
    (route,) = reviews_routes(
        translate(
            vs("""  - corsPolicy:
      allowOrigins: [{exact: "https://a"}]
      maxAge: 90s
    route: [{destination: {host: reviews}}]""")
        )
    )
    assert route.cors is not None
    assert route.cors.max_age == "90" and route.cors.allow_credentials is None
    assert route.cors.forward_not_matching_preflights


# ---------------------------------------------------------------------------- DestinationRule


DR = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool:
      tcp: {maxConnections: 10, connectTimeout: 1s}
      http: {http1MaxPendingRequests: 7}
    outlierDetection: {consecutive5xxErrors: 2}
    portLevelSettings:
    - port: {number: 9090}
      connectionPool: {http: {maxRetries: 9}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      connectionPool: {tcp: {maxConnections: 3}}
"""


def test_defaults_without_destination_rule() -> None:
    c = cluster(translate(""), "outbound|9080||reviews.default.svc.cluster.local")
    assert c.traffic_policy is not None
    assert c.traffic_policy.lb_policy == "LEAST_REQUEST"
    assert c.traffic_policy.circuit_breakers == CircuitBreakers(MAX_UINT32, MAX_UINT32, MAX_UINT32, MAX_UINT32, True)
    assert c.traffic_policy.outlier_detection is None and c.traffic_policy.connect_timeout is None


def test_subset_policy_overrides_service_policy_per_field() -> None:
    config = translate(DR)
    service = cluster(config, "outbound|9080||reviews.default.svc.cluster.local").traffic_policy
    subset = cluster(config, "outbound|9080|v1|reviews.default.svc.cluster.local").traffic_policy
    assert service is not None and subset is not None
    assert service.circuit_breakers.max_connections == 10 and service.circuit_breakers.max_pending_requests == 7
    assert service.connect_timeout == 1.0
    # the subset's connectionPool replaces the service's whole connectionPool ...
    assert subset.circuit_breakers.max_connections == 3
    assert subset.circuit_breakers.max_pending_requests == MAX_UINT32
    assert subset.connect_timeout is None
    # ... while loadBalancer and outlierDetection are inherited
    assert subset.lb_policy == "ROUND_ROBIN"
    assert subset.outlier_detection is not None and subset.outlier_detection.consecutive_5xx == 2


def test_port_level_settings_do_not_inherit() -> None:
    config = translate(DR)
    port = cluster(config, "outbound|9090||reviews.default.svc.cluster.local").traffic_policy
    assert port is not None
    assert port.circuit_breakers.max_retries == 9
    assert port.circuit_breakers.max_connections == MAX_UINT32
    assert port.lb_policy == "LEAST_REQUEST" and port.outlier_detection is None


def test_merge_traffic_policy_subset_port_level_replaces_all() -> None:
    snapshot = snapshot_from_yaml(
        BASE
        + "---\n"
        + DR.replace(
            "      connectionPool: {tcp: {maxConnections: 3}}",
            "      connectionPool: {tcp: {maxConnections: 3}}\n"
            "      portLevelSettings: [{port: {number: 9080}, loadBalancer: {simple: RANDOM}}]",
        )
    )
    dr = snapshot.of_kind(DestinationRule)[0]
    merged = merge_traffic_policy(dr.spec.traffic_policy, dr.spec.subsets[0].traffic_policy, 9080)
    assert merged is not None
    assert merged.load_balancer is not None and merged.load_balancer.simple == "RANDOM"
    assert merged.connection_pool is None and merged.outlier_detection is None


def test_outlier_detection_zero_disables_and_panic_threshold() -> None:
    c = cluster(
        translate(DR.replace("consecutive5xxErrors: 2", "consecutive5xxErrors: 0, minHealthPercent: 20")),
        "outbound|9080||reviews.default.svc.cluster.local",
    )
    assert c.traffic_policy is not None and c.traffic_policy.outlier_detection is not None
    od = c.traffic_policy.outlier_detection
    assert od.consecutive_5xx == 0 and od.enforcing_consecutive_5xx == 0
    assert od.enforcing_success_rate == 0 and od.consecutive_gateway_failure is None
    assert c.traffic_policy.healthy_panic_threshold == 20.0


def test_passthrough_load_balancer_makes_original_dst_cluster() -> None:
    c = cluster(
        translate(DR.replace("simple: ROUND_ROBIN", "simple: PASSTHROUGH")),
        "outbound|9080||reviews.default.svc.cluster.local",
    )
    assert (
        c.kind == "original_dst" and c.traffic_policy is not None and c.traffic_policy.lb_policy == "CLUSTER_PROVIDED"
    )


def test_consistent_hash_puts_hash_policy_on_routes() -> None:
    dr = DR.replace("loadBalancer: {simple: ROUND_ROBIN}", "loadBalancer: {consistentHash: {httpHeaderName: x-u}}")
    config = translate(dr)
    (default_route,) = reviews_routes(config)
    assert default_route.hash_policies == (HashPolicy("header", "x-u"),)
    # Istio keeps the previous-hosts predicate on the default route's retries
    assert default_route.retry == DEFAULT_RETRY
    c = cluster(config, "outbound|9080||reviews.default.svc.cluster.local")
    assert c.traffic_policy is not None and c.traffic_policy.lb_policy == "RING_HASH"
    assert c.traffic_policy.ring_hash_minimum_ring_size == 1024
    (route,) = reviews_routes(translate(dr + "---\n" + vs("  - route: [{destination: {host: reviews, subset: v1}}]")))
    assert route.hash_policies == (HashPolicy("header", "x-u"),)
    # with consistent hashing, retries must stay on the hashed host
    assert route.retry is not None and not route.retry.previous_hosts_predicate


def test_enforcement_warnings_left() -> None:
    resources, _ = parse_documents(
        """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN, localityLbSetting: {enabled: true}}
    connectionPool: {tcp: {maxConnections: 1}}
    tls: {mode: ISTIO_MUTUAL}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [reviews]
  http:
  - timeout: 1s
    retries: {attempts: 1}
    fault: {abort: {httpStatus: 500, percentage: {value: 1}}}
    corsPolicy: {allowMethods: [GET]}
    route: [{destination: {host: reviews}}]
""",
        "x.yaml",
    )
    dr, vs_ = resources
    assert not_enforced_fields(dr) == ["spec.trafficPolicy.loadBalancer.localityLbSetting"]
    assert not_enforced_fields(vs_) == []
