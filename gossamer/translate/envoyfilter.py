"""EnvoyFilter (networking.istio.io/v1alpha3): which EnvoyFilters apply to a proxy, in which order, and
which of their patches are usable. The patches travel in the proxy's IR (`ProxyConfig.envoy_filters`,
gossamer/ir/envoyfilter.py); gossamer/xds/envoyfilter/ applies them to the built protos, last.

Istio's rules: the EnvoyFilters of the root namespace apply to every proxy, those of the proxy's own
namespace to its proxies; a `workloadSelector` narrows them to the proxies whose labels it matches
(`targetRefs`, for waypoints and Gateway API gateways, select none here); `match.proxy` compares
`proxyVersion` (a regex) and `metadata` with the proxy's; the order is priority, then creation. A
patch whose operation Istio does not implement for its `applyTo`, or whose value is not the Envoy
object it names, is skipped and reported (`EnvoyFilterPatches.errors`), as Istio logs and skips it.
"""

from __future__ import annotations

import re

from gossamer.ir.envoyfilter import (
    ClusterMatch,
    EnvoyFilterPatches,
    EnvoyPatch,
    FilterChainMatch,
    ListenerMatch,
    RouteConfigurationMatch,
    RouteMatch,
    VirtualHostMatch,
)
from gossamer.mesh import ROOT_NAMESPACE, TRUST_DOMAIN
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy
from gossamer.resources.envoyfilter_values import OPERATIONS, PatchValueError, canonical, value_to_proto
from gossamer.resources.networking import (
    EnvoyConfigObjectPatch,
    EnvoyFilter,
    EnvoyFilterChainMatch,
    EnvoyFilterListenerMatch,
    EnvoyFilterRouteConfigurationMatch,
)

# What `match.proxy.proxyVersion` is matched against (Istio's ISTIO_VERSION of the proxy).
ISTIO_VERSION = "1.24.0"


def proxy_metadata(proxy: Proxy) -> dict[str, str]:
    """The node metadata an EnvoyFilter's `match.proxy.metadata` is compared with."""
    return {
        "NAMESPACE": proxy.namespace,
        "ISTIO_VERSION": ISTIO_VERSION,
        "CLUSTER_ID": "Kubernetes",
        "MESH_ID": TRUST_DOMAIN,
    }


def envoy_filters_for(snapshot: MeshSnapshot, proxy: Proxy) -> list[EnvoyFilter]:
    """The EnvoyFilters of the root namespace and of the proxy's namespace whose workloadSelector picks
    it, in Istio's order: priority, then creation, then name.namespace."""
    labels = proxy.label_map
    chosen: list[tuple[int, int, EnvoyFilter]] = []
    for order, ef in enumerate(snapshot.of_kind(EnvoyFilter)):
        if ef.metadata.namespace not in (ROOT_NAMESPACE, proxy.namespace):
            continue
        spec = ef.spec
        if spec.target_refs:
            continue  # waypoints and Gateway API gateways: none here
        selector = spec.workload_selector.labels if spec.workload_selector else {}
        if any(labels.get(k) != v for k, v in selector.items()):
            continue
        chosen.append((spec.priority, order, ef))
    chosen.sort(key=lambda t: (t[0], t[1]))
    return [ef for _, _, ef in chosen]


def translate_envoy_filters(snapshot: MeshSnapshot, proxy: Proxy) -> EnvoyFilterPatches | None:
    """The patches of the EnvoyFilters that apply to `proxy`, in order; None when none applies."""
    filters = envoy_filters_for(snapshot, proxy)
    if not filters:
        return None
    patches: list[EnvoyPatch] = []
    errors: list[str] = []
    for ef in filters:
        for patch, raw, error in _usable_patches(snapshot, ef):
            if error:
                errors.append(error)
            elif patch is not None and raw is not None and _proxy_matches(raw, proxy):
                patches.append(patch)
    return EnvoyFilterPatches(
        applied=tuple(f"{f.metadata.namespace}/{f.metadata.name}" for f in filters),
        patches=tuple(patches),
        errors=tuple(errors),
        gateway=proxy.type == "router",
    )


_Usable = tuple[EnvoyPatch | None, EnvoyConfigObjectPatch | None, str]


def _usable_patches(snapshot: MeshSnapshot, ef: EnvoyFilter) -> list[_Usable]:
    return snapshot.derived(("envoy_filter_patches", ef.key), lambda: _usable(ef))


def _usable(ef: EnvoyFilter) -> list[_Usable]:
    """Each configPatches entry of one EnvoyFilter as an IR patch, or the reason it is skipped
    (the same for every proxy: computed once per snapshot)."""
    out: list[_Usable] = []
    spec = ef.spec
    for i, cp in enumerate(spec.config_patches):
        source = f"EnvoyFilter {ef.metadata.namespace}/{ef.metadata.name} configPatches[{i}]"
        op = cp.patch.operation if cp.patch else "INVALID"
        if cp.apply_to not in OPERATIONS or op not in OPERATIONS[cp.apply_to]:
            out.append((None, None, f"{source}: {op} on {cp.apply_to} is not supported; skipped"))
            continue
        value = cp.patch.value if cp.patch else None
        if op != "REMOVE":
            if value is None:
                out.append((None, None, f"{source}: {op} needs a value; skipped"))
                continue
            try:
                value_to_proto(cp.apply_to, value)
            except PatchValueError as e:
                out.append((None, None, f"{source}: {e}; skipped"))
                continue
        m = cp.match
        patch = EnvoyPatch(
            source=source,
            apply_to=cp.apply_to,
            operation=op,
            context=m.context if m else "ANY",
            listener=_listener_match(m.listener) if m and m.listener else None,
            route_configuration=_route_configuration_match(m.route_configuration)
            if m and m.route_configuration
            else None,
            cluster=ClusterMatch(
                name=m.cluster.name or "",
                service=m.cluster.service or "",
                subset=m.cluster.subset or "",
                port_number=m.cluster.port_number or 0,
            )
            if m and m.cluster
            else None,
            value=value if op != "REMOVE" else None,
        )
        out.append((patch, cp, ""))
    return out


def _proxy_matches(cp: EnvoyConfigObjectPatch, proxy: Proxy) -> bool:
    pm = cp.match.proxy if cp.match else None
    if pm is None:
        return True
    if pm.proxy_version and not re.search(pm.proxy_version, ISTIO_VERSION):
        return False
    meta = proxy_metadata(proxy)
    return all(meta.get(k) == v for k, v in (pm.metadata or {}).items())


def _listener_match(lm: EnvoyFilterListenerMatch) -> ListenerMatch:
    return ListenerMatch(
        name=lm.name or "",
        port_number=lm.port_number or 0,
        listener_filter=canonical(lm.listener_filter) if lm.listener_filter else "",
        filter_chain=_filter_chain_match(lm.filter_chain) if lm.filter_chain else None,
    )


def _filter_chain_match(m: EnvoyFilterChainMatch) -> FilterChainMatch:
    f = m.filter
    return FilterChainMatch(
        name=m.name or "",
        sni=m.sni or "",
        transport_protocol=m.transport_protocol or "",
        application_protocols=tuple(a.strip() for a in m.application_protocols.split(","))
        if m.application_protocols
        else (),
        destination_port=m.destination_port or 0,
        filter=canonical(f.name) if f and f.name else "",
        sub_filter=canonical(f.sub_filter.name) if f and f.sub_filter and f.sub_filter.name else "",
    )


def _route_configuration_match(rm: EnvoyFilterRouteConfigurationMatch) -> RouteConfigurationMatch:
    vm = rm.vhost
    return RouteConfigurationMatch(
        name=rm.name or "",
        port_number=rm.port_number or 0,
        port_name=rm.port_name or "",
        gateway=rm.gateway or "",
        vhost=VirtualHostMatch(
            name=vm.name or "",
            domain_name=vm.domain_name or "",
            route=RouteMatch(vm.route.name or "", vm.route.action) if vm.route else None,
        )
        if vm
        else None,
    )
