"""Istio semantics -> IR. Pure: reads only the MeshSnapshot."""

from __future__ import annotations

from dataclasses import replace

from gossamer.ir.types import EndpointSet, ProxyConfig
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy
from gossamer.translate.clusters import (
    inbound_clusters,
    outbound_clusters,
    static_clusters,
    translate_endpoints,
)
from gossamer.translate.gateway import translate_gateway
from gossamer.translate.sidecar import translate_sidecar
from gossamer.translate.telemetry import telemetry_off


def translate_proxy(snapshot: MeshSnapshot, proxy: Proxy) -> ProxyConfig:
    """The whole config of one proxy group."""
    if proxy.type == "router":
        listeners, tables = translate_gateway(snapshot, proxy)
        clusters = [*static_clusters(), *outbound_clusters(snapshot, proxy)]
    else:
        listeners, tables = translate_sidecar(snapshot, proxy)
        clusters = [*static_clusters(), *outbound_clusters(snapshot, proxy), *inbound_clusters(snapshot, proxy)]
    logs_off, metrics_off = telemetry_off(snapshot, proxy)
    if logs_off or metrics_off:
        listeners = [replace(x, no_access_log=logs_off, no_metrics=metrics_off) for x in listeners]
    return ProxyConfig(
        listeners=tuple(listeners),
        route_tables=tuple(tables),
        clusters=tuple(clusters),
        endpoints=tuple(translate_endpoints(snapshot, proxy.namespace)),
    )


def translate_proxy_endpoints(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[EndpointSet, ...]:
    """The endpoint-only fast path: EDS without re-translating routes and listeners."""
    return tuple(translate_endpoints(snapshot, proxy.namespace))


__all__ = ["translate_proxy", "translate_proxy_endpoints"]
