"""Sidecar proxies: virtualOutbound/virtualInbound, per-port HTTP route tables.

Istio's layout: traffic captured on 15001 is handed to the listener for its
original destination port (0.0.0.0_9080 for HTTP, VIP_PORT for TCP), whose
route table "9080" holds one virtual host per service on that port.
"""

from __future__ import annotations

from typing import Any

from gossamer.ir.types import (
    HttpRoute,
    InboundChain,
    Listener,
    RouteMatch,
    RouteTable,
    VirtualHost,
    WeightedDestination,
)
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import MeshService, Proxy
from gossamer.translate.clusters import (
    INBOUND_PASSTHROUGH,
    PASSTHROUGH,
    destination_rule_for,
    inbound_cluster_name,
    inbound_ports,
)
from gossamer.translate.hosts import host_matches, resolve_host, service_domains
from gossamer.translate.policies import translate_retry
from gossamer.translate.routes import (
    MESH_GATEWAY,
    RouteContext,
    outbound_cluster_name,
    translate_http_rules,
    virtual_services_for,
)
from gossamer.translate.traffic_policy import hash_for_service

OUTBOUND_PORT = 15001
INBOUND_PORT = 15006


def _virtual_service_for_host(vss: list[Any], hostname: str) -> Any | None:
    """Sidecars use one VirtualService per host: an exact host beats a wildcard, older beats newer."""
    wildcard = None
    for vs in vss:
        for h in vs.spec.hosts or []:
            resolved = resolve_host(h, vs.metadata.namespace)
            if resolved == hostname:
                return vs
            if wildcard is None and host_matches(resolved, hostname):
                wildcard = vs
    return wildcard


def default_route(cluster: str) -> HttpRoute:
    """A catch-all route without policies (the ALLOW_ANY passthrough)."""
    return HttpRoute("default", RouteMatch(), (WeightedDestination(cluster, 100),), source="default")


def default_service_route(snapshot: MeshSnapshot, service: MeshService, port: int, proxy: Proxy) -> HttpRoute:
    """Istio's BuildDefaultHTTPOutboundRoute: the default retry policy, no timeout, and the
    service's consistent-hash key (service or port level) when its DestinationRule has one."""
    dr = destination_rule_for(snapshot, service.hostname, proxy.namespace)
    hashed = hash_for_service(dr, port)
    destination = WeightedDestination(outbound_cluster_name(service.hostname, port), 100)
    return HttpRoute("default", RouteMatch(), (destination,), source="default", retry=translate_retry(None),
                     hash_policies=(hashed,) if hashed is not None else ())


def service_virtual_host(snapshot: MeshSnapshot, service: MeshService, port: int, proxy: Proxy,
                         vss: list[Any]) -> VirtualHost:
    ctx = RouteContext(proxy, frozenset({MESH_GATEWAY}), port)
    vs = _virtual_service_for_host(vss, service.hostname)
    routes = translate_http_rules(snapshot, vs, ctx) if vs is not None else [
        default_service_route(snapshot, service, port, proxy)]
    return VirtualHost(
        name=f"{service.hostname}:{port}",
        domains=service_domains(service.name, service.namespace, service.vip, port, proxy.namespace),
        routes=tuple(routes),
    )


def translate_sidecar(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[list[Listener], list[RouteTable]]:
    mesh_ctx = RouteContext(proxy, frozenset({MESH_GATEWAY}), 0)
    vss = list(virtual_services_for(snapshot, mesh_ctx))
    listeners: list[Listener] = [
        Listener("virtualOutbound", "virtual_outbound", "0.0.0.0", OUTBOUND_PORT, tcp_cluster=PASSTHROUGH),
    ]
    http_ports: dict[int, list[MeshService]] = {}
    for service in snapshot.services:
        for port in service.ports:
            if port.is_http:
                http_ports.setdefault(port.port, []).append(service)
            elif service.vip:
                listeners.append(Listener(
                    f"{service.vip}_{port.port}", "outbound_tcp", service.vip, port.port, bind_to_port=False,
                    tcp_cluster=outbound_cluster_name(service.hostname, port.port),
                ))
    tables: list[RouteTable] = []
    for port_number, services in sorted(http_ports.items()):
        listeners.append(Listener(f"0.0.0.0_{port_number}", "outbound_http", "0.0.0.0", port_number,
                                  bind_to_port=False, route_table=str(port_number)))
        vhosts = [service_virtual_host(snapshot, s, port_number, proxy, vss) for s in services]
        # ALLOW_ANY: unknown hosts on a known port pass through to their original destination.
        vhosts.append(VirtualHost("allow_any", ("*",), (default_route(PASSTHROUGH),)))
        tables.append(RouteTable(str(port_number), tuple(vhosts)))
    chains = tuple(
        InboundChain(port, inbound_cluster_name(port), "http" if protocol == "http" else "tcp")
        for port, _service, protocol in inbound_ports(snapshot, proxy)
    )
    listeners.append(Listener("virtualInbound", "virtual_inbound", "0.0.0.0", INBOUND_PORT,
                              inbound_chains=chains, tcp_cluster=INBOUND_PASSTHROUGH))
    return listeners, tables
