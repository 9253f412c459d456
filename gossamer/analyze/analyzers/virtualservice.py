"""VirtualService analyzers: destinations (IST0101 host, host:port, subset, mirror; IST0112), gateways
(IST0101, IST0132), hosts several mesh VirtualServices define (IST0109), subsets that an ingress
route ignores (IST0140)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gossamer.analyze.context import (
    EXPORT_ALL,
    EXPORT_LOCAL,
    Context,
    name_from_host,
    to_fqdn,
)
from gossamer.analyze.messages import Message
from gossamer.analyze.registry import analyzer
from gossamer.mesh import hosts_intersect
from gossamer.resources.base import Resource
from gossamer.resources.networking import DestinationRule, VirtualService

MESH = "mesh"


@dataclass(frozen=True)
class RouteDestination:
    path: tuple[str | int, ...]  # path of the Destination in the document
    destination: Any
    mirror: bool


def route_destinations(vs: Resource[Any]) -> list[RouteDestination]:
    """tcp, tls, then http route destinations (Istio's order)."""
    out: list[RouteDestination] = []
    for kind in ("tcp", "tls", "http"):
        for i, rule in enumerate(getattr(vs.spec, kind) or []):
            for j, dest in enumerate(rule.route or []):
                out.append(RouteDestination(("spec", kind, i, "route", j, "destination"), dest.destination, False))
    return out


def mirror_destinations(vs: Resource[Any]) -> list[RouteDestination]:
    out: list[RouteDestination] = []
    for i, rule in enumerate(vs.spec.http or []):
        if rule.mirror is not None:
            out.append(RouteDestination(("spec", "http", i, "mirror"), rule.mirror, True))
        for j, m in enumerate(rule.mirrors or []):
            out.append(RouteDestination(("spec", "http", i, "mirrors", j, "destination"), m.destination, True))
    return out


@analyzer(
    "virtualservice.DestinationHostAnalyzer",
    "Checks the destination hosts associated with each virtual service",
    ("IST0101", "IST0112", "IST0140"),
)
def destination_hosts(ctx: Context) -> Iterator[Message]:
    for vs in ctx.of_kind(VirtualService):
        for d in [*route_destinations(vs), *mirror_destinations(vs)]:
            host = d.destination.host
            what = "mirror host" if d.mirror else "host"
            service = ctx.destination_service(vs.namespace, vs.spec.export_to, host)
            if service is None:
                yield ctx.message("IST0101", vs, d.path + ("host",), f"referenced {what} not found: {host!r}")
                continue
            port = d.destination.port
            if port is None:
                if len(service.ports) > 1:
                    numbers = [p.number for p in service.ports]
                    yield ctx.message(
                        "IST0112",
                        vs,
                        d.path + ("host",),
                        f"{host!r} exposes several ports {numbers}: the destination must name one",
                    )
            elif not any(p.number == port.number for p in service.ports):
                yield ctx.message(
                    "IST0101", vs, d.path + ("port",), f"referenced host:port not found: '{host}:{port.number}'"
                )
        yield from _ingress_subsets(ctx, vs)


def _ingress_subsets(ctx: Context, vs: Resource[Any]) -> Iterator[Message]:
    """Istio's IST0140: a gateway-bound route to a host without a subset, while another VirtualService
    routes that host by subset (the subset routing does not apply to gateway traffic)."""
    if not vs.spec.gateways:
        return
    for i, rule in enumerate(vs.spec.http or []):
        for j, dest in enumerate(rule.route or []):
            if dest.destination.subset:
                continue
            for other in ctx.of_kind(VirtualService):
                subsetted = [
                    r.destination
                    for h in other.spec.http or []
                    for r in h.route or []
                    if r.destination.subset and r.destination.host in (other.spec.hosts or [])
                ]
                for _ in (d for d in subsetted if d.host == dest.destination.host):
                    yield ctx.message(
                        "IST0140",
                        vs,
                        ("spec", "http", i, "route", j, "destination", "host"),
                        f"VirtualService {other.namespace}/{other.name} routes "
                        f"{dest.destination.host!r} by subset; requests through the gateway ignore "
                        "that (this route names no subset)",
                    )


@analyzer(
    "virtualservice.DestinationRuleAnalyzer",
    "Checks the destination rules associated with each virtual service",
    ("IST0101",),
)
def destination_subsets(ctx: Context) -> Iterator[Message]:
    subsets: set[tuple[str, str, str]] = set()
    for dr in ctx.of_kind(DestinationRule):
        ns, name = name_from_host(dr.namespace, dr.spec.host)
        subsets.update((ns, name, s.name) for s in dr.spec.subsets)
    for vs in ctx.of_kind(VirtualService):
        for d in [*route_destinations(vs), *mirror_destinations(vs)]:
            subset = d.destination.subset
            if not subset:
                continue
            ns, name = name_from_host(vs.namespace, d.destination.host)
            if (ns, name, subset) not in subsets:
                what = "mirror+subset" if d.mirror else "host+subset"
                yield ctx.message(
                    "IST0101",
                    vs,
                    d.path + ("subset",),
                    f"referenced {what} in destinationrule not found: '{d.destination.host}+{subset}'",
                )


def _gateway_ref(vs_ns: str, ref: str) -> tuple[str, str]:
    ns, sep, name = ref.partition("/")
    return (ns, name) if sep else (vs_ns, ref)


def _server_hosts_for(gateway: Resource[Any], vs_ns: str) -> list[str]:
    """The gateway's server hosts a VirtualService in `vs_ns` may bind to ("ns/host": only in ns)."""
    out: list[str] = []
    for server in gateway.spec.servers:
        for h in server.hosts:
            ns, sep, host = h.partition("/")
            if not sep:
                out.append(h)
            elif ns == EXPORT_LOCAL and gateway.namespace == vs_ns or ns == vs_ns or ns == EXPORT_ALL:
                out.append(host)
    return out


def _k8s_gateway_hosts(gateway: Resource[Any]) -> list[str] | None:
    """Listener hostnames of a Gateway API Gateway; None when a listener takes any host."""
    hosts: list[str] = []
    for listener in (gateway.raw.get("spec") or {}).get("listeners") or []:
        hostname = listener.get("hostname") if isinstance(listener, dict) else None
        if not hostname:
            return None
        hosts.append(str(hostname))
    return hosts


INTERNAL_GATEWAY = "~istio-autogenerated-k8s-gateway"


@analyzer(
    "virtualservice.GatewayAnalyzer",
    "Checks the gateways associated with each virtual service",
    ("IST0101", "IST0132", "IST0165"),
)
def gateways(ctx: Context) -> Iterator[Message]:
    for vs in ctx.of_kind(VirtualService):
        for i, ref in enumerate(vs.spec.gateways or []):
            if ref == MESH:
                continue
            if INTERNAL_GATEWAY in ref:
                yield ctx.message(
                    "IST0165",
                    vs,
                    ("spec", "gateways", i),
                    f"gateway {ref!r} is one Istio generates for a Kubernetes Gateway: bind to the "
                    "Kubernetes Gateway instead",
                )
                continue
            ns, name = _gateway_ref(vs.namespace, ref)
            gateway = ctx.find("Gateway", ns, name)
            k8s_gateway = None if gateway is not None else ctx.find("K8sGateway", ns, name)
            path = ("spec", "gateways", i)
            if gateway is None and k8s_gateway is None:
                yield ctx.message("IST0101", vs, path, f"referenced gateway not found: {ref!r}")
            if k8s_gateway is not None:
                gw_hosts = _k8s_gateway_hosts(k8s_gateway)
                match = gw_hosts is None or any(hosts_intersect(g, h) for g in gw_hosts for h in vs.spec.hosts)
            else:
                gw_hosts = _server_hosts_for(gateway, vs.namespace) if gateway is not None else []
                match = any(hosts_intersect(g, h) for g in gw_hosts for h in vs.spec.hosts)
            if not match:
                yield ctx.message(
                    "IST0132", vs, path, f"none of the hosts {list(vs.spec.hosts)} is served by gateway {ns}/{name}"
                )


def _export_scopes(vs: Resource[Any]) -> list[str]:
    export_to = vs.spec.export_to
    if not export_to or EXPORT_ALL in export_to:
        return [EXPORT_ALL]
    return sorted({vs.namespace if e == EXPORT_LOCAL else e for e in export_to})


def _binds_mesh(vs: Resource[Any]) -> bool:
    return not vs.spec.gateways or MESH in vs.spec.gateways


@analyzer(
    "virtualservice.ConflictingMeshGatewayHostsAnalyzer",
    "Checks if multiple virtual services associated with the mesh gateway have conflicting hosts",
    ("IST0109",),
)
def conflicting_mesh_hosts(ctx: Context) -> Iterator[Message]:
    by_host: dict[tuple[str, str], list[VirtualService]] = {}
    for vs in ctx.of_kind(VirtualService):
        if not _binds_mesh(vs):
            continue
        for scope in _export_scopes(vs):
            for h in vs.spec.hosts:
                by_host.setdefault((scope, to_fqdn(vs.namespace, h)), []).append(vs)
    reported: set[tuple[str, str]] = set()
    for (scope, host), listed in by_host.items():
        group = list(listed)
        if scope != EXPORT_ALL:  # VirtualServices visible everywhere also reach this scope
            for (other_scope, other_host), more in by_host.items():
                if other_scope == EXPORT_ALL and hosts_intersect(host, other_host):
                    group.extend(more)
        if len(group) < 2:
            continue
        names = ",".join(sorted(f"{v.namespace}/{v.name}" for v in group))
        for vs in group:
            if (vs.namespace, vs.name) in reported:
                continue
            reported.add((vs.namespace, vs.name))
            yield ctx.message(
                "IST0109",
                vs,
                ("metadata", "name"),
                f"the VirtualServices {names} bound to the mesh gateway all define host "
                f"{scope}/{host}; sidecars use only one of them (merge them into one)",
            )
