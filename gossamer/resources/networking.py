"""networking.istio.io kinds (v1, v1beta1, v1alpha3): VirtualService, DestinationRule,
Gateway, ServiceEntry, WorkloadEntry, Sidecar. Field names follow Istio's API reference."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from gossamer.resources.base import Duration, Int32, Model, NonNegInt, NonNegInt32, Port, Resource, UInt32

# ---------------------------------------------------------------------------- shared


class PortSelector(Model):
    number: Port


class Percent(Model):
    value: float


class StringMatch(Model):
    """Exactly one of exact / prefix / regex (checked by validation/virtual_service.py; headers and
    withoutHeaders may leave all three empty to mean "present")."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @property
    def set_fields(self) -> list[str]:
        return [f for f in ("exact", "prefix", "regex") if getattr(self, f) is not None]


class WorkloadSelector(Model):
    labels: dict[str, str] = Field(default_factory=dict)


class MatchLabelsSelector(Model):
    """istio.type.v1beta1.WorkloadSelector (`matchLabels`), as a DestinationRule's `workloadSelector` takes it
    (Sidecar, ServiceEntry and EnvoyFilter use networking's `labels` form)."""

    match_labels: dict[str, str] = Field(default_factory=dict)


class Destination(Model):
    host: str
    subset: str | None = None
    port: PortSelector | None = None


class HeaderOperations(Model):
    set: dict[str, str] | None = None
    add: dict[str, str] | None = None
    remove: list[str] | None = None


class Headers(Model):
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


# ---------------------------------------------------------------------------- VirtualService


class HTTPMatchRequest(Model):
    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] | None = None
    port: Port | None = None
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    query_params: dict[str, StringMatch] | None = None
    ignore_uri_case: bool | None = None
    without_headers: dict[str, StringMatch] | None = None
    source_namespace: str | None = None
    stat_prefix: str | None = None


class HTTPRouteDestination(Model):
    destination: Destination
    weight: int | None = None
    headers: Headers | None = None


class RouteDestination(Model):
    destination: Destination
    weight: int | None = None


class HTTPRedirect(Model):
    uri: str | None = None
    authority: str | None = None
    port: Port | None = None
    derive_port: Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None = None
    scheme: str | None = None
    redirect_code: int | None = None


class RegexRewrite(Model):
    match: str
    rewrite: str


class HTTPRewrite(Model):
    uri: str | None = None
    authority: str | None = None
    uri_regex_rewrite: RegexRewrite | None = None


class HTTPBody(Model):
    string: str | None = None
    bytes: str | None = None  # base64


class HTTPDirectResponse(Model):
    status: int
    body: HTTPBody | None = None


class Delegate(Model):
    name: str
    namespace: str | None = None


class HTTPRetry(Model):
    attempts: Int32 | None = None
    per_try_timeout: Duration | None = None
    retry_on: str | None = None
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff: Duration | None = None


class FaultDelay(Model):
    fixed_delay: Duration | None = None
    exponential_delay: Duration | None = None
    percentage: Percent | None = None
    percent: int | None = None  # deprecated integer percent


class FaultAbort(Model):
    http_status: int | None = None
    grpc_status: str | None = None
    http2_error: str | None = None
    percentage: Percent | None = None


class HTTPFaultInjection(Model):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


class HTTPMirrorPolicy(Model):
    destination: Destination
    percentage: Percent | None = None


class CorsPolicy(Model):
    allow_origins: list[StringMatch] | None = None
    allow_origin: list[str] | None = None  # deprecated
    allow_methods: list[str] | None = None
    allow_headers: list[str] | None = None
    expose_headers: list[str] | None = None
    max_age: Duration | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: Literal["UNSPECIFIED", "FORWARD", "IGNORE"] | None = None


class HTTPRoute(Model):
    name: str | None = None
    match: list[HTTPMatchRequest] | None = None
    route: list[HTTPRouteDestination] | None = None
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: list[HTTPMirrorPolicy] | None = None
    mirror_percentage: Percent | None = None
    mirror_percent: int | None = None  # deprecated
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None


class L4MatchAttributes(Model):
    destination_subnets: list[str] | None = None
    port: Port | None = None
    source_subnet: str | None = None
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    source_namespace: str | None = None


class TCPRoute(Model):
    match: list[L4MatchAttributes] | None = None
    route: list[RouteDestination] | None = None


class TLSMatchAttributes(Model):
    sni_hosts: list[str] = Field(default_factory=list)
    destination_subnets: list[str] | None = None
    port: Port | None = None
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    source_namespace: str | None = None


class TLSRoute(Model):
    match: list[TLSMatchAttributes] = Field(default_factory=list)
    route: list[RouteDestination] | None = None


class VirtualServiceSpec(Model):
    hosts: list[str] = Field(default_factory=list)
    gateways: list[str] = Field(default_factory=list)
    http: list[HTTPRoute] = Field(default_factory=list)
    tls: list[TLSRoute] = Field(default_factory=list)
    tcp: list[TCPRoute] = Field(default_factory=list)
    export_to: list[str] | None = None

    @property
    def all_rules(self) -> list[HTTPRoute | TCPRoute | TLSRoute]:
        """The http, tcp and tls rules, in that order."""
        return [*self.http, *self.tcp, *self.tls]


# ---------------------------------------------------------------------------- DestinationRule


class HTTPCookie(Model):
    name: str
    path: str | None = None
    ttl: Duration | None = None
    attributes: list[dict[str, Any]] | None = None


class RingHash(Model):
    minimum_ring_size: NonNegInt | None = None


class MagLev(Model):
    table_size: NonNegInt | None = None


class ConsistentHashLB(Model):
    http_header_name: str | None = None
    http_cookie: HTTPCookie | None = None
    use_source_ip: bool | None = None
    http_query_parameter_name: str | None = None
    ring_hash: RingHash | None = None
    maglev: MagLev | None = None
    minimum_ring_size: NonNegInt | None = None  # deprecated


class LocalityDistribute(Model):
    from_: str | None = None
    to: dict[str, NonNegInt] | None = None


class LocalityFailover(Model):
    from_: str | None = None
    to: str | None = None


class LocalityLoadBalancerSetting(Model):
    distribute: list[LocalityDistribute] | None = None
    failover: list[LocalityFailover] | None = None
    failover_priority: list[str] | None = None
    enabled: bool | None = None


class WarmupConfiguration(Model):
    duration: Duration
    minimum_percent: float | None = None
    aggression: float | None = None


SimpleLB = Literal["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"]


class LoadBalancerSettings(Model):
    simple: SimpleLB | None = None
    consistent_hash: ConsistentHashLB | None = None
    locality_lb_setting: LocalityLoadBalancerSetting | None = None
    warmup_duration_secs: Duration | None = None
    warmup: WarmupConfiguration | None = None


class TcpKeepalive(Model):
    probes: UInt32 | None = None
    time: Duration | None = None
    interval: Duration | None = None


class TCPSettings(Model):
    max_connections: NonNegInt32 | None = None
    connect_timeout: Duration | None = None
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration: Duration | None = None
    idle_timeout: Duration | None = None


class HTTPSettings(Model):
    http1_max_pending_requests: NonNegInt32 | None = None
    http2_max_requests: NonNegInt32 | None = None
    max_requests_per_connection: NonNegInt32 | None = None
    max_retries: NonNegInt32 | None = None
    idle_timeout: Duration | None = None
    h2_upgrade_policy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] | None = None
    use_client_protocol: bool | None = None
    max_concurrent_streams: NonNegInt32 | None = None


class ConnectionPoolSettings(Model):
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


class OutlierDetection(Model):
    split_external_local_origin_errors: bool | None = None
    consecutive_local_origin_failures: UInt32 | None = None
    consecutive_gateway_errors: UInt32 | None = None
    consecutive_5xx_errors: UInt32 | None = None
    consecutive_errors: NonNegInt32 | None = None  # deprecated
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: Int32 | None = None
    min_health_percent: Int32 | None = None


class ClientTLSSettings(Model):
    mode: Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"] = "DISABLE"
    client_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    credential_name: str | None = None
    subject_alt_names: list[str] | None = None
    sni: str | None = None
    insecure_skip_verify: bool | None = None
    ca_crl: str | None = None


class TrafficPolicyTunnel(Model):
    protocol: Literal["CONNECT", "POST"] | None = None
    target_host: str
    target_port: Port


class ProxyProtocol(Model):
    version: Literal["V1", "V2"] | None = None


class PortTrafficPolicy(Model):
    port: PortSelector | None = None
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


class TrafficPolicy(Model):
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    port_level_settings: list[PortTrafficPolicy] | None = None
    tunnel: TrafficPolicyTunnel | None = None
    proxy_protocol: ProxyProtocol | None = None
    retry_budget: dict[str, Any] | None = None


class Subset(Model):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    traffic_policy: TrafficPolicy | None = None


class DestinationRuleSpec(Model):
    host: str
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] = Field(default_factory=list)
    export_to: list[str] | None = None
    workload_selector: MatchLabelsSelector | None = None


# ---------------------------------------------------------------------------- Gateway


class GatewayPort(Model):
    number: Port
    protocol: str
    name: str | None = None
    target_port: Port | None = None


ServerTLSMode = Literal["PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"]
TLSProtocolVersion = Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]


class ServerTLSSettings(Model):
    https_redirect: bool | None = None
    mode: ServerTLSMode | None = None
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    credential_name: str | None = None
    credential_names: list[str] | None = None
    tls_certificates: list[dict[str, Any]] | None = None
    subject_alt_names: list[str] | None = None
    verify_certificate_spki: list[str] | None = None
    verify_certificate_hash: list[str] | None = None
    min_protocol_version: TLSProtocolVersion | None = None
    max_protocol_version: TLSProtocolVersion | None = None
    cipher_suites: list[str] | None = None


class Server(Model):
    port: GatewayPort
    hosts: list[str] = Field(default_factory=list)
    tls: ServerTLSSettings | None = None
    name: str | None = None
    bind: str | None = None
    default_endpoint: str | None = None


class GatewaySpec(Model):
    selector: dict[str, str] = Field(default_factory=dict)
    servers: list[Server] = Field(default_factory=list)


# ---------------------------------------------------------------------------- ServiceEntry / WorkloadEntry


class WorkloadEntrySpec(Model):
    address: str | None = None
    ports: dict[str, Port] | None = None
    labels: dict[str, str] | None = None
    network: str | None = None
    locality: str | None = None
    weight: NonNegInt | None = None
    service_account: str | None = None


class ServiceEntryPort(Model):
    number: Port
    protocol: str | None = None
    name: str | None = None
    target_port: Port | None = None


class ServiceEntrySpec(Model):
    hosts: list[str] = Field(default_factory=list)
    addresses: list[str] | None = None
    ports: list[ServiceEntryPort] = Field(default_factory=list)
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] = "MESH_EXTERNAL"
    resolution: Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"] = "NONE"
    endpoints: list[WorkloadEntrySpec] | None = None
    workload_selector: WorkloadSelector | None = None
    export_to: list[str] | None = None
    subject_alt_names: list[str] | None = None


# ---------------------------------------------------------------------------- Sidecar


class SidecarPort(Model):
    number: Port
    protocol: str | None = None
    name: str | None = None
    target_port: Port | None = None


CaptureMode = Literal["DEFAULT", "IPTABLES", "NONE"]


class IstioIngressListener(Model):
    port: SidecarPort
    bind: str | None = None
    capture_mode: CaptureMode | None = None
    default_endpoint: str | None = None
    tls: ServerTLSSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None


class IstioEgressListener(Model):
    port: SidecarPort | None = None
    bind: str | None = None
    capture_mode: CaptureMode | None = None
    hosts: list[str] = Field(default_factory=list)


class OutboundTrafficPolicy(Model):
    mode: Literal["REGISTRY_ONLY", "ALLOW_ANY"] = "ALLOW_ANY"
    egress_proxy: Destination | None = None


class SidecarSpec(Model):
    workload_selector: WorkloadSelector | None = None
    ingress: list[IstioIngressListener] | None = None
    egress: list[IstioEgressListener] | None = None
    outbound_traffic_policy: OutboundTrafficPolicy | None = None
    inbound_connection_pool: ConnectionPoolSettings | None = None


# ---------------------------------------------------------------------------- EnvoyFilter (v1alpha3)

EnvoyFilterContext = Literal["ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"]
EnvoyFilterApplyTo = Literal[
    "INVALID",
    "LISTENER",
    "FILTER_CHAIN",
    "NETWORK_FILTER",
    "HTTP_FILTER",
    "ROUTE_CONFIGURATION",
    "VIRTUAL_HOST",
    "HTTP_ROUTE",
    "CLUSTER",
    "EXTENSION_CONFIG",
    "BOOTSTRAP",
    "LISTENER_FILTER",
]
EnvoyFilterOperation = Literal[
    "INVALID",
    "MERGE",
    "ADD",
    "REMOVE",
    "INSERT_BEFORE",
    "INSERT_AFTER",
    "INSERT_FIRST",
    "REPLACE",
]


class EnvoyFilterProxyMatch(Model):
    proxy_version: str | None = None
    metadata: dict[str, str] | None = None


class EnvoyFilterSubFilterMatch(Model):
    name: str | None = None


class EnvoyFilterFilterMatch(Model):
    name: str | None = None
    sub_filter: EnvoyFilterSubFilterMatch | None = None


class EnvoyFilterChainMatch(Model):
    name: str | None = None
    sni: str | None = None
    transport_protocol: str | None = None
    application_protocols: str | None = None
    filter: EnvoyFilterFilterMatch | None = None
    destination_port: NonNegInt | None = None


class EnvoyFilterListenerMatch(Model):
    port_number: NonNegInt | None = None
    port_name: str | None = None
    filter_chain: EnvoyFilterChainMatch | None = None
    listener_filter: str | None = None
    name: str | None = None


class EnvoyFilterRouteMatch(Model):
    name: str | None = None
    action: Literal["ANY", "ROUTE", "REDIRECT", "DIRECT_RESPONSE"] = "ANY"


class EnvoyFilterVirtualHostMatch(Model):
    name: str | None = None
    domain_name: str | None = None
    route: EnvoyFilterRouteMatch | None = None


class EnvoyFilterRouteConfigurationMatch(Model):
    port_number: NonNegInt | None = None
    port_name: str | None = None
    gateway: str | None = None
    vhost: EnvoyFilterVirtualHostMatch | None = None
    name: str | None = None


class EnvoyFilterClusterMatch(Model):
    port_number: NonNegInt | None = None
    service: str | None = None
    subset: str | None = None
    name: str | None = None


class EnvoyFilterObjectMatch(Model):
    context: EnvoyFilterContext = "ANY"
    proxy: EnvoyFilterProxyMatch | None = None
    listener: EnvoyFilterListenerMatch | None = None
    route_configuration: EnvoyFilterRouteConfigurationMatch | None = None
    cluster: EnvoyFilterClusterMatch | None = None


class EnvoyFilterPatch(Model):
    operation: EnvoyFilterOperation = "INVALID"
    # Envoy's own JSON for the object (`@type` in Any fields such as typed_config): free-form here,
    # converted to the applyTo's proto by validation and by the patch step.
    value: dict[str, Any] | None = None
    filter_class: Literal["UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"] | None = None


class EnvoyConfigObjectPatch(Model):
    apply_to: EnvoyFilterApplyTo = "INVALID"
    match: EnvoyFilterObjectMatch | None = None
    patch: EnvoyFilterPatch | None = None


class EnvoyFilterSpec(Model):
    workload_selector: WorkloadSelector | None = None
    target_refs: list[dict[str, Any]] | None = None
    config_patches: list[EnvoyConfigObjectPatch] = Field(default_factory=list)
    priority: int = 0


# ---------------------------------------------------------------------------- the kinds


class VirtualService(Resource[VirtualServiceSpec]):
    KIND = "VirtualService"


class DestinationRule(Resource[DestinationRuleSpec]):
    KIND = "DestinationRule"


class Gateway(Resource[GatewaySpec]):
    KIND = "Gateway"


class ServiceEntry(Resource[ServiceEntrySpec]):
    KIND = "ServiceEntry"


class WorkloadEntry(Resource[WorkloadEntrySpec]):
    KIND = "WorkloadEntry"


class Sidecar(Resource[SidecarSpec]):
    KIND = "Sidecar"


class EnvoyFilter(Resource[EnvoyFilterSpec]):
    KIND = "EnvoyFilter"
