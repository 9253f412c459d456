"""Sidecar proxies: virtualOutbound/virtualInbound, per-port HTTP route tables.

Istio's layout: traffic captured on 15001 is handed to the listener for its
original destination port (0.0.0.0_9080 for HTTP, VIP_PORT for TCP), whose
route table "9080" holds one virtual host per service on that port.
"""

from __future__ import annotations

from collections.abc import Hashable

from gossamer.ir.route_actions import DirectResponse
from gossamer.ir.types import (
    HttpRoute,
    InboundChain,
    Listener,
    RouteMatch,
    RouteTable,
    TcpChain,
    VirtualHost,
    WeightedDestination,
)
from gossamer.mesh import (
    BLACKHOLE_CLUSTER,
    INBOUND_CAPTURE_PORT,
    INBOUND_PASSTHROUGH_CLUSTER,
    OUTBOUND_CAPTURE_PORT,
    PASSTHROUGH_CLUSTER,
    VIRTUAL_INBOUND_LISTENER,
    VIRTUAL_OUTBOUND_LISTENER,
    host_matches,
    inbound_cluster_name,
    outbound_cluster_name,
)
from gossamer.registry.serviceentry import is_plain_ip
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import MeshService, Proxy
from gossamer.resources.networking import VirtualService
from gossamer.translate.authorization import authorization_policies
from gossamer.translate.clusters import (
    destination_rule_for,
    inbound_ports,
)
from gossamer.translate.hosts import resolve_host, service_domains
from gossamer.translate.jwt import request_authentication
from gossamer.translate.route_actions import translate_retry
from gossamer.translate.routes import (
    MESH_GATEWAY,
    RouteContext,
    applies_to,
    translate_http_rules,
    virtual_services_for,
)
from gossamer.translate.scope import outbound_scope
from gossamer.translate.security import inbound_mtls, peer_authentication_modes, trust_domains
from gossamer.translate.tcp import dedupe_chains, sidecar_tcp_chains
from gossamer.translate.traffic_policy import hash_for_service
from gossamer.translate.visibility import registry_only, visible_services


def virtual_service_for_host(vss: list[VirtualService], hostname: str) -> VirtualService | None:
    """Sidecars use one VirtualService per host: an exact host beats a wildcard, older beats newer."""
    return HttpVirtualServices(vss).for_host(hostname)


class HttpVirtualServices:
    """virtual_service_for_host over one list of VirtualServices, indexed once by exact host
    (a sidecar asks for every service it sees)."""

    def __init__(self, vss: list[VirtualService]) -> None:
        self._exact: dict[str, VirtualService] = {}
        self._patterns: list[tuple[str, VirtualService]] = []  # (resolved host, vs) in order, for wildcards
        for vs in vss:
            if not vs.spec.http:
                continue  # tcp/tls-only VirtualServices do not route HTTP
            for h in vs.spec.hosts or []:
                resolved = resolve_host(h, vs.metadata.namespace)
                self._exact.setdefault(resolved, vs)
                if "*" in resolved:
                    self._patterns.append((resolved, vs))

    def for_host(self, hostname: str) -> VirtualService | None:
        exact = self._exact.get(hostname)
        if exact is not None:
            return exact
        return next((vs for pattern, vs in self._patterns if host_matches(pattern, hostname)), None)


def default_route(cluster: str) -> HttpRoute:
    """A catch-all route without policies (the ALLOW_ANY passthrough)."""
    return HttpRoute("default", RouteMatch(), (WeightedDestination(cluster, 100),), source="default")


def block_all_route() -> HttpRoute:
    """REGISTRY_ONLY: Istio's block_all virtual host answers 502 for unknown hosts."""
    return HttpRoute("block_all", RouteMatch(), (), source="REGISTRY_ONLY", direct_response=DirectResponse(502))


def service_host_domains(service: MeshService, port: int, proxy_namespace: str) -> tuple[str, ...]:
    if not service.is_service_entry:
        return service_domains(service.name, service.namespace, service.vip, port, proxy_namespace)
    names = [service.hostname]
    names.extend(a for a in service.addresses if is_plain_ip(a))
    if service.vip and service.vip not in names:
        names.append(service.vip)
    return tuple(d for n in names for d in (n, f"{n}:{port}"))


def _dedupe_domains(vhosts: list[VirtualHost]) -> list[VirtualHost]:
    """Envoy rejects a domain in two virtual hosts of one table: the first service keeps it."""
    seen: set[str] = set()
    out = []
    for vh in vhosts:
        domains = tuple(d for d in vh.domains if d not in seen)
        seen.update(domains)
        if domains:
            out.append(vh if domains == vh.domains else VirtualHost(vh.name, domains, vh.routes))
    return out


# (One object for every table: built, serialized and checked once.)
_BLOCK_ALL = VirtualHost("block_all", ("*",), (block_all_route(),))
_ALLOW_ANY = VirtualHost("allow_any", ("*",), (default_route(PASSTHROUGH_CLUSTER),))


def default_service_route(snapshot: MeshSnapshot, service: MeshService, port: int, proxy: Proxy) -> HttpRoute:
    """Istio's BuildDefaultHTTPOutboundRoute: the default retry policy, no timeout, and the
    service's consistent-hash key (service or port level) when its DestinationRule has one."""
    dr = destination_rule_for(snapshot, service.hostname, proxy.namespace)
    hashed = hash_for_service(dr, port)
    destination = WeightedDestination(outbound_cluster_name(service.hostname, port), 100)
    return HttpRoute(
        "default",
        RouteMatch(),
        (destination,),
        source="default",
        retry=translate_retry(None),
        hash_policies=(hashed,) if hashed is not None else (),
        operation=f"{service.hostname}:{port}/*",
    )


def service_virtual_host(
    snapshot: MeshSnapshot, service: MeshService, port: int, proxy: Proxy, vss: HttpVirtualServices
) -> VirtualHost:
    ctx = RouteContext(proxy, frozenset({MESH_GATEWAY}), port)
    vs = vss.for_host(service.hostname)
    routes = (
        translate_http_rules(snapshot, vs, ctx)
        if vs is not None
        else [default_service_route(snapshot, service, port, proxy)]
    )
    return VirtualHost(
        name=f"{service.hostname}:{port}",
        domains=service_host_domains(service, port, proxy.namespace),
        routes=tuple(routes),
    )


def _scope_virtual_host(
    snapshot: MeshSnapshot, scope: Hashable, service: MeshService, port: int, proxy: Proxy, vss: HttpVirtualServices
) -> VirtualHost:
    return snapshot.derived(
        ("vhost", scope, service.hostname, port), lambda: service_virtual_host(snapshot, service, port, proxy, vss)
    )


def _service_port(service: MeshService, target: int) -> int:
    """The service port whose target is TARGET (the first; named targets: the target itself)."""
    return next((p.port for p in service.ports if str(p.target_port) == str(target)), target)


def translate_sidecar(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[list[Listener], list[RouteTable]]:
    listeners, tables = translate_sidecar_outbound(snapshot, proxy)
    return [*listeners, translate_sidecar_inbound(snapshot, proxy)], tables


def translate_sidecar_outbound(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[list[Listener], list[RouteTable]]:
    """virtualOutbound, the outbound listeners and their route tables: what every proxy of one outbound
    scope (translate.outbound_scope) shares."""
    mesh_ctx = RouteContext(proxy, frozenset({MESH_GATEWAY}), 0)
    vss = list(virtual_services_for(snapshot, mesh_ctx))
    # Unknown destinations: ALLOW_ANY passes them through, REGISTRY_ONLY (Sidecar resource) blocks them.
    blocked = registry_only(snapshot, proxy)
    fallback = BLACKHOLE_CLUSTER if blocked else PASSTHROUGH_CLUSTER
    listeners: list[Listener] = [
        Listener(VIRTUAL_OUTBOUND_LISTENER, "virtual_outbound", "0.0.0.0", OUTBOUND_CAPTURE_PORT, tcp_cluster=fallback),
    ]
    http_ports: dict[int, list[MeshService]] = {}
    tcp_listeners: dict[str, Listener] = {}
    wildcard_chains: dict[int, list[TcpChain]] = {}
    for service in visible_services(snapshot, proxy):
        for port in service.ports:
            if port.is_http:
                http_ports.setdefault(port.port, []).append(service)
                continue
            ctx = RouteContext(proxy, frozenset({MESH_GATEWAY}), port.port)
            ips = [a for a in service.addresses if is_plain_ip(a)] or ([service.vip] if service.vip else [])
            cidrs = tuple(a for a in service.addresses if not is_plain_ip(a))
            if cidrs or not ips:
                # CIDR addresses, or no address at all (wildcard or NONE ServiceEntry hosts):
                # 0.0.0.0_<port>, told apart by destination CIDR or SNI.
                wildcard_chains.setdefault(port.port, []).extend(
                    sidecar_tcp_chains(snapshot, vss, service, port.port, port.protocol, ctx, cidrs)
                )
            if not ips:
                continue
            chains = tuple(sidecar_tcp_chains(snapshot, vss, service, port.port, port.protocol, ctx))
            for ip in ips:
                name = f"{ip}_{port.port}"
                if name not in tcp_listeners:  # two services on one address: the first wins, as in Istio
                    tcp_listeners[name] = Listener(
                        name,
                        "outbound_tcp",
                        ip,
                        port.port,
                        bind_to_port=False,
                        tcp_chains=chains,
                        tls_inspector=any(c.server_names for c in chains),
                    )
    listeners.extend(tcp_listeners.values())
    for port_number, port_chains in sorted(wildcard_chains.items()):
        if port_number in http_ports:
            continue  # HTTP owns 0.0.0.0_<port>
        chains = tuple(dedupe_chains(port_chains))
        listeners.append(
            Listener(
                f"0.0.0.0_{port_number}",
                "outbound_tcp",
                "0.0.0.0",
                port_number,
                bind_to_port=False,
                tcp_chains=chains,
                tcp_cluster=fallback,
                tls_inspector=any(c.server_names for c in chains),
            )
        )
    tables: list[RouteTable] = []
    http_vss = HttpVirtualServices(vss)
    scope = outbound_scope(snapshot, proxy)
    for port_number, services in sorted(http_ports.items()):
        listeners.append(
            Listener(
                f"0.0.0.0_{port_number}",
                "outbound_http",
                "0.0.0.0",
                port_number,
                bind_to_port=False,
                route_table=str(port_number),
            )
        )
        # One virtual host per service, once per outbound scope: a change carries over the virtual hosts
        # of the hosts it did not touch (translate.incremental).
        vhosts = _dedupe_domains(
            [_scope_virtual_host(snapshot, scope, s, port_number, proxy, http_vss) for s in services]
        )
        # ALLOW_ANY: unknown hosts on a known port pass through to their original destination.
        vhosts.append(_BLOCK_ALL if blocked else _ALLOW_ANY)
        tables.append(RouteTable(str(port_number), tuple(vhosts)))
    return listeners, tables


def with_virtual_hosts_replaced(
    snapshot: MeshSnapshot, proxy: Proxy, tables: tuple[RouteTable, ...], hosts: frozenset[str]
) -> tuple[RouteTable, ...] | None:
    """The outbound route TABLES of the proxy's scope, translated from a previous snapshot, with the virtual
    hosts of HOSTS translated again (what translate_sidecar_outbound gives when only they can differ: a
    VirtualService change that routes only HTTP). None where that would not be the whole translation (a
    host of several services, or with other than HTTP ports)."""
    if not hosts:
        return tables
    for host in hosts:  # (a TCP port's listener may route by VirtualService too)
        service = snapshot.service_by_host(host)
        if service is not None and (
            not all(p.is_http for p in service.ports) or host in snapshot.hostnames_of_several_services()
        ):
            return None
    scope = outbound_scope(snapshot, proxy)
    vss: HttpVirtualServices | None = None
    out = []
    for table in tables:
        vhosts = list(table.virtual_hosts)
        for i, vhost in enumerate(vhosts):
            host = vhost.name.rpartition(":")[0]  # "<hostname>:<port>" (or allow_any, block_all)
            if host not in hosts:
                continue
            service = snapshot.service_by_host(host)
            if service is None:
                return None
            if vss is None:  # (of the VirtualServices that may route these hosts: the same answers for them)
                mesh_ctx = RouteContext(proxy, frozenset({MESH_GATEWAY}), 0)
                vss = HttpVirtualServices([vs for vs in _routing_any(snapshot, hosts) if applies_to(vs, mesh_ctx)])
            fresh = _scope_virtual_host(snapshot, scope, service, int(table.name), proxy, vss)
            # (its domains as the table deduplicated them: they depend on the services only)
            vhosts[i] = (
                fresh if fresh.domains == vhost.domains else VirtualHost(fresh.name, vhost.domains, fresh.routes)
            )
        out.append(RouteTable(table.name, tuple(vhosts)))
    return tuple(out)


def _routing_any(snapshot: MeshSnapshot, hosts: frozenset[str]) -> tuple[VirtualService, ...]:
    """The VirtualServices with a host that is one of HOSTS or a wildcard, in the snapshot's order."""

    def compute() -> tuple[VirtualService, ...]:
        return tuple(
            vs
            for vs in snapshot.of_kind(VirtualService)
            if any(
                (resolved := resolve_host(h, vs.metadata.namespace)) in hosts or "*" in resolved
                for h in vs.spec.hosts or []
            )
        )

    return snapshot.derived(("virtual_services_routing", hosts), compute)


def translate_sidecar_inbound(snapshot: MeshSnapshot, proxy: Proxy) -> Listener:
    """virtualInbound: this workload's ports, mTLS modes, authorization and request authentication."""
    workload_mode, port_modes = peer_authentication_modes(snapshot, proxy)
    inbound = tuple(
        InboundChain(
            port,
            inbound_cluster_name(port),
            "http" if protocol in ("http", "http2", "grpc") else "tcp",
            mtls=inbound_mtls(proxy, port_modes.get(port, workload_mode)),
            operation=f"{service.hostname}:{_service_port(service, port)}/*",
            service_host=service.hostname,
            service_name=service.name,
            service_namespace=service.namespace,
        )
        for port, service, protocol in inbound_ports(snapshot, proxy)
    )
    passthrough_mtls = inbound_mtls(proxy, workload_mode)
    mtls = any((passthrough_mtls, *(c.mtls for c in inbound)))
    return Listener(
        VIRTUAL_INBOUND_LISTENER,
        "virtual_inbound",
        "0.0.0.0",
        INBOUND_CAPTURE_PORT,
        inbound_chains=inbound,
        tcp_cluster=INBOUND_PASSTHROUGH_CLUSTER,
        inbound_mtls=passthrough_mtls,
        peer_trust_domains=trust_domains(snapshot).all if mtls else (),
        # PERMISSIVE chains tell mTLS from plaintext by the transport protocol and ALPN.
        tls_inspector="PERMISSIVE" in (passthrough_mtls, *(c.mtls for c in inbound)),
        authz=authorization_policies(snapshot, proxy),
        jwt=request_authentication(snapshot, proxy),
    )
