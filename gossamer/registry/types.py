"""The service registry: services and workload instances, Istio-style.

Built from Kubernetes Services (config) and pods (reported by the runtime).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DOMAIN_SUFFIX = "svc.cluster.local"

Protocol = Literal["http", "http2", "grpc", "tcp", "tls"]


def protocol_for_port(name: str, app_protocol: str | None) -> Protocol:
    """Istio's protocol selection: appProtocol first, then the port name prefix."""
    candidate = (app_protocol or name or "").lower()
    prefix = candidate.split("-", 1)[0]
    if prefix in ("http", "http2", "grpc", "tcp", "tls"):
        return prefix  # type: ignore[return-value]
    if prefix in ("https",):
        return "tls"
    if prefix in ("grpc-web",):
        return "http"
    if prefix in ("mongo", "mysql", "redis", "mqtt"):
        return "tcp"
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


@dataclass(frozen=True)
class MeshService:
    name: str
    namespace: str
    vip: str
    ports: tuple[ServicePort, ...]
    selector: tuple[tuple[str, str], ...]

    @property
    def hostname(self) -> str:
        return f"{self.name}.{self.namespace}.{DOMAIN_SUFFIX}"

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
    # Routers bind their 8080 listener on this port in the host's network namespace too.
    ingress_port: int = 0
    host_netns: str = ""
    named_ports: tuple[tuple[str, int], ...] = ()

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def group(self) -> str:
        labels = ",".join(f"{k}={v}" for k, v in self.labels)
        return f"{self.type}/{self.namespace}/{labels}"
