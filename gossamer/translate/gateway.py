"""Gateway proxies: one listener per server port, VirtualServices bound by `gateways:`.

The gateways' Services map 80->8080 and 443->8443 as Istio's do, so a server on
either number of a pair is served by the same container port. Listeners are bound in
the gateway's pod only (its Envoy is unprivileged); the runtime forwards the host's
127.0.0.1 ports to the ingress gateway's (`gossamer/runtime/host_ports.py`).
"""

from __future__ import annotations

from dataclasses import replace

from gossamer.ir.types import GatewayTlsServer, HttpRoute, Listener, RouteTable, TcpChain, TlsSecret, VirtualHost
from gossamer.mesh import gateway_container_port, hosts_intersect
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy
from gossamer.resources.networking import Gateway, Server, VirtualService
from gossamer.translate.authorization import authorization_policies
from gossamer.translate.gateway_tls import terminating_mode, tls_server
from gossamer.translate.hosts import resolve_host
from gossamer.translate.jwt import request_authentication
from gossamer.translate.routes import RouteContext, translate_http_rules, virtual_services_for
from gossamer.translate.tcp import dedupe_chains, gateway_tcp_chain, gateway_tls_chains

HTTP_PROTOCOLS = {"HTTP", "HTTP2", "GRPC"}
TCP_PROTOCOLS = {"TCP", "MONGO", "MYSQL", "REDIS"}
TLS_PROTOCOLS = {"TLS", "HTTPS"}


BoundServer = tuple[int, str, Server]
"""(server port number, gateway "ns/name", server)"""


def gateways_for(snapshot: MeshSnapshot, proxy: Proxy) -> list[Gateway]:
    labels = proxy.label_map
    return [
        gw
        for gw in snapshot.of_kind(Gateway)
        if gw.spec.selector and all(labels.get(k) == v for k, v in gw.spec.selector.items())
    ]


def _server_allows(server_host: str, gateway_ns: str, vs: VirtualService, vs_host: str) -> bool:
    """Gateway server hosts may carry a namespace: "ns/host", "./host" or "*/host"."""
    ns, _, host = server_host.rpartition("/")
    if ns == ".":
        ns = gateway_ns
    if ns not in ("", "*") and ns != vs.metadata.namespace:
        return False
    return hosts_intersect(host, vs_host)


def _virtual_hosts(
    snapshot: MeshSnapshot, proxy: Proxy, servers: list[BoundServer], port: int
) -> tuple[VirtualHost, ...]:
    """The virtual hosts of the VirtualServices bound to SERVERS (one route table)."""
    vhost_routes: dict[str, list[HttpRoute]] = {}
    redirect_hosts: set[str] = set()
    for server_port, gw_name, server in servers:
        ctx = RouteContext(proxy, frozenset({gw_name}), server_port)
        gw_ns = gw_name.split("/", 1)[0]
        redirect = server.tls is not None and bool(server.tls.https_redirect)
        if redirect:
            # httpsRedirect: every host of the server answers plaintext requests with a 301 to https.
            for sh in server.hosts:
                host = sh.rpartition("/")[2]
                vhost_routes.setdefault(host, [])
                redirect_hosts.add(host)
        for vs in virtual_services_for(snapshot, ctx):
            routes = translate_http_rules(snapshot, vs, ctx)
            for h in vs.spec.hosts or []:
                vs_host = resolve_host(h, vs.metadata.namespace)
                if any(_server_allows(sh, gw_ns, vs, vs_host) for sh in server.hosts):
                    # Gateways merge every VirtualService for a host, in creation order.
                    existing = vhost_routes.setdefault(vs_host, [])
                    existing.extend(r for r in routes if r not in existing)
                    if redirect:
                        redirect_hosts.add(vs_host)
    return tuple(
        VirtualHost(
            f"{host}:{port}",
            ("*",) if host == "*" else (host, f"{host}:*"),
            tuple(routes),
            require_tls=host in redirect_hosts,
        )
        for host, routes in sorted(vhost_routes.items())
    )


def translate_gateway(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[list[Listener], list[RouteTable], list[TlsSecret]]:
    # listener port -> [(server port number, gateway "ns/name", server)]
    by_port: dict[int, list[BoundServer]] = {}
    l4_by_port: dict[int, list[BoundServer]] = {}
    https_by_port: dict[int, list[BoundServer]] = {}
    for gw in gateways_for(snapshot, proxy):
        for server in gw.spec.servers or []:
            protocol = (server.port.protocol or "HTTP").upper()
            entry = (server.port.number, f"{gw.metadata.namespace}/{gw.metadata.name}", server)
            passthrough = server.tls is not None and server.tls.mode == "PASSTHROUGH"
            if protocol in HTTP_PROTOCOLS:
                by_port.setdefault(gateway_container_port(server.port.number), []).append(entry)
            elif protocol in TCP_PROTOCOLS or (protocol in TLS_PROTOCOLS and passthrough):
                l4_by_port.setdefault(gateway_container_port(server.port.number), []).append(entry)
            elif terminating_mode(server) is not None:
                https_by_port.setdefault(gateway_container_port(server.port.number), []).append(entry)
    authz = authorization_policies(snapshot, proxy)
    jwt = request_authentication(snapshot, proxy)
    l4 = translate_gateway_l4(snapshot, proxy, l4_by_port, set(by_port) | set(https_by_port))
    listeners: list[Listener] = [replace(lis, authz=authz) for lis in l4]
    tables: list[RouteTable] = []
    for port, servers in sorted(by_port.items()):
        table = f"http.{port}"
        tables.append(RouteTable(table, _virtual_hosts(snapshot, proxy, servers, port)))
        listeners.append(
            Listener(f"0.0.0.0_{port}", "gateway_http", "0.0.0.0", port, route_table=table, authz=authz, jwt=jwt)
        )
    secrets: dict[str, TlsSecret] = {}
    for port, servers in sorted(https_by_port.items()):
        if port in by_port:
            continue  # a plaintext HTTP server owns the port
        chains: list[GatewayTlsServer] = []
        seen: set[tuple[str, ...]] = set()
        for entry in servers:
            _, gw_name, server = entry
            mode = terminating_mode(server)
            assert mode is not None
            found = tls_server(snapshot, proxy.namespace, server, gw_name, mode)
            if found is None or found[0].server_names in seen:
                continue  # no usable credential, or the SNI names are already served (first server wins)
            chain, needed = found
            seen.add(chain.server_names)
            chains.append(chain)
            secrets.update((sec.name, sec) for sec in needed)
            if all(t.name != chain.route_table for t in tables):
                tables.append(RouteTable(chain.route_table, _virtual_hosts(snapshot, proxy, [entry], port)))
        if not chains:
            continue
        listeners.append(
            Listener(
                f"0.0.0.0_{port}",
                "gateway_http",
                "0.0.0.0",
                port,
                authz=authz,
                jwt=jwt,
                tls_servers=tuple(chains),
                tls_inspector=True,
            )
        )
    return listeners, tables, [secrets[n] for n in sorted(secrets)]


def translate_gateway_l4(
    snapshot: MeshSnapshot, proxy: Proxy, by_port: dict[int, list[BoundServer]], http_ports: set[int]
) -> list[Listener]:
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

            def allows(vs: VirtualService, host: str, server: Server = server, gw_ns: str = gw_ns) -> bool:
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
            listeners.append(
                Listener(f"0.0.0.0_{port}", "gateway_tcp", "0.0.0.0", port, tcp_chains=tuple(chains), tls_inspector=tls)
            )
    return listeners
