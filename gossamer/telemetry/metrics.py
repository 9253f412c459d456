"""Access log entries -> Istio's standard metrics (names, labels and meaning as Istio's).

Istio computes these in every proxy (its stats extension); Gossamer's proxies stream an access
log entry per request (per TCP connection open/close) to the control plane instead, and this
module labels each entry and counts it, in a CollectorRegistry of its own:

* ``reporter``: ``source`` for a sidecar's outbound entries and for gateways, ``destination``
  for a sidecar's inbound entries.
* The reporting proxy's side (source for outbound, destination for inbound) comes from its node
  metadata (NAMESPACE, LABELS, SERVICE_ACCOUNT, WORKLOAD_NAME, CLUSTER_ID); the other side from
  the mesh snapshot: the upstream host's IP (outbound) or the downstream peer's IP (inbound) is
  looked up among the workloads. Principals come from the TLS peer/local certificate URI SANs
  where the proxy saw them, otherwise from the workload's service account when mTLS applies.
* ``destination_service`` from the upstream cluster ``outbound|PORT|SUBSET|HOST`` (outbound), or
  from the request's authority / the services selecting the workload (inbound).

Anything not known is ``unknown``, as with Istio.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

from envoy.config.core.v3 import address_pb2
from envoy.data.accesslog.v3 import accesslog_pb2 as data_pb2
from prometheus_client import CollectorRegistry, Counter, Histogram

from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import DOMAIN_SUFFIX, MeshService, Workload

UNKNOWN = "unknown"
TRUST_DOMAIN = "cluster.local"
DEFAULT_CLUSTER = "Kubernetes"

Direction = Literal["outbound", "inbound", "gateway"]

# Istio's (Envoy's default) histogram buckets, for durations in ms and for sizes in bytes alike.
BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
           1800000, 3600000)

PEER_LABELS = ("workload", "workload_namespace", "principal", "app", "version", "cluster")
TCP_LABELS = (
    "reporter",
    *(f"source_{x}" for x in PEER_LABELS),
    *(f"destination_{x}" for x in PEER_LABELS),
    "destination_service", "destination_service_name", "destination_service_namespace",
    "request_protocol", "response_flags", "connection_security_policy",
)
LABELS = (*TCP_LABELS, "response_code", "grpc_response_status")

# Envoy's response flag short names (%RESPONSE_FLAGS%), by field of the access log's ResponseFlags.
RESPONSE_FLAGS = (
    ("failed_local_healthcheck", "LH"), ("no_healthy_upstream", "UH"), ("upstream_request_timeout", "UT"),
    ("local_reset", "LR"), ("upstream_remote_reset", "UR"), ("upstream_connection_failure", "UF"),
    ("upstream_connection_termination", "UC"), ("upstream_overflow", "UO"), ("no_route_found", "NR"),
    ("delay_injected", "DI"), ("fault_injected", "FI"), ("rate_limited", "RL"),
    ("rate_limit_service_error", "RLSE"), ("downstream_connection_termination", "DC"),
    ("upstream_retry_limit_exceeded", "URX"), ("stream_idle_timeout", "SI"),
    ("invalid_envoy_request_headers", "IH"), ("downstream_protocol_error", "DPE"),
    ("upstream_max_stream_duration_reached", "UMSDR"), ("response_from_cache_filter", "RFCF"),
    ("no_filter_config_found", "NFCF"), ("duration_timeout", "DT"), ("upstream_protocol_error", "UPE"),
    ("no_cluster_found", "NC"), ("overload_manager", "OM"), ("dns_resolution_failure", "DF"),
    ("downstream_remote_reset", "DR"),
)


@dataclass(frozen=True)
class Peer:
    """One side of a request, as Istio's labels name it."""

    workload: str = UNKNOWN
    namespace: str = UNKNOWN
    principal: str = UNKNOWN
    app: str = UNKNOWN
    version: str = UNKNOWN
    cluster: str = UNKNOWN
    labels: tuple[tuple[str, str], ...] = ()

    def label_values(self) -> tuple[str, ...]:
        return (self.workload, self.namespace, self.principal, self.app, self.version, self.cluster)


UNKNOWN_PEER = Peer()


def spiffe_id(namespace: str, service_account: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}"


@dataclass(frozen=True)
class Reporter:
    """The proxy that sent a stream of entries (its node, from the stream's first message) and
    which of its sides the stream's log name says the entries were seen on."""

    direction: Direction
    peer: Peer
    node_id: str = ""

    @staticmethod
    def from_node(node: Any, log_name: str) -> Reporter:
        from gossamer.controlplane.proxies import metadata_of

        meta = metadata_of(node)
        labels = {str(k): str(v) for k, v in (meta.get("LABELS") or {}).items()}
        namespace = str(meta.get("NAMESPACE") or UNKNOWN)
        sa = str(meta.get("SERVICE_ACCOUNT") or "")
        peer = Peer(
            workload=str(meta.get("WORKLOAD_NAME") or UNKNOWN),
            namespace=namespace,
            principal=spiffe_id(namespace, sa) if sa and namespace != UNKNOWN else UNKNOWN,
            app=labels.get("app") or UNKNOWN,
            version=labels.get("version") or UNKNOWN,
            cluster=str(meta.get("CLUSTER_ID") or DEFAULT_CLUSTER),
            labels=tuple(sorted(labels.items())),
        )
        direction = cast(Direction, log_name if log_name in ("outbound", "inbound", "gateway") else "outbound")
        return Reporter(direction=direction, peer=peer, node_id=str(node.id))


def _workload_peer(w: Workload) -> Peer:
    labels = w.label_map
    return Peer(
        workload=w.deployment or w.name,
        namespace=w.namespace,
        principal=spiffe_id(w.namespace, w.service_account) if w.has_sidecar else UNKNOWN,
        app=labels.get("app") or UNKNOWN,
        version=labels.get("version") or UNKNOWN,
        cluster=DEFAULT_CLUSTER,
        labels=w.labels,
    )


class MeshIndex:
    """What the labels need from a snapshot: workloads by IP, services by host."""

    def __init__(self, snapshot: MeshSnapshot | None) -> None:
        self.snapshot = snapshot
        self._by_ip: dict[str, Workload] = {}
        self._services: tuple[MeshService, ...] = ()
        if snapshot is None:
            return
        self._services = snapshot.services
        for w in snapshot.workloads:
            # Several entries for one IP (a pod replaced): prefer the ready one.
            if w.ip and (w.ip not in self._by_ip or (w.ready and not self._by_ip[w.ip].ready)):
                self._by_ip[w.ip] = w

    def workload(self, ip: str) -> Workload | None:
        return self._by_ip.get(ip)

    def service_by_host(self, host: str) -> MeshService | None:
        return next((s for s in self._services if s.hostname == host), None)

    def service_for_authority(self, authority: str, namespace: str) -> MeshService | None:
        """`reviews:9080`, `reviews.default`, `reviews.default.svc.cluster.local` -> the Service."""
        host = authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority
        host = host.lower().rstrip(".")
        if not host:
            return None
        if "." not in host:
            return self.service_by_host(f"{host}.{namespace}.{DOMAIN_SUFFIX}")
        parts = host.split(".")
        if len(parts) == 2 or (len(parts) == 3 and parts[2] == "svc"):
            return self.service_by_host(f"{parts[0]}.{parts[1]}.{DOMAIN_SUFFIX}")
        return self.service_by_host(host)

    def services_selecting(self, namespace: str, labels: dict[str, str], target_port: int) -> list[MeshService]:
        out = []
        for s in self._services:
            if s.is_service_entry or s.namespace != namespace or not s.selects(labels):
                continue
            if target_port and not any(_target(p.target_port, p.port) == target_port for p in s.ports):
                continue
            out.append(s)
        return out


def _target(target: int | str, port: int) -> int:
    if isinstance(target, int):
        return target
    return int(target) if target.isdigit() else port


def _ip(address: address_pb2.Address) -> str:
    if address.HasField("socket_address"):
        return str(address.socket_address.address)
    return ""


def _uri_san(props: data_pb2.TLSProperties.CertificateProperties) -> str:
    for san in props.subject_alt_name:
        if san.uri:
            return str(san.uri)
    return ""


def response_flags(flags: data_pb2.ResponseFlags) -> str:
    names = [code for field, code in RESPONSE_FLAGS if getattr(flags, field, False)]
    if flags.HasField("unauthorized_details"):
        names.append("UAEX")
    return ",".join(names) or "-"


@dataclass(frozen=True)
class Destination:
    peer: Peer
    service: str = UNKNOWN
    service_name: str = UNKNOWN
    service_namespace: str = UNKNOWN


def _service_labels(service: MeshService | None, host: str = "") -> tuple[str, str, str]:
    if service is not None:
        return service.hostname, service.name if not service.is_service_entry else service.hostname, \
            service.namespace
    if not host:
        return UNKNOWN, UNKNOWN, UNKNOWN
    parts = host.split(".")
    if host.endswith("." + DOMAIN_SUFFIX) and len(parts) == 5:
        return host, parts[0], parts[1]
    return host, host, UNKNOWN


class MeshMetrics:
    """Istio's standard metrics in a registry of their own; `record_*` take one access log entry."""

    def __init__(self, snapshot: Callable[[], MeshSnapshot | None] = lambda: None) -> None:
        self._snapshot = snapshot
        self._index = MeshIndex(None)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("istio_requests", "Requests handled by an Istio proxy", LABELS, registry=r)
        self.duration = Histogram("istio_request_duration_milliseconds", "Duration of requests (ms)", LABELS,
                                  buckets=BUCKETS, registry=r)
        self.request_bytes = Histogram("istio_request_bytes", "HTTP request sizes (headers and body, bytes)",
                                       LABELS, buckets=BUCKETS, registry=r)
        self.response_bytes = Histogram("istio_response_bytes", "HTTP response sizes (headers and body, bytes)",
                                        LABELS, buckets=BUCKETS, registry=r)
        self.tcp_sent = Counter("istio_tcp_sent_bytes", "Bytes sent during responses on TCP connections",
                                TCP_LABELS, registry=r)
        self.tcp_received = Counter("istio_tcp_received_bytes",
                                    "Bytes received during requests on TCP connections", TCP_LABELS, registry=r)
        self.tcp_opened = Counter("istio_tcp_connections_opened", "TCP connections opened", TCP_LABELS,
                                  registry=r)
        self.tcp_closed = Counter("istio_tcp_connections_closed", "TCP connections closed", TCP_LABELS,
                                  registry=r)
        self.entries = 0

    def index(self) -> MeshIndex:
        snap = self._snapshot()
        if snap is not self._index.snapshot:
            self._index = MeshIndex(snap)
        return self._index

    # -- labels --------------------------------------------------------------
    def _sides(self, reporter: Reporter, common: data_pb2.AccessLogCommon, authority: str
               ) -> tuple[Peer, Destination, str]:
        """(source, destination, connection_security_policy) of one entry."""
        index = self.index()
        tls = common.tls_properties if common.HasField("tls_properties") else None
        if reporter.direction == "inbound":
            peer_san = _uri_san(tls.peer_certificate_properties) if tls is not None else ""
            local_san = _uri_san(tls.local_certificate_properties) if tls is not None else ""
            w = index.workload(_ip(common.downstream_remote_address))
            source = _workload_peer(w) if w is not None else UNKNOWN_PEER
            source = _replace(source, principal=peer_san or UNKNOWN)
            if w is None and peer_san:
                source = _replace(source, namespace=_principal_namespace(peer_san))
            dest_peer = _replace(reporter.peer, principal=local_san or UNKNOWN)
            service = index.service_for_authority(authority, reporter.peer.namespace) if authority else None
            if service is None:
                port = _inbound_port(common.upstream_cluster) or _port(common.downstream_local_address)
                found = index.services_selecting(reporter.peer.namespace, dict(reporter.peer.labels), port)
                service = found[0] if found else None
            svc = _service_labels(service)
            return source, Destination(dest_peer, *svc), "mutual_tls" if peer_san else "none"
        # outbound (sidecar) and gateway: the reporter is the source.
        host = _outbound_host(common.upstream_cluster)
        service = index.service_by_host(host) if host else None
        if service is None and not host and authority:
            service = index.service_for_authority(authority, reporter.peer.namespace)
        w = index.workload(_ip(common.upstream_remote_address))
        dest_peer = _workload_peer(w) if w is not None else UNKNOWN_PEER
        if service is not None or host:
            svc = _service_labels(service, host)
        elif common.upstream_cluster in ("PassthroughCluster", "BlackHoleCluster"):
            svc = (_ip(common.upstream_remote_address) or authority or UNKNOWN, common.upstream_cluster, UNKNOWN)
        else:
            svc = (UNKNOWN, UNKNOWN, UNKNOWN)
        return reporter.peer, Destination(dest_peer, *svc), UNKNOWN

    def _tcp_labels(self, reporter: Reporter, common: data_pb2.AccessLogCommon, authority: str,
                    protocol: str) -> list[str]:
        source, dest, policy = self._sides(reporter, common, authority)
        return ["destination" if reporter.direction == "inbound" else "source",
                *source.label_values(), *dest.peer.label_values(),
                dest.service, dest.service_name, dest.service_namespace,
                protocol, response_flags(common.response_flags), policy]

    def http_labels(self, reporter: Reporter, entry: data_pb2.HTTPAccessLogEntry) -> dict[str, str]:
        headers = entry.request.request_headers
        grpc = headers.get("content-type", "").startswith("application/grpc")
        status = entry.response.response_trailers.get("grpc-status") or \
            entry.response.response_headers.get("grpc-status") or ""
        values = [*self._tcp_labels(reporter, entry.common_properties, entry.request.authority,
                                    "grpc" if grpc else "http"),
                  str(entry.response.response_code.value), status if grpc else ""]
        return dict(zip(LABELS, values, strict=True))

    def tcp_labels(self, reporter: Reporter, entry: data_pb2.TCPAccessLogEntry) -> dict[str, str]:
        return dict(zip(TCP_LABELS, self._tcp_labels(reporter, entry.common_properties, "", "tcp"), strict=True))

    # -- recording -----------------------------------------------------------
    def record_http(self, reporter: Reporter, entries: Iterable[data_pb2.HTTPAccessLogEntry]) -> None:
        for entry in entries:
            self.entries += 1
            labels = self.http_labels(reporter, entry)
            common = entry.common_properties
            self.requests.labels(**labels).inc()
            duration = common.duration if common.HasField("duration") else common.time_to_last_downstream_tx_byte
            self.duration.labels(**labels).observe(duration.ToNanoseconds() / 1e6)
            req, resp = entry.request, entry.response
            self.request_bytes.labels(**labels).observe(req.request_headers_bytes + req.request_body_bytes)
            self.response_bytes.labels(**labels).observe(resp.response_headers_bytes + resp.response_body_bytes)

    def record_tcp(self, reporter: Reporter, entries: Iterable[data_pb2.TCPAccessLogEntry]) -> None:
        for entry in entries:
            self.entries += 1
            labels = self.tcp_labels(reporter, entry)
            kind = entry.common_properties.access_log_type
            if kind in (data_pb2.AccessLogType.TcpUpstreamConnected, data_pb2.AccessLogType.NotSet):
                self.tcp_opened.labels(**labels).inc()
            if kind in (data_pb2.AccessLogType.TcpConnectionEnd, data_pb2.AccessLogType.NotSet):
                self.tcp_closed.labels(**labels).inc()
            if kind != data_pb2.AccessLogType.TcpUpstreamConnected:
                # Totals of the connection (no periodic entries are asked for, so nothing counts twice).
                self.tcp_sent.labels(**labels).inc(entry.connection_properties.sent_bytes)
                self.tcp_received.labels(**labels).inc(entry.connection_properties.received_bytes)


def _replace(peer: Peer, **changes: Any) -> Peer:
    return replace(peer, **changes)


def _principal_namespace(principal: str) -> str:
    parts = principal.split("/")
    return parts[parts.index("ns") + 1] if "ns" in parts[:-1] else UNKNOWN


def _outbound_host(cluster: str) -> str:
    parts = cluster.split("|")
    return parts[3] if len(parts) == 4 and parts[0] == "outbound" else ""


def _inbound_port(cluster: str) -> int:
    parts = cluster.split("|")
    return int(parts[1]) if len(parts) == 4 and parts[0] == "inbound" and parts[1].isdigit() else 0


def _port(address: address_pb2.Address) -> int:
    return int(address.socket_address.port_value) if address.HasField("socket_address") else 0

