"""VirtualService tcp and tls routes -> filter chains of TCP listeners (Istio's semantics).

Sidecars (per service port, Istio's buildSidecarOutboundTCPTLSFilterChainOpts):
* tls ports: one chain per applicable tls match (server_names = sniHosts, prefix_ranges =
  destinationSubnets), the first of identical matches kept; a port with no applicable tls
  match gets a chain to the service (with SNI = the host for ServiceEntries and services
  without an address, so that wildcard listeners can tell them apart);
* then tcp rules in order: a rule without matches, or an applicable match without
  destinationSubnets, is the catch-all and ends the list; applicable matches with
  destinationSubnets become one chain for those subnets;
* without a catch-all, a last chain sends everything else to the service's own cluster.
Matches apply per proxy: gateways (default the VirtualService's, "mesh" for sidecars), port,
sourceLabels and sourceNamespace.

Gateways: a TCP server gets the first applicable tcp rule of the VirtualServices bound to it
whose hosts the server allows; a TLS server with mode PASSTHROUGH gets one chain per sniHost
(that the server allows) of the applicable tls matches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gossamer.ir.types import TcpChain, WeightedDestination
from gossamer.mesh import hosts_intersect, outbound_cluster_name
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import MeshService
from gossamer.resources.networking import TCPRoute, TLSRoute, VirtualService
from gossamer.translate.hosts import resolve_host
from gossamer.translate.routes import (
    RouteContext,
    _kept_destinations,
    _match_applies,
    destination_cluster,
)


def l4_destinations(
    snapshot: MeshSnapshot, rule: TCPRoute | TLSRoute, namespace: str, ctx: RouteContext
) -> tuple[WeightedDestination, ...]:
    return tuple(
        WeightedDestination(destination_cluster(snapshot, dest.destination, namespace, ctx), weight)
        for dest, weight in _kept_destinations(rule.route or [])
    )


def _source(vs: VirtualService, kind: str, index: int) -> str:
    return f"{vs.metadata.namespace}/{vs.metadata.name}#{kind}[{index}]"


def virtual_services_for_host(vss: Iterable[VirtualService], hostname: str) -> list[VirtualService]:
    """Every VirtualService (in order) with a host covering `hostname` (tcp/tls use them all)."""
    return [
        vs
        for vs in vss
        if any(hosts_intersect(resolve_host(h, vs.metadata.namespace), hostname) for h in vs.spec.hosts or [])
    ]


def dedupe_chains(chains: Iterable[TcpChain]) -> list[TcpChain]:
    """Envoy rejects two chains with the same match: the first one wins (as Istio keeps it)."""
    seen: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    out = []
    for chain in chains:
        key = (tuple(sorted(chain.prefix_ranges)), tuple(sorted(chain.server_names)))
        if key not in seen:
            seen.add(key)
            out.append(chain)
    return out


def _sidecar_tls_chains(
    snapshot: MeshSnapshot, configs: list[VirtualService], ctx: RouteContext, listener_cidrs: tuple[str, ...]
) -> list[TcpChain]:
    """One chain per tls match of the VirtualServices that applies (SNI and destination subnets)."""
    tls_chains: list[TcpChain] = []
    for vs in configs:
        for index, rule in enumerate(vs.spec.tls or []):
            for match in rule.match or []:
                if not _match_applies(match, vs, ctx):
                    continue
                cidrs = tuple(match.destination_subnets or ()) or listener_cidrs
                tls_chains.append(
                    TcpChain(
                        l4_destinations(snapshot, rule, vs.metadata.namespace, ctx),
                        prefix_ranges=cidrs,
                        server_names=tuple(match.sni_hosts),
                        source=_source(vs, "tls", index),
                    )
                )
    return tls_chains


def sidecar_tcp_chains(
    snapshot: MeshSnapshot,
    vss: list[VirtualService],
    service: MeshService,
    port: int,
    protocol: str,
    ctx: RouteContext,
    listener_cidrs: tuple[str, ...] = (),
) -> list[TcpChain]:
    """The filter chains for one service port on a sidecar's outbound TCP listener."""
    configs = virtual_services_for_host(vss, service.hostname)
    default = (WeightedDestination(outbound_cluster_name(service.hostname, port), 100),)
    chains: list[TcpChain] = []
    catch_all = False
    if protocol == "tls":
        tls_chains = _sidecar_tls_chains(snapshot, configs, ctx, listener_cidrs)
        if not tls_chains:
            sni = (service.hostname,) if service.is_service_entry or not service.vip else ()
            tls_chains.append(TcpChain(default, prefix_ranges=listener_cidrs, server_names=sni, source="default"))
            catch_all = not sni
        chains.extend(dedupe_chains(tls_chains))
    for vs in configs:
        if catch_all:
            break
        for index, tcp_rule in enumerate(vs.spec.tcp or []):
            destinations = l4_destinations(snapshot, tcp_rule, vs.metadata.namespace, ctx)
            if not tcp_rule.match:
                chains.append(TcpChain(destinations, prefix_ranges=listener_cidrs, source=_source(vs, "tcp", index)))
                catch_all = True
                break
            subnets: list[str] = []
            for l4_match in tcp_rule.match:
                if not _match_applies(l4_match, vs, ctx):
                    continue
                if not l4_match.destination_subnets:
                    catch_all = True
                    break
                subnets.extend(l4_match.destination_subnets)
            if catch_all:
                chains.append(TcpChain(destinations, prefix_ranges=listener_cidrs, source=_source(vs, "tcp", index)))
                break
            if subnets:
                chains.append(TcpChain(destinations, prefix_ranges=tuple(subnets), source=_source(vs, "tcp", index)))
    # On a shared 0.0.0.0_<port> listener a TLS service is reached by its SNI only: other
    # connections fall to the listener's default (passthrough, or blackhole for REGISTRY_ONLY).
    shared_tls = protocol == "tls" and not service.vip and not listener_cidrs
    if not catch_all and not shared_tls:
        chains.append(TcpChain(default, prefix_ranges=listener_cidrs, source="default"))
    return dedupe_chains(chains)


HostFilter = Callable[[VirtualService, str], bool]


def gateway_tcp_chain(
    snapshot: MeshSnapshot, vss: list[VirtualService], ctx: RouteContext, allows: HostFilter
) -> TcpChain | None:
    """A TCP server: the first applicable tcp rule of the bound VirtualServices it allows."""
    for vs in vss:
        if not any(allows(vs, resolve_host(h, vs.metadata.namespace)) for h in vs.spec.hosts or []):
            continue
        for index, rule in enumerate(vs.spec.tcp or []):
            if not rule.match or any(_match_applies(m, vs, ctx) for m in rule.match):
                return TcpChain(
                    l4_destinations(snapshot, rule, vs.metadata.namespace, ctx), source=_source(vs, "tcp", index)
                )
    return None


def gateway_tls_chains(
    snapshot: MeshSnapshot, vss: list[VirtualService], ctx: RouteContext, allows: HostFilter
) -> list[TcpChain]:
    """A TLS PASSTHROUGH server: one chain per applicable tls match, SNI limited to the server's hosts."""
    chains = []
    for vs in vss:
        for index, rule in enumerate(vs.spec.tls or []):
            for match in rule.match or []:
                if not _match_applies(match, vs, ctx):
                    continue
                sni = tuple(h for h in match.sni_hosts if allows(vs, h))
                if sni:
                    chains.append(
                        TcpChain(
                            l4_destinations(snapshot, rule, vs.metadata.namespace, ctx),
                            prefix_ranges=tuple(match.destination_subnets or ()),
                            server_names=sni,
                            source=_source(vs, "tls", index),
                        )
                    )
    return dedupe_chains(chains)
