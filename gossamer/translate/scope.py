"""What a sidecar's outbound config depends on (Istio's XdsCache keys).

A sidecar's outbound clusters, endpoints, listeners and route tables depend on its namespace, the
Sidecar resource that applies, whether it has SDS, the Telemetry that applies and - only where a
VirtualService match has `sourceLabels` - its labels. `outbound_scope` is that key: every proxy with
the same key gets the same outbound config, translated once per snapshot.
"""

from __future__ import annotations

from collections.abc import Hashable

from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy
from gossamer.resources.networking import VirtualService
from gossamer.translate.telemetry import telemetry_levels
from gossamer.translate.visibility import sidecar_for


def _source_label_selectors(snapshot: MeshSnapshot) -> tuple[tuple[tuple[str, str], ...], ...]:
    """Every distinct `sourceLabels` of a VirtualService match (http, tcp, tls), once per snapshot."""
    seen: dict[tuple[tuple[str, str], ...], None] = {}
    for vs in snapshot.of_kind(VirtualService):
        for rule in vs.spec.all_rules:
            for match in rule.match or []:
                if match.source_labels:
                    seen.setdefault(tuple(sorted(match.source_labels.items())), None)
    return tuple(seen)


def sidecar_key(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[str, str] | None:
    sidecar = sidecar_for(snapshot, proxy)
    return (sidecar.metadata.namespace, sidecar.metadata.name) if sidecar is not None else None


def outbound_scope(snapshot: MeshSnapshot, proxy: Proxy) -> Hashable:
    """The inputs a sidecar's outbound config depends on (see the module's docstring)."""
    labels = proxy.label_map
    selectors = snapshot.derived("source_label_selectors", lambda: _source_label_selectors(snapshot))
    return (
        proxy.type,
        proxy.namespace,
        proxy.has_sds,
        sidecar_key(snapshot, proxy),
        tuple((t.metadata.namespace, t.metadata.name) for t in telemetry_levels(snapshot, proxy)),
        tuple(all(labels.get(k) == v for k, v in selector) for selector in selectors),
    )


def endpoint_scope(snapshot: MeshSnapshot, proxy: Proxy) -> Hashable:
    """What a proxy's endpoints depend on: the services it sees (namespace, Sidecar) and its type."""
    return (proxy.type, proxy.namespace, sidecar_key(snapshot, proxy))
