"""The service registry: services and workload instances, Istio-style.

Built from Kubernetes Services (config) and pods (reported by the runtime).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gossamer.mesh import service_fqdn

Protocol = Literal["http", "http2", "grpc", "tcp", "tls"]


# Istio's protocol names (Service port name prefixes, appProtocol, ServiceEntry/Gateway
# `protocol`) -> how the proxy treats the port. MONGO, MYSQL, REDIS and friends are TCP to
# Istio unless their protocol filters are enabled (they are not by default).
_PROTOCOLS: dict[str, Protocol] = {
    "http": "http",
    "http2": "http2",
    "grpc": "grpc",
    "grpc-web": "http",
    "h2c": "http2",
    "kubernetes.io/h2c": "http2",
    "tcp": "tcp",
    "tls": "tls",
    "https": "tls",
    "mongo": "tcp",
    "mysql": "tcp",
    "redis": "tcp",
    "mqtt": "tcp",
    "thrift": "tcp",
}


def protocol_from_name(protocol: str) -> Protocol | None:
    """An Istio protocol name (any case, e.g. ServiceEntry `protocol: HTTPS`), or None if unknown."""
    return _PROTOCOLS.get(protocol.lower())


def protocol_for_port(name: str, app_protocol: str | None) -> Protocol:
    """Istio's protocol selection: appProtocol first, then the port name prefix
    (`<protocol>[-<suffix>]`, e.g. http2-api, grpc-web, tcp-db, https)."""
    if app_protocol:
        found = protocol_from_name(app_protocol)
        if found is not None:
            return found
    lowered = (name or "").lower()
    if lowered == "grpc-web" or lowered.startswith("grpc-web-"):
        return "http"
    found = protocol_from_name(lowered.split("-", 1)[0])
    if found is not None:
        return found
    # Istio sniffs unnamed ports; HTTP is what sniffing finds for every sample we ship.
    return "http"


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    target_port: int | str
    protocol: Protocol = "http"

    @property
    def is_http(self) -> bool:
        return self.protocol in ("http", "http2", "grpc")


# How a service's endpoints are found (Istio's ServiceEntry resolution; Kubernetes
# Services are STATIC: endpoints from the registry, over EDS).
Resolution = Literal["STATIC", "DNS", "DNS_ROUND_ROBIN", "NONE"]


@dataclass(frozen=True)
class StaticEndpoint:
    """An endpoint listed inline in a ServiceEntry (`spec.endpoints[]`)."""

    address: str  # an IP, or a DNS name for DNS resolution
    ports: tuple[tuple[str, int], ...] = ()  # service port name -> endpoint port
    labels: tuple[tuple[str, str], ...] = ()

    def port_for(self, port: ServicePort) -> int:
        return dict(self.ports).get(port.name) or _target_number(port)


def _target_number(port: ServicePort) -> int:
    target = port.target_port
    if isinstance(target, int):
        return target
    return int(target) if target.isdigit() else port.port


@dataclass(frozen=True)
class MeshService:
    """A Kubernetes Service, or one host of a ServiceEntry."""

    name: str
    namespace: str
    vip: str
    ports: tuple[ServicePort, ...]
    selector: tuple[tuple[str, str], ...]
    # ServiceEntry hosts: the host itself ("" for Kubernetes Services: name.namespace.svc.cluster.local).
    host: str = ""
    # ServiceEntry `addresses` (IPs or CIDRs); `vip` is the first plain IP or an auto-allocated one.
    addresses: tuple[str, ...] = ()
    resolution: Resolution = "STATIC"
    endpoints: tuple[StaticEndpoint, ...] = ()
    mesh_external: bool = False
    export_to: tuple[str, ...] = ()  # empty: everywhere

    @property
    def hostname(self) -> str:
        return self.host or service_fqdn(self.name, self.namespace)

    @property
    def is_service_entry(self) -> bool:
        return bool(self.host)

    def exported_to(self, namespace: str) -> bool:
        if not self.export_to or "*" in self.export_to:
            return True
        return any((e == "." and self.namespace == namespace) or e == namespace for e in self.export_to)

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.port == number), None)

    def selects(self, labels: dict[str, str]) -> bool:
        return bool(self.selector) and all(labels.get(k) == v for k, v in self.selector)


@dataclass(frozen=True)
class Workload:
    """A pod (or later a WorkloadEntry) that can be an endpoint and may run a proxy."""

    name: str
    namespace: str
    ip: str
    labels: tuple[tuple[str, str], ...]
    service_account: str
    ready: bool
    deployment: str = ""
    named_ports: tuple[tuple[str, int], ...] = ()
    # A WorkloadEntry (a workload outside the pods); its named_ports are its `ports` map.
    workload_entry: bool = False
    # The pod runs an Envoy sidecar (and its agent): it accepts mesh mTLS (endpoint tlsMode: istio).
    has_sidecar: bool = True
    # A gateway pod (router proxy): like Istio's gateways it carries no tlsMode label, so auto mTLS
    # sends it plaintext (its servers say what they accept, e.g. tls mode ISTIO_MUTUAL).
    router: bool = False

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def resolve_target_port(self, target: int | str) -> int | None:
        if isinstance(target, int):
            return target
        if target.isdigit():
            return int(target)
        return dict(self.named_ports).get(target)


ProxyType = Literal["sidecar", "router"]


@dataclass(frozen=True)
class Proxy:
    """The identity of a proxy as far as its config is concerned (its group key)."""

    type: ProxyType
    namespace: str
    labels: tuple[tuple[str, str], ...]
    named_ports: tuple[tuple[str, int], ...] = ()
    # The proxy's agent serves SDS (cluster `sds-grpc`, node metadata GOSSAMER_SDS): only then may its
    # config refer to secrets, i.e. use mTLS. Without it the proxy speaks plaintext only.
    has_sds: bool = False

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def group(self) -> str:
        labels = ",".join(f"{k}={v}" for k, v in self.labels)
        return f"{self.type}/{self.namespace}/{labels}" + ("/sds" if self.has_sds else "")
