"""Cross-reference checks at apply time, like `istioctl analyze`.

These are warnings, not errors (Istio accepts such config too): a route to a
host or subset that does not exist, a VirtualService bound to a missing Gateway.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from gossamer.registry.types import DOMAIN_SUFFIX
from gossamer.resources.issues import Issue
from gossamer.translate.hosts import host_matches, resolve_host
from gossamer.translate.routes import MESH_GATEWAY, qualify_gateway, vs_gateways

ROUTE_LISTS = ("http", "tcp", "tls")


def _destinations(vs: Any) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """(field path, Destination) for every destination a VirtualService names."""
    for kind in ROUTE_LISTS:
        for i, rule in enumerate(getattr(vs.spec, kind, None) or []):
            for j, dest in enumerate(rule.route or []):
                yield ("spec", kind, i, "route", j, "destination"), dest.destination
            if kind != "http":
                continue
            if rule.mirror is not None:
                yield ("spec", kind, i, "mirror"), rule.mirror
            for k, mirror in enumerate(rule.mirrors or []):
                yield ("spec", kind, i, "mirrors", k, "destination"), mirror.destination


def _known_hosts(resources: Iterable[Any]) -> list[str]:
    hosts: list[str] = []
    for r in resources:
        if r.kind == "Service":
            hosts.append(f"{r.metadata.name}.{r.metadata.namespace}.{DOMAIN_SUFFIX}")
        elif r.kind == "ServiceEntry":
            hosts.extend(resolve_host(h, r.metadata.namespace) for h in r.spec.hosts or [])
    return hosts


def _subsets(resources: Iterable[Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in resources:
        if r.kind == "DestinationRule":
            host = resolve_host(r.spec.host, r.metadata.namespace)
            out.setdefault(host, set()).update(s.name for s in r.spec.subsets or [])
    return out


def analyze(new: Sequence[Any], existing: Iterable[Any]) -> list[Issue]:
    """Warnings for `new` resources, checked against `existing` overridden by `new`."""
    merged = {r.key: r for r in existing}
    merged.update({r.key: r for r in new})
    everything = list(merged.values())
    hosts = _known_hosts(everything)
    subsets = _subsets(everything)
    gateways = {f"{r.metadata.namespace}/{r.metadata.name}" for r in everything if r.kind == "Gateway"}
    issues: list[Issue] = []

    def warn(resource: Any, path: tuple[str | int, ...], message: str) -> None:
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        issues.append(Issue("warning", resource.source_file, resource.line_of(path), resource.kind,
                            resource.metadata.name, field, message))

    for vs in (r for r in new if r.kind == "VirtualService"):
        ns = vs.metadata.namespace
        for path, dest in _destinations(vs):
            host = resolve_host(dest.host, ns)
            if not any(host_matches(h, host) or host_matches(host, h) for h in hosts):
                warn(vs, path + ("host",), f"referenced host not found: {dest.host!r} (IST0101)")
            elif dest.subset and dest.subset not in subsets.get(host, set()):
                warn(vs, path + ("subset",),
                     f"referenced host+subset in destinationrule not found: {host}+{dest.subset} (IST0101)")
        for i, gw in enumerate(vs.spec.gateways or []):
            name = qualify_gateway(gw, ns)
            if name != MESH_GATEWAY and name not in gateways:
                warn(vs, ("spec", "gateways", i), f"referenced gateway not found: {gw!r} (IST0101)")
        if MESH_GATEWAY in vs_gateways(vs):
            for i, host in enumerate(vs.spec.hosts or []):
                fqdn = resolve_host(host, ns)
                others = [o for o in everything if o.kind == "VirtualService" and o.key != vs.key
                          and MESH_GATEWAY in vs_gateways(o)
                          and fqdn in {resolve_host(h, o.metadata.namespace) for h in o.spec.hosts or []}]
                if others:
                    names = ", ".join(f"{o.metadata.namespace}/{o.metadata.name}" for o in others)
                    warn(vs, ("spec", "hosts", i),
                         f"the VirtualServices {names} also define host {fqdn!r} for the mesh; sidecars use only "
                         "the oldest one (IST0109 ConflictingMeshGatewayVirtualServiceHosts)")
    return issues
