"""ServiceEntry and WorkloadEntry -> registry entries (Istio's serviceentry controller).

A ServiceEntry becomes one MeshService per host (sharing ports, addresses, resolution and
endpoints); a WorkloadEntry becomes a Workload that ServiceEntries with a workloadSelector
(and Kubernetes Services) select like a pod. Pure: VIPs come from a callback.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from gossamer.registry.types import (
    MeshService,
    ServicePort,
    StaticEndpoint,
    Workload,
    protocol_for_port,
    protocol_from_name,
)
from gossamer.resources.base import Resource
from gossamer.resources.networking import ServiceEntry, ServiceEntrySpec, WorkloadEntry

# (namespace, key) -> a VIP from the service range; key names one host of one ServiceEntry.
AllocateVip = Callable[[str, str], str]

VIP_KEY_PREFIX = "ServiceEntry/"


def vip_key(entry_name: str, host: str) -> str:
    return f"{VIP_KEY_PREFIX}{entry_name}/{host}"


def is_plain_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _ports(spec: ServiceEntrySpec) -> tuple[ServicePort, ...]:
    out = []
    for p in spec.ports or []:
        protocol = protocol_from_name(p.protocol) if p.protocol else None
        out.append(
            ServicePort(
                name=p.name or "",
                port=p.number,
                target_port=p.target_port if p.target_port is not None else p.number,
                protocol=protocol or protocol_for_port(p.name or "", None),
            )
        )
    return tuple(out)


def _resolution(value: str) -> str:
    return "DNS" if value == "DYNAMIC_DNS" else value


def needs_vip(entry: ServiceEntry, host: str) -> bool:
    """Istio's auto-allocation: no addresses, a concrete host, and a resolution other than NONE
    (with NONE the proxy could not know which address the application meant)."""
    spec = entry.spec
    return not spec.addresses and not host.startswith("*") and spec.resolution != "NONE"


def service_entry_services(entry: ServiceEntry, allocate: AllocateVip | None = None) -> list[MeshService]:
    spec = entry.spec
    ns = entry.metadata.namespace
    addresses = tuple(spec.addresses or ())
    plain = [a for a in addresses if is_plain_ip(a)]
    endpoints = tuple(
        StaticEndpoint(
            address=e.address or "",
            ports=tuple(sorted((e.ports or {}).items())),
            labels=tuple(sorted((e.labels or {}).items())),
        )
        for e in spec.endpoints or []
        if e.address
    )
    selector = tuple(sorted((spec.workload_selector.labels or {}).items())) if spec.workload_selector else ()
    out = []
    for host in spec.hosts:
        vip = plain[0] if plain else ""
        if not vip and allocate is not None and needs_vip(entry, host):
            vip = allocate(ns, vip_key(entry.metadata.name, host))
        out.append(
            MeshService(
                name=host,
                namespace=ns,
                vip=vip,
                ports=_ports(spec),
                selector=selector,
                host=host,
                addresses=addresses,
                resolution=_resolution(spec.resolution),  # type: ignore[arg-type]
                endpoints=endpoints,
                mesh_external=spec.location == "MESH_EXTERNAL",
                export_to=tuple(spec.export_to or ()),
            )
        )
    return out


def workload_entry_workloads(entries: Iterable[WorkloadEntry]) -> list[Workload]:
    out = []
    for we in entries:
        spec = we.spec
        if not spec.address:
            continue
        out.append(
            Workload(
                name=we.metadata.name,
                namespace=we.metadata.namespace,
                ip=spec.address,
                labels=tuple(sorted((spec.labels or {}).items())),
                service_account=spec.service_account or "default",
                ready=True,
                named_ports=tuple(sorted((spec.ports or {}).items())),
                workload_entry=True,
            )
        )
    return out


def registry_services(
    resources: Mapping[str, Sequence[Resource[Any]]],
    allocate: AllocateVip | None = None,
) -> list[MeshService]:
    """Every ServiceEntry host as a MeshService; with two entries for one host in one namespace
    the older wins (Istio merges them; we keep the first)."""
    out: list[MeshService] = []
    seen: set[tuple[str, str]] = set()
    entries = cast(Sequence[ServiceEntry], resources.get("ServiceEntry", ()))  # the loader builds that class
    for entry in entries:
        for service in service_entry_services(entry, allocate):
            key = (service.namespace, service.hostname)
            if key not in seen:
                seen.add(key)
                out.append(service)
    return out
