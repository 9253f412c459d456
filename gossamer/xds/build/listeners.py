"""IR listeners -> Envoy Listener: capture listeners, per-port HTTP, inbound chains, gateway."""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import wrappers_pb2

from gossamer.ir.authorization import AuthzPolicy
from gossamer.ir.security import JwtProvider
from gossamer.ir.types import (
    STDOUT_ACCESS_LOG,
    AccessLogFile,
    InboundChain,
    Listener,
    PathNormalization,
    TcpChain,
    Tracing,
)
from gossamer.mesh import inbound_vhost_name
from gossamer.telemetry.peer import PEER_HEADER
from gossamer.xds.build.authorization import http_rbac_filters, network_rbac_filters
from gossamer.xds.build.common import ads_config_source, pack, seconds, socket_address
from gossamer.xds.build.jwt import jwt_filters
from gossamer.xds.build.route_actions import fault_and_cors_filters
from gossamer.xds.build.security import downstream_mtls_socket, gateway_tls_socket, mtls_chain_match
from gossamer.xds.build.telemetry import (
    Direction,
    guard_peer_header,
    http_access_logs,
    passthrough_service_group,
    peer_metadata_filters,
    service_group,
    tcp_access_logs,
)
from gossamer.xds.build.tracing import hcm_tracing


def _router_filter() -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=pack(router_pb2.Router()))


# Istio's connection managers answer with this `server` header (EnvoyServerName).
SERVER_NAME = "istio-envoy"


def _path_normalization(hcm: hcm_pb2.HttpConnectionManager, mode: PathNormalization) -> None:
    """Istio's mesh config pathNormalization: BASE (the default) is RFC 3986 normalization (dot
    segments, percent-decoded unreserved characters); MERGE_SLASHES adds `//` -> `/`;
    DECODE_AND_MERGE_SLASHES also decodes %2F and %5C before merging; NONE leaves the path as sent."""
    hcm.path_with_escaped_slashes_action = hcm_pb2.HttpConnectionManager.KEEP_UNCHANGED
    hcm.normalize_path.value = mode != "NONE"
    hcm.merge_slashes = mode in ("MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES")
    if mode == "DECODE_AND_MERGE_SLASHES":
        hcm.path_with_escaped_slashes_action = hcm_pb2.HttpConnectionManager.UNESCAPE_AND_FORWARD


def http_connection_manager(
    stat_prefix: str,
    *,
    rds: str = "",
    inline: route_pb2.RouteConfiguration | None = None,
    use_remote_address: bool = False,
    authz: tuple[AuthzPolicy, ...] = (),
    client_cert_details: bool = False,
    jwt: tuple[JwtProvider, ...] = (),
    direction: Direction = "outbound",
    logs: bool = True,
    metrics: bool = True,
    tracing: Tracing | None = None,
    path_normalization: PathNormalization | None = None,
    access_log: AccessLogFile | None = None,
    stats_service: str = "",
) -> listener_components_pb2.Filter:
    """`stats_service`: the destination service group of every request (an inbound chain's, which
    routes to one cluster), literal in the metrics; "": each request's cluster metadata."""
    # Server side: the client proxy's peer headers become metadata for the metrics, never reach the app.
    peer = peer_metadata_filters() if direction == "inbound" else []
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=stat_prefix,
        # JWT authentication (RequestAuthentication), then authorization (Istio's order: DENY then
        # ALLOW RBAC); fault and CORS act only on routes whose typed_per_filter_config asks.
        http_filters=[*peer, *jwt_filters(jwt), *http_rbac_filters(authz), *fault_and_cors_filters(), _router_filter()],
        access_log=http_access_logs(
            direction,
            logs=logs,
            metrics=metrics,
            mtls=client_cert_details,
            file=access_log or STDOUT_ACCESS_LOG,
            service=stats_service,
        ),
        use_remote_address=wrappers_pb2.BoolValue(value=use_remote_address),
        server_name=SERVER_NAME,
    )
    guard_peer_header(hcm.http_filters)
    _path_normalization(hcm, path_normalization or "BASE")
    # No tracer configured (Tracing.spans false): no tracing at all. Istio gives Envoy its null tracer
    # there, whose only effects are Envoy's tracing stats, x-request-id sampling marks (the next
    # tracing proxy re-derives the same decision from the id) and the x-envoy-decorator-operation
    # header each request carries to the next sidecar, which removes it: 8.6k/2.5k instructions per
    # request (client/server, benchmarks/sidecar_instructions.py with route decorators).
    if tracing is not None and tracing.spans:
        hcm.tracing.CopyFrom(hcm_tracing(tracing))
    if client_cert_details:
        # mTLS peers: the app sees the caller's identity in X-Forwarded-Client-Cert, as with Istio
        # (By, Hash, Subject, URI). Istio also asks for DNS=: mesh certificates have none (the CA signs
        # exactly one URI SAN, and these chains trust the mesh's root only), so the header is the same
        # without it, and Envoy does not parse the certificate's SANs again on every request for the
        # DNS names it never finds (8k instructions per request, benchmarks/sidecar_instructions.py MTLS=1).
        hcm.forward_client_cert_details = hcm_pb2.HttpConnectionManager.APPEND_FORWARD
        hcm.set_current_client_cert_details.CopyFrom(
            hcm_pb2.HttpConnectionManager.SetCurrentClientCertDetails(
                subject=wrappers_pb2.BoolValue(value=True), uri=True
            )
        )
    if inline is not None:
        hcm.route_config.CopyFrom(inline)
    else:
        hcm.rds.config_source.CopyFrom(ads_config_source())
        hcm.rds.route_config_name = rds
    return listener_components_pb2.Filter(name="envoy.filters.network.http_connection_manager", typed_config=pack(hcm))


def _with_access_logs(
    proxy: tcp_proxy_pb2.TcpProxy, listener: Listener, *, mtls: bool = False, stats_service: str = ""
) -> tcp_proxy_pb2.TcpProxy:
    """A TCP proxy logs when the upstream connects and when the connection ends (text: at the end only).
    `mtls`: the chain terminates mesh mTLS (the source's principal is its certificate's);
    `stats_service`: as http_connection_manager's."""
    proxy.access_log.extend(
        tcp_access_logs(
            _direction(listener),
            logs=not listener.no_access_log,
            metrics=not listener.no_metrics,
            mtls=mtls,
            file=listener.access_log or STDOUT_ACCESS_LOG,
            service=stats_service,
        )
    )
    if not listener.no_metrics:
        proxy.access_log_options.flush_access_log_on_connected = True
    return proxy


def _direction(listener: Listener) -> Direction:
    if listener.kind in ("gateway_http", "gateway_tcp"):
        return "gateway"
    return "inbound" if listener.kind == "virtual_inbound" else "outbound"


def tcp_proxy(
    stat_prefix: str, cluster: str, listener: Listener, *, mtls: bool = False, stats_service: str = ""
) -> listener_components_pb2.Filter:
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix, cluster=cluster)
    return listener_components_pb2.Filter(
        name="envoy.filters.network.tcp_proxy",
        typed_config=pack(_with_access_logs(proxy, listener, mtls=mtls, stats_service=stats_service)),
    )


def _chain_service(chain: InboundChain) -> str:
    return service_group(chain.service_host, chain.service_name, chain.service_namespace) if chain.service_host else ""


def weighted_tcp_proxy(stat_prefix: str, chain: TcpChain, listener: Listener) -> listener_components_pb2.Filter:
    """One destination: `cluster`; several: `weighted_clusters` (Istio's tcp/tls route weights)."""
    proxy = _with_access_logs(tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix), listener)
    if len(chain.destinations) == 1:
        proxy.cluster = chain.destinations[0].cluster
    else:
        proxy.weighted_clusters.clusters.extend(
            tcp_proxy_pb2.TcpProxy.WeightedCluster.ClusterWeight(name=d.cluster, weight=d.weight)
            for d in chain.destinations
        )
    return listener_components_pb2.Filter(name="envoy.filters.network.tcp_proxy", typed_config=pack(proxy))


def _cidr(value: str) -> address_pb2.CidrRange:
    address, _, length = value.partition("/")
    bits = int(length) if length else (128 if ":" in address else 32)
    return address_pb2.CidrRange(address_prefix=address, prefix_len=wrappers_pb2.UInt32Value(value=bits))


def _tcp_chain(listener: Listener, chain: TcpChain) -> listener_components_pb2.FilterChain:
    match = listener_components_pb2.FilterChainMatch(
        prefix_ranges=[_cidr(c) for c in chain.prefix_ranges], server_names=list(chain.server_names)
    )
    single = chain.destinations[0].cluster if len(chain.destinations) == 1 else ""
    stat_prefix = single or listener.name
    out = listener_components_pb2.FilterChain(
        filters=[*network_rbac_filters(listener.authz), weighted_tcp_proxy(stat_prefix, chain, listener)]
    )
    if chain.prefix_ranges or chain.server_names:
        out.filter_chain_match.CopyFrom(match)
    return out


def _tls_inspector() -> listener_components_pb2.ListenerFilter:
    return listener_components_pb2.ListenerFilter(
        name="envoy.filters.listener.tls_inspector", typed_config=pack(tls_inspector_pb2.TlsInspector())
    )


def _original_dst() -> listener_components_pb2.ListenerFilter:
    return listener_components_pb2.ListenerFilter(
        name="envoy.filters.listener.original_dst", typed_config=pack(original_dst_pb2.OriginalDst())
    )


def _inbound_route(chain: InboundChain) -> route_pb2.RouteConfiguration:
    route = rc.Route(
        match=rc.RouteMatch(prefix="/"),
        route=rc.RouteAction(cluster=chain.cluster, timeout=seconds(0)),
        decorator=rc.Decorator(operation=chain.operation or f"{chain.cluster}/*"),
    )
    return route_pb2.RouteConfiguration(
        name=chain.cluster,
        virtual_hosts=[
            rc.VirtualHost(
                name=inbound_vhost_name(chain.port),
                domains=["*"],
                routes=[route],
                # The client proxy's peer header, kept for the metrics by the first filter: never to the app.
                request_headers_to_remove=[PEER_HEADER],
            )
        ],
    )


def _inbound_filters(
    chain: InboundChain, ir: Listener, *, mtls: bool, tcp: bool = False
) -> list[listener_components_pb2.Filter]:
    if chain.protocol == "http" and not tcp:
        return [
            http_connection_manager(
                f"inbound_0.0.0.0_{chain.port}",
                inline=_inbound_route(chain),
                use_remote_address=False,
                authz=ir.authz,
                client_cert_details=mtls,
                jwt=ir.jwt,
                direction="inbound",
                logs=not ir.no_access_log,
                metrics=not ir.no_metrics,
                tracing=ir.tracing,
                path_normalization=ir.path_normalization,
                access_log=ir.access_log,
                stats_service=_chain_service(chain),
            )
        ]
    return [
        *network_rbac_filters(ir.authz),
        tcp_proxy(chain.cluster, chain.cluster, ir, mtls=mtls, stats_service=_chain_service(chain)),
    ]


def _inbound_chains(chain: InboundChain, ir: Listener) -> list[listener_components_pb2.FilterChain]:
    """One port of virtualInbound. PeerAuthentication: "" plaintext; STRICT one chain for TLS that
    terminates mTLS (plaintext matches no chain: Envoy resets the connection, as Istio's does);
    PERMISSIVE an mTLS chain for TLS with Istio's ALPN, a TLS chain for other TLS (the app's own,
    passed through) and a plaintext chain."""
    name = f"0.0.0.0_{chain.port}"
    port = wrappers_pb2.UInt32Value(value=chain.port)
    http = chain.protocol == "http"
    if chain.mtls == "":
        return [
            listener_components_pb2.FilterChain(
                name=name,
                filter_chain_match=listener_components_pb2.FilterChainMatch(destination_port=port),
                filters=_inbound_filters(chain, ir, mtls=False),
            )
        ]
    if chain.mtls == "STRICT":
        return [
            listener_components_pb2.FilterChain(
                name=name,
                filter_chain_match=listener_components_pb2.FilterChainMatch(
                    destination_port=port, transport_protocol="tls"
                ),
                filters=_inbound_filters(chain, ir, mtls=True),
                transport_socket=downstream_mtls_socket(http, ir.peer_trust_domains),
            )
        ]
    return [
        listener_components_pb2.FilterChain(
            name=f"{name}_mtls",
            filter_chain_match=mtls_chain_match(chain.port),
            filters=_inbound_filters(chain, ir, mtls=True),
            transport_socket=downstream_mtls_socket(http, ir.peer_trust_domains),
        ),
        listener_components_pb2.FilterChain(
            name=f"{name}_tls",
            filter_chain_match=listener_components_pb2.FilterChainMatch(
                destination_port=port, transport_protocol="tls"
            ),
            filters=_inbound_filters(chain, ir, mtls=False, tcp=True),
        ),
        listener_components_pb2.FilterChain(
            name=name,
            filter_chain_match=listener_components_pb2.FilterChainMatch(
                destination_port=port, transport_protocol="raw_buffer"
            ),
            filters=_inbound_filters(chain, ir, mtls=False),
        ),
    ]


def _inbound_passthrough(listener: listener_pb2.Listener, ir: Listener) -> None:
    """Ports no service declares: straight to the original destination, under the workload's mode.
    With mTLS anywhere on the listener these are ordinary chains (no default_filter_chain), so a
    connection that no chain of its port accepts (plaintext to a STRICT port) is reset rather than
    handed to the passthrough: Envoy's matching never backtracks out of a destination port."""

    def filters(mtls: bool) -> list[listener_components_pb2.Filter]:
        service = passthrough_service_group(ir.tcp_cluster)
        return [
            *network_rbac_filters(ir.authz),
            tcp_proxy(ir.tcp_cluster, ir.tcp_cluster, ir, mtls=mtls, stats_service=service),
        ]

    strict = ir.inbound_mtls == "STRICT"
    passthrough = listener_components_pb2.FilterChain(
        name="InboundPassthroughFilterChain", filters=filters(strict and _inspects_tls(ir))
    )
    if not _inspects_tls(ir):
        listener.default_filter_chain.CopyFrom(passthrough)
        return
    if strict:
        passthrough.filter_chain_match.transport_protocol = "tls"
        passthrough.transport_socket.CopyFrom(downstream_mtls_socket(False, ir.peer_trust_domains))
    elif ir.inbound_mtls == "PERMISSIVE":
        listener.filter_chains.append(
            listener_components_pb2.FilterChain(
                name="InboundPassthroughFilterChain_mtls",
                filter_chain_match=mtls_chain_match(None),
                filters=filters(True),
                transport_socket=downstream_mtls_socket(False, ir.peer_trust_domains),
            )
        )
    listener.filter_chains.append(passthrough)


def _inspects_tls(ir: Listener) -> bool:
    """virtualInbound tells TLS from plaintext when any of its chains (or the passthrough) uses mTLS."""
    return ir.inbound_mtls != "" or any(c.mtls != "" for c in ir.inbound_chains)


def build_listener(listener: Listener) -> listener_pb2.Listener:
    out = listener_pb2.Listener(
        name=listener.name,
        address=socket_address(listener.address, listener.port),
    )
    if not listener.bind_to_port:
        out.bind_to_port.CopyFrom(wrappers_pb2.BoolValue(value=False))
    if listener.kind == "virtual_outbound":
        out.use_original_dst.CopyFrom(wrappers_pb2.BoolValue(value=True))
        out.listener_filters.append(_original_dst())
        out.traffic_direction = base_pb2.OUTBOUND
        out.default_filter_chain.CopyFrom(
            listener_components_pb2.FilterChain(
                name="PassthroughFilterChain", filters=[tcp_proxy(listener.tcp_cluster, listener.tcp_cluster, listener)]
            )
        )
    elif listener.kind == "virtual_inbound":
        out.listener_filters.append(_original_dst())
        if listener.tls_inspector or _inspects_tls(listener):
            out.listener_filters.append(_tls_inspector())
        out.traffic_direction = base_pb2.INBOUND
        for c in listener.inbound_chains:
            out.filter_chains.extend(_inbound_chains(c, listener))
        _inbound_passthrough(out, listener)
    elif listener.kind in ("outbound_tcp", "gateway_tcp"):
        out.traffic_direction = base_pb2.INBOUND if listener.kind == "gateway_tcp" else base_pb2.OUTBOUND
        if listener.tls_inspector:
            out.listener_filters.append(_tls_inspector())
        out.filter_chains.extend(_tcp_chain(listener, c) for c in listener.tcp_chains)
        if listener.tcp_cluster:
            fallback = listener_components_pb2.FilterChain(
                filters=[tcp_proxy(listener.tcp_cluster, listener.tcp_cluster, listener)]
            )
            if listener.tcp_chains:
                fallback.name = "default"
                out.default_filter_chain.CopyFrom(fallback)
            else:
                out.filter_chains.append(fallback)
    elif listener.tls_servers:
        # TLS-terminating gateway servers: one chain per server, picked by SNI.
        out.traffic_direction = base_pb2.INBOUND
        out.listener_filters.append(_tls_inspector())
        for server in listener.tls_servers:
            chain = listener_components_pb2.FilterChain(
                name=server.name,
                transport_socket=gateway_tls_socket(server),
                filters=[
                    http_connection_manager(
                        listener.name,
                        rds=server.route_table,
                        use_remote_address=True,
                        authz=listener.authz,
                        jwt=listener.jwt,
                        direction="gateway",
                        logs=not listener.no_access_log,
                        metrics=not listener.no_metrics,
                        tracing=listener.tracing,
                        path_normalization=listener.path_normalization,
                        access_log=listener.access_log,
                    )
                ],
            )
            if server.server_names:
                chain.filter_chain_match.server_names.extend(server.server_names)
            out.filter_chains.append(chain)
    else:
        gateway = listener.kind == "gateway_http"
        out.traffic_direction = base_pb2.INBOUND if gateway else base_pb2.OUTBOUND
        out.filter_chains.append(
            listener_components_pb2.FilterChain(
                filters=[
                    http_connection_manager(
                        listener.name,
                        rds=listener.route_table,
                        use_remote_address=gateway,
                        authz=listener.authz,
                        jwt=listener.jwt if gateway else (),
                        direction=_direction(listener),
                        logs=not listener.no_access_log,
                        metrics=not listener.no_metrics,
                        tracing=listener.tracing,
                        path_normalization=listener.path_normalization,
                        access_log=listener.access_log,
                    )
                ]
            )
        )
    return out
