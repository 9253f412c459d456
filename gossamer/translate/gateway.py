"""Gateway proxies: one listener per server port, VirtualServices bound by `gateways:`.

The ingress gateway's Service maps 80->8080 and 443->8443 as Istio's does, so a
server on either number of a pair is served by the same container port.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gossamer.ir.types import HttpRoute, Listener, RouteTable, TcpChain, VirtualHost
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy
from gossamer.translate.hosts import hosts_intersect, resolve_host
from gossamer.translate.jwt import request_authentication
from gossamer.translate.routes import RouteContext, translate_http_rules, virtual_services_for
from gossamer.translate.security import authorization_policies
from gossamer.translate.tcp import dedupe_chains, gateway_tcp_chain, gateway_tls_chains

SERVICE_PORT_TO_CONTAINER_PORT = {80: 8080, 443: 8443}
HTTP_PROTOCOLS = {"HTTP", "HTTP2", "GRPC"}
TCP_PROTOCOLS = {"TCP", "MONGO", "MYSQL", "REDIS"}
TLS_PROTOCOLS = {"TLS", "HTTPS"}


def container_port(server_port: int) -> int:
    return SERVICE_PORT_TO_CONTAINER_PORT.get(server_port, server_port)


def gateways_for(snapshot: MeshSnapshot, proxy: Proxy) -> list[Any]:
    labels = proxy.label_map
    return [gw for gw in snapshot.of_kind("Gateway")
            if gw.spec.selector and all(labels.get(k) == v for k, v in gw.spec.selector.items())]


def _server_allows(server_host: str, gateway_ns: str, vs: Any, vs_host: str) -> bool:
    """Gateway server hosts may carry a namespace: "ns/host", "./host" or "*/host"."""
    ns, _, host = server_host.rpartition("/")
    if ns == ".":
        ns = gateway_ns
    if ns not in ("", "*") and ns != vs.metadata.namespace:
        return False
    return hosts_intersect(host, vs_host)


def translate_gateway(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[list[Listener], list[RouteTable]]:
    # listener port -> [(server port number, gateway "ns/name", server)]
    by_port: dict[int, list[tuple[int, str, Any]]] = {}
    l4_by_port: dict[int, list[tuple[int, str, Any]]] = {}
    for gw in gateways_for(snapshot, proxy):
        for server in gw.spec.servers or []:
            protocol = (server.port.protocol or "HTTP").upper()
            entry = (server.port.number, f"{gw.metadata.namespace}/{gw.metadata.name}", server)
            passthrough = server.tls is not None and server.tls.mode == "PASSTHROUGH"
            if protocol in HTTP_PROTOCOLS:
                by_port.setdefault(container_port(server.port.number), []).append(entry)
            elif protocol in TCP_PROTOCOLS or (protocol in TLS_PROTOCOLS and passthrough):
                l4_by_port.setdefault(container_port(server.port.number), []).append(entry)
            # TLS-terminating (SIMPLE/MUTUAL) servers come with the TLS feature.
    authz = authorization_policies(snapshot, proxy)
    jwt = request_authentication(snapshot, proxy)
    listeners: list[Listener] = [replace(lis, authz=authz)
                                 for lis in translate_gateway_l4(snapshot, proxy, l4_by_port, set(by_port))]
    tables: list[RouteTable] = []
    for port, servers in sorted(by_port.items()):
        table = f"http.{port}"
        vhost_routes: dict[str, list[HttpRoute]] = {}
        for server_port, gw_name, server in servers:
            ctx = RouteContext(proxy, frozenset({gw_name}), server_port)
            gw_ns = gw_name.split("/", 1)[0]
            for vs in virtual_services_for(snapshot, ctx):
                routes = translate_http_rules(snapshot, vs, ctx)
                for h in vs.spec.hosts or []:
                    vs_host = resolve_host(h, vs.metadata.namespace)
                    if any(_server_allows(sh, gw_ns, vs, vs_host) for sh in server.hosts):
                        # Gateways merge every VirtualService for a host, in creation order.
                        existing = vhost_routes.setdefault(vs_host, [])
                        existing.extend(r for r in routes if r not in existing)
        vhosts = tuple(
            VirtualHost(f"{host}:{port}", ("*",) if host == "*" else (host, f"{host}:*"), tuple(routes))
            for host, routes in sorted(vhost_routes.items())
        )
        tables.append(RouteTable(table, vhosts))
        listeners.append(Listener(f"0.0.0.0_{port}", "gateway_http", "0.0.0.0", port, route_table=table,
                                  authz=authz, jwt=jwt))
        if port == 8080 and proxy.ingress_port and proxy.host_netns:
            listeners.append(Listener(f"ingress_127.0.0.1_{proxy.ingress_port}", "gateway_http", "127.0.0.1",
                                      proxy.ingress_port, route_table=table, network_namespace=proxy.host_netns,
                                      stat_prefix=f"0.0.0.0_{port}", authz=authz, jwt=jwt))
    return listeners, tables


def translate_gateway_l4(snapshot: MeshSnapshot, proxy: Proxy, by_port: dict[int, list[tuple[int, str, Any]]],
                         http_ports: set[int]) -> list[Listener]:
    """TCP servers and TLS PASSTHROUGH servers: 0.0.0.0_<port> with tcp_proxy chains."""
    listeners = []
    for port, servers in sorted(by_port.items()):
        if port in http_ports:
            continue  # an HTTP server owns the port
        chains: list[TcpChain] = []
        tls = False
        for server_port, gw_name, server in servers:
            ctx = RouteContext(proxy, frozenset({gw_name}), server_port)
            gw_ns = gw_name.split("/", 1)[0]

            def allows(vs: Any, host: str, server: Any = server, gw_ns: str = gw_ns) -> bool:
                return any(_server_allows(sh, gw_ns, vs, host) for sh in server.hosts)

            vss = list(virtual_services_for(snapshot, ctx))
            if (server.port.protocol or "").upper() in TLS_PROTOCOLS:
                tls = True
                chains.extend(gateway_tls_chains(snapshot, vss, ctx, allows))
            else:
                chain = gateway_tcp_chain(snapshot, vss, ctx, allows)
                if chain is not None:
                    chains.append(chain)
        chains = dedupe_chains(chains)
        if chains:
            listeners.append(Listener(f"0.0.0.0_{port}", "gateway_tcp", "0.0.0.0", port,
                                      tcp_chains=tuple(chains), tls_inspector=tls))
    return listeners
