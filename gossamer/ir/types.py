"""The intermediate representation between Istio semantics and Envoy protos.

Plain frozen dataclasses: no Istio API types, no protobuf. `translate` produces
one `ProxyConfig` per proxy group; `xds.build` turns it into Envoy resources.
Names (clusters, listeners, route tables) are already Istio's names here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gossamer.ir.authorization import AuthzPolicy
from gossamer.ir.envoyfilter import EnvoyFilterPatches
from gossamer.ir.matches import StringMatch
from gossamer.ir.route_actions import (
    CorsPolicy,
    DirectResponse,
    FaultInjection,
    MirrorPolicy,
    Redirect,
    RetryPolicy,
    Rewrite,
)
from gossamer.ir.security import InboundMtls, JwtProvider, UpstreamTls
from gossamer.ir.traffic_policy import ClusterPolicy, HashPolicy


@dataclass(frozen=True)
class HeaderMatch:
    name: str
    match: StringMatch
    invert: bool = False


@dataclass(frozen=True)
class QueryParamMatch:
    name: str
    match: StringMatch


@dataclass(frozen=True)
class RouteMatch:
    """One Istio HTTPMatchRequest; an empty match matches every request."""

    path: StringMatch | None = None
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[QueryParamMatch, ...] = ()


@dataclass(frozen=True)
class HeaderOps:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.set or self.add or self.remove)


@dataclass(frozen=True)
class WeightedDestination:
    cluster: str
    weight: int
    request_headers: HeaderOps = HeaderOps()
    response_headers: HeaderOps = HeaderOps()
    host_rewrite: str = ""  # headers.request.set/add[:authority] on this destination


@dataclass(frozen=True)
class HttpRoute:
    """One Envoy route: an Istio http rule expanded once per match block."""

    name: str
    match: RouteMatch
    destinations: tuple[WeightedDestination, ...]
    request_headers: HeaderOps = HeaderOps()
    response_headers: HeaderOps = HeaderOps()
    # Provenance for debugging ("why did my request go there").
    source: str = ""
    # Traffic management (gossamer.ir.route_actions, gossamer.ir.traffic_policy). A route forwards to `destinations`
    # unless it has a redirect or a direct response.
    timeout: float = 0.0  # seconds; 0 disables Envoy's route timeout (Istio's default)
    retry: RetryPolicy | None = None  # None: no retries
    hash_policies: tuple[HashPolicy, ...] = ()
    mirrors: tuple[MirrorPolicy, ...] = ()
    rewrite: Rewrite = Rewrite()
    redirect: Redirect | None = None
    direct_response: DirectResponse | None = None
    fault: FaultInjection | None = None
    cors: CorsPolicy | None = None
    # Istio's route decorator (span name, x-envoy-decorator-operation): "HOST:PORT/PATH" for one
    # destination cluster, "VS-NAME:PORT/PATH" otherwise; "" none (passthrough, block_all).
    operation: str = ""


@dataclass(frozen=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[HttpRoute, ...]
    # Gateway HTTP server with tls.httpsRedirect: plaintext requests get a 301 to https.
    require_tls: bool = False


@dataclass(frozen=True)
class RouteTable:
    name: str
    virtual_hosts: tuple[VirtualHost, ...]


# strict_dns / logical_dns: Envoy resolves the static endpoints' names itself (ServiceEntry DNS).
ClusterKind = Literal["eds", "static", "original_dst", "blackhole", "strict_dns", "logical_dns"]


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int
    labels: tuple[tuple[str, str], ...] = ()
    # "istio": the endpoint's proxy accepts mesh mTLS (EDS metadata envoy.transport_socket_match).
    tls_mode: str = ""
    # The workload behind the endpoint, for Istio's destination_* metric labels ("": unknown).
    workload: str = ""
    workload_namespace: str = ""
    principal: str = ""


@dataclass(frozen=True)
class Cluster:
    name: str
    kind: ClusterKind
    # static clusters carry their endpoints inline; eds clusters get them from EndpointSet
    static_endpoints: tuple[Endpoint, ...] = ()
    upstream_bind_address: str | None = None
    http2: bool = False
    service_host: str = ""
    # destination_service_name / _namespace of Istio's metric labels ("": from the host).
    service_name: str = ""
    service_namespace: str = ""
    port: int = 0
    subset: str = ""
    # DestinationRule traffic policy (with Istio's defaults) for outbound clusters.
    traffic_policy: ClusterPolicy | None = None
    # TLS to every endpoint (DestinationRule tls), or auto mTLS: `auto_mtls` only to endpoints whose
    # tls_mode is "istio", plaintext to the others (Istio's transport_socket_matches).
    tls: UpstreamTls | None = None
    auto_mtls: UpstreamTls | None = None


@dataclass(frozen=True)
class EndpointSet:
    cluster: str
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True)
class InboundChain:
    """virtualInbound filter chain for one port of this workload."""

    port: int
    cluster: str
    protocol: Literal["http", "tcp"]
    # PeerAuthentication for this port: STRICT (mTLS only), PERMISSIVE (mTLS and plaintext), "" plaintext.
    mtls: InboundMtls = ""
    # The inbound route's decorator: the service's "FQDN:PORT/*" (Istio's TraceOperation).
    operation: str = ""
    # The port's service (its inbound cluster's, as Cluster names it): the server side's
    # destination_service labels, literal in its stats (no metadata lookup per request).
    service_host: str = ""
    service_name: str = ""
    service_namespace: str = ""


@dataclass(frozen=True)
class TcpChain:
    """One filter chain of a TCP/TLS listener: a tcp_proxy to one cluster or weighted clusters,
    for connections whose destination IP is in `prefix_ranges` and whose SNI is in
    `server_names` (either empty: any). Istio's VirtualService tcp and tls routes."""

    destinations: tuple[WeightedDestination, ...]
    prefix_ranges: tuple[str, ...] = ()  # CIDRs ("10.0.0.0/24", or a plain IP)
    server_names: tuple[str, ...] = ()
    source: str = ""


TracingTagKind = Literal["literal", "header", "environment"]


@dataclass(frozen=True)
class TracingTag:
    """A span tag (Telemetry `tracing[].customTags`, Istio's own `istio.*` tags): a literal value, a
    request header or an environment variable of the proxy (`value` names the header / variable)."""

    tag: str
    kind: TracingTagKind
    value: str
    default: str = ""


@dataclass(frozen=True)
class TracingProvider:
    """A tracing backend from the mesh config's `extensionProviders` (`zipkin:` or `opentelemetry:`),
    reached through the outbound cluster of its service, as Istio does."""

    kind: Literal["zipkin", "opentelemetry"]
    cluster: str  # outbound|PORT||HOST
    host: str
    port: int
    path: str = ""  # zipkin: the spans endpoint; opentelemetry over HTTP: the traces path
    grpc: bool = False  # opentelemetry: OTLP over gRPC (else HTTP)
    service_name: str = ""  # opentelemetry: this proxy's service (Istio: app.namespace)


@dataclass(frozen=True)
class Tracing:
    """An HTTP connection manager's tracing (Telemetry `tracing`): spans to the control plane's
    Zipkin collector, `sampling` percent of the requests that start a trace here (requests already
    sampled upstream, `x-b3-sampled: 1`, are always traced)."""

    sampling: float
    tags: tuple[TracingTag, ...] = ()
    spawn_upstream_span: bool = False
    # None: the control plane's own collector (the default, as Istio's default zipkin provider).
    provider: TracingProvider | None = None
    # False: no tracer (Istio's default since 1.22 until a Telemetry or defaultProviders.tracing names a
    # backend): no spans, no B3 headers; the connection managers get no tracing (xds/build/listeners.py).
    spans: bool = True


GatewayTlsMode = Literal["SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"]


@dataclass(frozen=True)
class GatewayTlsServer:
    """One TLS-terminating gateway server (Gateway `tls.mode` SIMPLE / MUTUAL with `credentialName`):
    a filter chain for connections whose SNI is in `server_names` (empty: any), its certificate and,
    for MUTUAL, the CA that client certificates must chain to, both over SDS through ADS."""

    name: str
    server_names: tuple[str, ...]
    route_table: str
    mode: GatewayTlsMode
    certificate: str  # secret name, "kubernetes://NAME"
    validation: str = ""  # secret name of the trusted CA, "kubernetes://NAME-cacert"; "" none
    subject_alt_names: tuple[str, ...] = ()
    min_protocol: str = ""  # Istio's TLSV1_2 ...; "" Envoy's default
    max_protocol: str = ""
    cipher_suites: tuple[str, ...] = ()


@dataclass(frozen=True)
class TlsSecret:
    """An SDS secret the control plane serves over ADS (Istio's `kubernetes://` credentials):
    a certificate with its key, or a trusted CA bundle. PEM text."""

    name: str
    certificate_chain: str = ""
    private_key: str = ""
    trusted_ca: str = ""


PathNormalization = Literal["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"]


@dataclass(frozen=True)
class AccessLogFile:
    """The text access log of Istio's mesh config: `accessLogFile` ("/dev/stdout" or a path),
    `accessLogEncoding` (TEXT or JSON) and `accessLogFormat` ("" Istio's default format)."""

    path: str = "/dev/stdout"
    encoding: Literal["TEXT", "JSON"] = "TEXT"
    format: str = ""


STDOUT_ACCESS_LOG = AccessLogFile()


ListenerKind = Literal[
    "virtual_outbound", "virtual_inbound", "outbound_http", "outbound_tcp", "gateway_http", "gateway_tcp"
]


@dataclass(frozen=True)
class Listener:
    name: str
    kind: ListenerKind
    address: str
    port: int
    bind_to_port: bool = True
    route_table: str = ""  # http listeners: RDS name
    tcp_cluster: str = ""  # tcp listeners and the outbound passthrough default
    inbound_chains: tuple[InboundChain, ...] = ()
    # outbound_tcp / gateway_tcp: chains in order (first match wins among equal matches); a
    # listener without chains proxies everything to tcp_cluster. tls_inspector reads the SNI.
    tcp_chains: tuple[TcpChain, ...] = ()
    tls_inspector: bool = False
    # virtual_inbound: the workload-level PeerAuthentication mode (ports no service declares).
    inbound_mtls: InboundMtls = ""
    # virtual_inbound with mTLS: the trust domains (the mesh's, then its aliases) a peer's SPIFFE id may be in.
    peer_trust_domains: tuple[str, ...] = ()
    # virtual_inbound and gateway_http: AuthorizationPolicies selecting this workload, in order.
    authz: tuple[AuthzPolicy, ...] = ()
    # virtual_inbound and gateway_http: RequestAuthentication jwtRules (jwt_authn providers) in order.
    jwt: tuple[JwtProvider, ...] = ()
    # Telemetry turns off (for the workload) the text access log on stdout (accessLogging) and the
    # gRPC access log entries the control plane's Istio metrics come from (metrics).
    no_access_log: bool = False
    no_metrics: bool = False
    # HTTP connection managers (outbound_http, gateway_http, virtual_inbound's HTTP chains): tracing
    # as Telemetry says for this side (client: outbound and gateway; server: inbound); None: off.
    tracing: Tracing | None = None
    # gateway_http: TLS-terminating servers, one filter chain each (instead of one plaintext chain).
    tls_servers: tuple[GatewayTlsServer, ...] = ()
    # HTTP connection managers: the mesh config's pathNormalization; None: Istio's default, BASE.
    path_normalization: PathNormalization | None = None
    # Where the text access log goes (the mesh config's accessLog*; None: Istio's text line on
    # stdout); `no_access_log` turns it off.
    access_log: AccessLogFile | None = None


@dataclass(frozen=True)
class ProxyConfig:
    listeners: tuple[Listener, ...] = ()
    route_tables: tuple[RouteTable, ...] = ()
    clusters: tuple[Cluster, ...] = ()
    endpoints: tuple[EndpointSet, ...] = field(default=())
    # SDS secrets over ADS: only the credentials this proxy's gateway servers refer to.
    secrets: tuple[TlsSecret, ...] = ()
    # The EnvoyFilters that apply (None: none does), applied after build: xds/envoyfilter/.
    envoy_filters: EnvoyFilterPatches | None = None
