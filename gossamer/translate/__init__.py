"""Istio semantics -> IR. Pure: reads only the MeshSnapshot."""

from __future__ import annotations

from dataclasses import replace

from gossamer.ir.types import EndpointSet, Listener, ProxyConfig, TlsSecret, Tracing
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
from gossamer.translate.telemetry import telemetry_off, tracing_for


def translate_proxy(snapshot: MeshSnapshot, proxy: Proxy) -> ProxyConfig:
    """The whole config of one proxy group."""
    secrets: list[TlsSecret] = []
    if proxy.type == "router":
        listeners, tables, secrets = translate_gateway(snapshot, proxy)
        clusters = [*static_clusters(), *outbound_clusters(snapshot, proxy)]
    else:
        listeners, tables = translate_sidecar(snapshot, proxy)
        clusters = [*static_clusters(), *outbound_clusters(snapshot, proxy), *inbound_clusters(snapshot, proxy)]
    logs_off, metrics_off = telemetry_off(snapshot, proxy)
    if logs_off or metrics_off:
        listeners = [replace(x, no_access_log=logs_off, no_metrics=metrics_off) for x in listeners]
    client, server = tracing_for(snapshot, proxy, "client"), tracing_for(snapshot, proxy, "server")
    listeners = [_with_tracing(x, client, server) for x in listeners]
    return ProxyConfig(
        listeners=tuple(listeners),
        route_tables=tuple(tables),
        clusters=tuple(clusters),
        endpoints=tuple(translate_endpoints(snapshot, proxy.namespace)),
        secrets=tuple(secrets),
    )


def _with_tracing(listener: Listener, client: Tracing | None, server: Tracing | None) -> Listener:
    """Tracing goes to HTTP connection managers: the client side's on outbound and gateway listeners,
    the server side's on virtualInbound (when it has an HTTP chain)."""
    if listener.kind in ("outbound_http", "gateway_http"):
        return replace(listener, tracing=client)
    if listener.kind == "virtual_inbound" and any(c.protocol == "http" for c in listener.inbound_chains):
        return replace(listener, tracing=server)
    return listener


def translate_proxy_endpoints(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[EndpointSet, ...]:
    """The endpoint-only fast path: EDS without re-translating routes and listeners."""
    return tuple(translate_endpoints(snapshot, proxy.namespace))


__all__ = ["translate_proxy", "translate_proxy_endpoints"]
