"""Which services a proxy sees and what it does with unknown destinations.

Istio's Sidecar resource: the one whose workloadSelector matches the workload in its
namespace, else the namespace's Sidecar without a selector, else the root namespace's
(istio-system) Sidecar without a selector. Its `egress[].hosts` ("ns/host") limit the
services the proxy gets config for; `outboundTrafficPolicy.mode` says whether traffic to
unknown destinations passes through (ALLOW_ANY, the default) or is blocked (REGISTRY_ONLY).
ServiceEntry `exportTo` limits visibility too.
"""

from __future__ import annotations

from gossamer.mesh import ROOT_NAMESPACE, host_matches
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import MeshService, Proxy
from gossamer.resources.networking import (
    DestinationRule,
    OutboundTrafficPolicy,
    ServiceEntry,
    Sidecar,
    VirtualService,
)


def exported_to(resource: VirtualService | DestinationRule | ServiceEntry, namespace: str) -> bool:
    """Does a config resource's `exportTo` make it visible to proxies of `namespace`?"""
    export_to = list(resource.spec.export_to or [])
    if not export_to or "*" in export_to:
        return True
    own = resource.metadata.namespace
    return any((e == "." and own == namespace) or e == namespace for e in export_to)


def sidecar_for(snapshot: MeshSnapshot, proxy: Proxy) -> Sidecar | None:
    """The Sidecar resource that applies to this proxy (oldest first among equals), or None."""
    if proxy.type != "sidecar":
        return None
    sidecars = snapshot.of_kind(Sidecar)
    labels = proxy.label_map
    for sc in sidecars:
        selector = sc.spec.workload_selector
        if (
            sc.metadata.namespace == proxy.namespace
            and selector is not None
            and selector.labels
            and all(labels.get(k) == v for k, v in selector.labels.items())
        ):
            return sc
    for namespace in (proxy.namespace, ROOT_NAMESPACE):
        for sc in sidecars:
            selector = sc.spec.workload_selector
            if sc.metadata.namespace == namespace and (selector is None or not selector.labels):
                return sc
    return None


def registry_only(snapshot: MeshSnapshot, proxy: Proxy) -> bool:
    """The Sidecar's outboundTrafficPolicy, else the mesh config's (Istio's egress task sets it there)."""
    sc = sidecar_for(snapshot, proxy)
    policy: OutboundTrafficPolicy | None = sc.spec.outbound_traffic_policy if sc is not None else None
    if policy is not None and policy.mode:
        return policy.mode == "REGISTRY_ONLY"
    return snapshot.mesh_config.registry_only


def _egress_host_matches(pattern: str, sidecar_ns: str, service: MeshService) -> bool:
    """An egress host "ns/host": ns is a namespace, "." (the Sidecar's), "*" (any) or "~" (none)."""
    ns, _, host = pattern.rpartition("/")
    if ns in ("", "~"):
        return False if ns == "~" else host_matches(host, service.hostname)
    if ns == ".":
        ns = sidecar_ns
    if ns != "*" and ns != service.namespace:
        return False
    return host_matches(host, service.hostname)


def visible_services(snapshot: MeshSnapshot, proxy: Proxy) -> list[MeshService]:
    """The services this proxy gets listeners, routes and clusters for."""
    services = [s for s in snapshot.services if s.exported_to(proxy.namespace)]
    sc = sidecar_for(snapshot, proxy)
    if sc is None or not sc.spec.egress:
        return services
    patterns = [h for listener in sc.spec.egress for h in listener.hosts]
    ns = sc.metadata.namespace
    return [s for s in services if any(_egress_host_matches(p, ns, s) for p in patterns)]
