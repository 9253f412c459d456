"""Istio semantics -> IR. Pure: reads only the MeshSnapshot.

A sidecar's outbound config (clusters, endpoints, outbound listeners, route tables) depends on its
namespace, the Sidecar resource that applies, whether it has SDS, the Telemetry that applies and -
only where a VirtualService match has `sourceLabels` - its labels: `outbound_scope` is that key, and
every proxy with the same key shares one translation per snapshot (Istio's XdsCache keys). Only
virtualInbound and the inbound clusters are the proxy's own. Each part is a separate derived value of
the snapshot, so a change can carry over what it did not touch (translate.incremental).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import cast

from gossamer.ir.types import (
    STDOUT_ACCESS_LOG,
    AccessLogFile,
    Cluster,
    EndpointSet,
    Listener,
    PathNormalization,
    ProxyConfig,
    RouteTable,
    TlsSecret,
    Tracing,
)
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy
from gossamer.resources.meshconfig import MeshConfig
from gossamer.translate.clusters import (
    endpoint_sets_for,
    inbound_clusters,
    outbound_clusters,
    static_clusters,
    translate_endpoints,
)
from gossamer.translate.envoyfilter import translate_envoy_filters
from gossamer.translate.gateway import translate_gateway
from gossamer.translate.incremental import hosts_worked_out, same_hosts, stale_endpoints, stale_value
from gossamer.translate.scope import endpoint_scope, outbound_scope
from gossamer.translate.sidecar import (
    translate_sidecar_inbound,
    translate_sidecar_outbound,
    with_virtual_hosts_replaced,
)
from gossamer.translate.telemetry import telemetry_off, tracing_for
from gossamer.translate.visibility import visible_services


@dataclass(frozen=True)
class OutboundConfig:
    """What every sidecar of one outbound scope gets (static and outbound clusters, endpoints,
    outbound listeners and their route tables)."""

    listeners: tuple[Listener, ...]
    route_tables: tuple[RouteTable, ...]
    clusters: tuple[Cluster, ...]
    endpoints: tuple[EndpointSet, ...]


def translate_outbound(snapshot: MeshSnapshot, proxy: Proxy) -> OutboundConfig:
    """The sidecar's outbound config, translated once per snapshot and outbound scope."""
    listeners, tables = outbound_listeners(snapshot, proxy)
    return OutboundConfig(listeners, tables, outbound_cluster_set(snapshot, proxy), outbound_endpoints(snapshot, proxy))


def outbound_listeners(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[tuple[Listener, ...], tuple[RouteTable, ...]]:
    """The outbound listeners and route tables of the proxy's outbound scope."""

    key = ("outbound_listeners", outbound_scope(snapshot, proxy))

    def compute() -> tuple[tuple[Listener, ...], tuple[RouteTable, ...]]:
        stale = stale_value(snapshot, key)
        if stale is not None:  # a VirtualService change: only its hosts' virtual hosts are translated again
            (listeners, tables), hosts = stale
            patched = with_virtual_hosts_replaced(snapshot, proxy, tables, hosts)
            if patched is not None:
                return listeners, patched
        listeners, tables = translate_sidecar_outbound(snapshot, proxy)
        return tuple(_with_telemetry(snapshot, proxy, listeners)), tuple(tables)

    return snapshot.derived(key, compute)


def outbound_cluster_set(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[Cluster, ...]:
    """The static and outbound clusters of the proxy's outbound scope."""
    return snapshot.derived(
        ("outbound_clusters", outbound_scope(snapshot, proxy)),
        lambda: (*static_clusters(), *outbound_clusters(snapshot, proxy)),
    )


def outbound_endpoints(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[EndpointSet, ...]:
    """EDS for the services the proxy sees: a Sidecar narrowing egress (or exportTo) narrows endpoints
    too. Once per snapshot and endpoint scope; the endpoint fast path reads only this."""

    key = ("outbound_endpoints", endpoint_scope(snapshot, proxy))

    def compute() -> tuple[EndpointSet, ...]:
        stale = stale_endpoints(snapshot, key)
        if stale is not None:  # a pod change: only the moved hosts' endpoints are translated again
            found = _with_hosts_replaced(snapshot, proxy.namespace, *stale)
            if found is not None:
                return cast(tuple[EndpointSet, ...], same_hosts(key[0], stale[0], found))
        # Only the services it sees: a narrow scope costs only what it sees.
        seen = visible_services(snapshot, proxy)
        sets = tuple(e for service in seen for e in endpoint_sets_for(snapshot, service, proxy.namespace))
        return cast(tuple[EndpointSet, ...], hosts_worked_out(key[0], sets))

    return snapshot.derived(key, compute)


def _with_hosts_replaced(
    snapshot: MeshSnapshot, namespace: str, old: tuple[EndpointSet, ...], hosts: frozenset[str]
) -> tuple[EndpointSet, ...] | None:
    """OLD with the endpoint sets of HOSTS translated again, in place; None where that would not be the
    whole translation (a host of several services: not one run of the same clusters as before)."""
    out: list[EndpointSet] = []
    done: set[str] = set()
    i = 0
    while i < len(old):
        host = _host_of(old[i])
        if host not in hosts:
            out.append(old[i])
            i += 1
            continue
        end = i
        while end < len(old) and _host_of(old[end]) == host:
            end += 1
        service = snapshot.service_by_host(host)
        if host in done or service is None:
            return None
        done.add(host)
        fresh = endpoint_sets_for(snapshot, service, namespace)
        if [e.cluster for e in fresh] != [e.cluster for e in old[i:end]]:
            return None
        out.extend(fresh)
        i = end
    return tuple(out)


def _host_of(endpoints: EndpointSet) -> str:
    return endpoints.cluster.rsplit("|", 1)[-1]  # outbound|port|subset|host


def translate_inbound(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[Listener, tuple[Cluster, ...]]:
    """The sidecar's own part: virtualInbound and the inbound clusters (once per snapshot and group)."""

    def compute() -> tuple[Listener, tuple[Cluster, ...]]:
        listener = _with_telemetry(snapshot, proxy, [translate_sidecar_inbound(snapshot, proxy)])[0]
        return listener, tuple(inbound_clusters(snapshot, proxy))

    return snapshot.derived(("inbound", proxy), compute)


def translate_proxy(snapshot: MeshSnapshot, proxy: Proxy) -> ProxyConfig:
    """The whole config of one proxy group."""
    if proxy.type == "sidecar":
        outbound = translate_outbound(snapshot, proxy)
        inbound_listener, inbound = translate_inbound(snapshot, proxy)
        return ProxyConfig(
            listeners=(*outbound.listeners, inbound_listener),
            route_tables=outbound.route_tables,
            clusters=(*outbound.clusters, *inbound),
            endpoints=outbound.endpoints,
            envoy_filters=translate_envoy_filters(snapshot, proxy),
        )
    secrets: list[TlsSecret] = []
    listeners, tables, secrets = translate_gateway(snapshot, proxy)
    return ProxyConfig(
        listeners=tuple(_with_telemetry(snapshot, proxy, listeners)),
        route_tables=tuple(tables),
        # (once per scope, as a sidecar's: carried over by a change that cannot touch them)
        clusters=outbound_cluster_set(snapshot, proxy),
        endpoints=outbound_endpoints(snapshot, proxy),
        secrets=tuple(secrets),
        envoy_filters=translate_envoy_filters(snapshot, proxy),
    )


def _with_telemetry(snapshot: MeshSnapshot, proxy: Proxy, listeners: list[Listener]) -> list[Listener]:
    logs_off, metrics_off = telemetry_off(snapshot, proxy)
    mesh = snapshot.mesh_config
    if logs_off or metrics_off:
        listeners = [replace(x, no_access_log=logs_off, no_metrics=metrics_off) for x in listeners]
    listeners = _with_mesh_options(listeners, mesh)
    client, server = tracing_for(snapshot, proxy, "client"), tracing_for(snapshot, proxy, "server")
    return [_with_tracing(x, client, server) for x in listeners]


def _with_mesh_options(listeners: list[Listener], mesh: MeshConfig) -> list[Listener]:
    """Mesh-wide connection manager options: path normalization and the access log's file/encoding."""
    access_log: AccessLogFile | None = AccessLogFile(
        mesh.access_log_file or STDOUT_ACCESS_LOG.path, mesh.access_log_encoding, mesh.access_log_format
    )
    if access_log == STDOUT_ACCESS_LOG:
        access_log = None
    normalization = cast(PathNormalization, mesh.path_normalization_mode)
    if access_log is None and normalization == "BASE":
        return listeners
    return [replace(x, access_log=access_log, path_normalization=normalization) for x in listeners]


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
    return outbound_endpoints(snapshot, proxy)


__all__ = [
    "OutboundConfig",
    "endpoint_scope",
    "outbound_cluster_set",
    "outbound_endpoints",
    "outbound_listeners",
    "outbound_scope",
    "translate_inbound",
    "translate_outbound",
    "translate_proxy",
    "translate_endpoints",
    "translate_proxy_endpoints",
]
