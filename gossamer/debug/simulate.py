"""Request simulator over the Envoy xDS resources one proxy was sent (like Istio's pilot/pkg/simulation).

Given LDS/RDS/CDS/EDS protos, ``simulate`` answers "where does this request go?" by following Envoy's own
semantics, not the shape of any particular translator:

* listener selection: virtualOutbound (use_original_dst) hands the connection to the listener whose address
  is exactly the original destination ip:port, else the wildcard ``0.0.0.0:<port>`` listener (bound or not),
  else keeps it; gateways (no virtualOutbound) use the listener bound to the port; inbound uses virtualInbound.
* filter chain selection: Envoy's staged FilterChainMatch algorithm (destination port, destination IP
  longest prefix, server name, transport protocol, application protocols), most specific wins at each
  stage with no backtracking, else ``default_filter_chain``.
* HTTP: virtual host by :authority (exact, then ``*suffix`` longest first, then ``prefix*`` longest first,
  then ``*``; the port is part of the authority), then routes in order, first match wins.
* TCP: tcp_proxy cluster / weighted_clusters.

Things Envoy decides at random or from state we do not have (runtime fractions, weighted picks, endpoint
health) are reported rather than decided. Features that would change the answer but are not modelled
raise ``SimulationError`` instead of guessing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from urllib.parse import unquote

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf.message import Message

from gossamer.debug import ratelimit
from gossamer.mesh import VIRTUAL_INBOUND_LISTENER, VIRTUAL_OUTBOUND_LISTENER
from gossamer.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

__all__ = ["Request", "Result", "SimulationError", "simulate"]


_WILDCARD_ADDRESSES = frozenset({"0.0.0.0", "::"})
# What a mesh client offers on an mTLS connection (Istio's ALPN).
MESH_ALPN = ("istio-peer-exchange", "istio")

_REDIRECT_CODES: dict[int, int] = {
    rc.RedirectAction.MOVED_PERMANENTLY: 301,
    rc.RedirectAction.FOUND: 302,
    rc.RedirectAction.SEE_OTHER: 303,
    rc.RedirectAction.TEMPORARY_REDIRECT: 307,
    rc.RedirectAction.PERMANENT_REDIRECT: 308,
}

_CLUSTER_NOT_FOUND_CODES: dict[int, int] = {
    rc.RouteAction.SERVICE_UNAVAILABLE: 503,
    rc.RouteAction.NOT_FOUND: 404,
    rc.RouteAction.INTERNAL_SERVER_ERROR: 500,
}


class SimulationError(Exception):
    """The resources cannot carry the request (no listener / chain), or use a feature not modelled."""


@dataclass(frozen=True)
class Request:
    host: str
    path: str = "/"
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    port: int = 80
    address: str = "0.0.0.0"
    scheme: str = "http"
    inbound: bool = False
    # Inbound from a mesh peer: its SPIFFE id (the connection is mTLS with Istio's ALPN), and its IP.
    peer_principal: str = ""
    source_ip: str = ""


@dataclass(frozen=True)
class Result:
    listener: str
    filter_chain: str
    route_config: str | None = None
    virtual_host: str | None = None
    route: str | None = None
    operation: str | None = None  # the route's decorator (Istio's span name)
    source: str | None = None  # the rule the route came from ("ns/vs#http[0]", "default")
    clusters: tuple[tuple[str, int], ...] = ()
    status: int | None = None
    request_headers_to_add: tuple[tuple[str, str], ...] = ()
    explanation: tuple[str, ...] = ()
    rate_limits: tuple[str, ...] = ()  # what the rate limit filters do with it (debug/ratelimit.py)

    @property
    def cluster(self) -> str | None:
        """The only cluster if there is exactly one, else None."""
        return self.clusters[0][0] if len(self.clusters) == 1 else None


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def simulate(resources: Mapping[str, Mapping[str, Message]], request: Request) -> Result:
    """Say where ``request`` goes on the proxy that was sent ``resources`` (type URL -> name -> proto)."""
    steps: list[str] = []
    listeners = _typed(resources, LISTENER, listener_pb2.Listener)
    if not listeners:
        raise SimulationError("no listeners in the resources")
    listener, how = _select_listener(listeners, request)
    steps.append(f"listener {listener.name} ({how})")
    chain, chain_name, chain_how = _select_filter_chain(listener, request)
    steps.append(f"filter chain {chain_name} ({chain_how})")
    return _run_chain(resources, request, listener, chain, chain_name, steps)


def _typed(resources: Mapping[str, Mapping[str, Message]], type_url: str, cls: type) -> dict[str, Message]:
    out: dict[str, Message] = {}
    for name, msg in resources.get(type_url, {}).items():
        if not isinstance(msg, cls):
            raise SimulationError(f"resource {name!r} under {type_url} is a {type(msg).__name__}")
        out[name] = msg
    return out


# --------------------------------------------------------------------------------------------------
# Listener selection
# --------------------------------------------------------------------------------------------------


def _socket(listener: listener_pb2.Listener) -> list[tuple[str, int]]:
    """(ip, port) of the listener's address and additional addresses (socket addresses only)."""
    addrs = [listener.address] + [a.address for a in listener.additional_addresses]
    return [
        (a.socket_address.address, a.socket_address.port_value)
        for a in addrs
        if a.WhichOneof("address") == "socket_address"
    ]


def _bound(listener: listener_pb2.Listener) -> bool:
    return not listener.HasField("bind_to_port") or listener.bind_to_port.value


def _by_address(
    candidates: Iterable[listener_pb2.Listener],
    ip: str,
    port: int,
) -> tuple[listener_pb2.Listener | None, str]:
    """Envoy's lookup of a listener by local address: exact ip:port first, then the wildcard ip on port."""
    candidates = list(candidates)
    for lis in candidates:
        if (ip, port) in _socket(lis) and ip not in _WILDCARD_ADDRESSES:
            return lis, f"address {ip}:{port} exactly"
    for lis in candidates:
        if any(p == port and a in _WILDCARD_ADDRESSES for a, p in _socket(lis)):
            return lis, f"wildcard address on port {port}"
    return None, ""


def _select_listener(listeners: Mapping[str, Message], request: Request) -> tuple[listener_pb2.Listener, str]:
    all_listeners = [m for m in listeners.values() if isinstance(m, listener_pb2.Listener)]
    if request.inbound:
        inbound = listeners.get(VIRTUAL_INBOUND_LISTENER)
        if not isinstance(inbound, listener_pb2.Listener):
            raise SimulationError(f"inbound request but no {VIRTUAL_INBOUND_LISTENER} listener")
        return inbound, f"inbound capture, original destination {request.address}:{request.port}"
    outbound = listeners.get(VIRTUAL_OUTBOUND_LISTENER)
    if isinstance(outbound, listener_pb2.Listener):
        others = [lis for lis in all_listeners if lis.name != VIRTUAL_OUTBOUND_LISTENER]
        if outbound.HasField("use_original_dst") and outbound.use_original_dst.value:
            target, how = _by_address(others, request.address, request.port)
            if target is not None:
                return (
                    target,
                    f"original destination port {request.port}; handed off from {VIRTUAL_OUTBOUND_LISTENER} by {how}",
                )
            return outbound, (
                f"original destination {request.address}:{request.port} matches no listener; "
                f"{VIRTUAL_OUTBOUND_LISTENER} keeps the connection"
            )
        return outbound, f"{VIRTUAL_OUTBOUND_LISTENER} without use_original_dst keeps every connection"
    bound = [lis for lis in all_listeners if _bound(lis)]
    target, how = _by_address(bound, request.address, request.port)
    if target is None:
        raise SimulationError(
            f"no listener bound to {request.address}:{request.port} "
            f"(and no {VIRTUAL_OUTBOUND_LISTENER} to capture the connection)"
        )
    return target, f"bound to port {request.port}, {how}"


# --------------------------------------------------------------------------------------------------
# Filter chain selection (Envoy's FilterChainManager stages, no backtracking)
# --------------------------------------------------------------------------------------------------


def _has_listener_filter(listener: listener_pb2.Listener, short: str, type_name: str) -> bool:
    return any(f.name.endswith(short) or f.typed_config.type_url.endswith(type_name) for f in listener.listener_filters)


def _prefix_len(ranges: Sequence[address_pb2.CidrRange], ip: str) -> int | None:
    """Longest matching prefix length of ``ip`` in CidrRanges, or None if none contains it."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    best: int | None = None
    for r in ranges:
        prefix = r.address_prefix
        length = r.prefix_len.value if r.HasField("prefix_len") else (32 if ":" not in prefix else 128)
        try:
            net = ipaddress.ip_network(f"{prefix}/{length}", strict=False)
        except ValueError:
            continue
        if addr.version == net.version and addr in net and (best is None or length > best):
            best = length
    return best


def _server_name_rank(names: Sequence[str], sni: str) -> int | None:
    """Envoy: exact server name first, then '*.suffix' wildcards, most labels first."""
    lowered = [n.lower() for n in names]
    if sni in lowered:
        return 10_000
    labels = sni.split(".")
    for i in range(1, len(labels)):
        wildcard = "*." + ".".join(labels[i:])
        if wildcard in lowered:
            return 10_000 - i
    return None


_Chain = tuple[int, listener_components_pb2.FilterChain]


def _stage(chains: list[_Chain], rank: Mapping[int, int | None], label: str, notes: list[str]) -> list[_Chain]:
    """Keep the chains with the best rank; rank -1 means 'criterion not set' (a wildcard), None 'no match'."""
    ranked = [(rank[i], (i, c)) for i, c in chains if rank[i] is not None]
    if not ranked:
        return []
    best = max(r for r, _ in ranked if r is not None)
    kept = [c for r, c in ranked if r == best]
    if best >= 0 and len(kept) < len(chains):
        notes.append(label)
    return kept


def _select_filter_chain(
    listener: listener_pb2.Listener,
    request: Request,
) -> tuple[listener_components_pb2.FilterChain, str, str]:
    if listener.HasField("filter_chain_matcher"):
        raise SimulationError(f"listener {listener.name}: filter_chain_matcher is not simulated")
    inspector = _has_listener_filter(listener, "tls_inspector", "TlsInspector")
    mtls = bool(request.peer_principal) and inspector
    tls = request.scheme == "https" and inspector or mtls
    transport = "tls" if tls else "raw_buffer"
    sni = request.host.rsplit(":", 1)[0].lower() if tls and not mtls and not request.host.startswith("[") else ""
    alpn: tuple[str, ...] = MESH_ALPN if mtls else ()
    if not tls and _has_listener_filter(listener, "http_inspector", "HttpInspector"):
        alpn = ("http/1.1",)
    chains: list[_Chain] = list(enumerate(listener.filter_chains))
    notes: list[str] = []

    def m(c: listener_components_pb2.FilterChain) -> listener_components_pb2.FilterChainMatch:
        return c.filter_chain_match

    port_rank = {
        i: (
            -1
            if not m(c).HasField("destination_port")
            else (1 if m(c).destination_port.value == request.port else None)
        )
        for i, c in chains
    }
    chains = _stage(chains, port_rank, f"destination_port {request.port}", notes)
    ip_rank: dict[int, int | None] = {}
    for i, c in chains:
        ip_rank[i] = -1 if not m(c).prefix_ranges else _prefix_len(m(c).prefix_ranges, request.address)
    chains = _stage(chains, ip_rank, f"prefix_ranges contain {request.address}", notes)
    sni_rank: dict[int, int | None] = {
        i: -1 if not m(c).server_names else (_server_name_rank(m(c).server_names, sni) if sni else None)
        for i, c in chains
    }
    chains = _stage(chains, sni_rank, f"server_names match SNI {sni!r}", notes)
    tp_rank = {
        i: -1 if not m(c).transport_protocol else (1 if m(c).transport_protocol == transport else None)
        for i, c in chains
    }
    chains = _stage(chains, tp_rank, f"transport_protocol {transport}", notes)
    ap_rank = {
        i: -1 if not m(c).application_protocols else (1 if set(m(c).application_protocols) & set(alpn) else None)
        for i, c in chains
    }
    chains = _stage(chains, ap_rank, f"application_protocols include {'/'.join(alpn) or 'nothing'}", notes)
    # Source criteria: the simulated request has no known source, so prefer chains that do not use them.
    unsourced = [
        (i, c)
        for i, c in chains
        if not (m(c).direct_source_prefix_ranges or m(c).source_prefix_ranges or m(c).source_ports or m(c).source_type)
    ]
    if unsourced:
        chains = unsourced
    elif chains:
        notes.append("source criteria assumed to match")
    if chains:
        i, chain = chains[0]
        name = chain.name or f"filter_chains[{i}]"
        how = "matched " + ", ".join(notes) if notes else "matches any connection"
        if len(chains) > 1:
            how += f" ({len(chains)} chains tie; Envoy rejects such config, first taken)"
        return chain, name, how
    if listener.HasField("default_filter_chain"):
        chain = listener.default_filter_chain
        return chain, chain.name or "default_filter_chain", "no filter chain matched; default_filter_chain"
    raise SimulationError(
        f"listener {listener.name}: no filter chain matches {request.address}:{request.port} "
        "and there is no default_filter_chain (Envoy closes the connection)"
    )


# --------------------------------------------------------------------------------------------------
# Network filters
# --------------------------------------------------------------------------------------------------


def _run_chain(
    resources: Mapping[str, Mapping[str, Message]],
    request: Request,
    listener: listener_pb2.Listener,
    chain: listener_components_pb2.FilterChain,
    chain_name: str,
    steps: list[str],
) -> Result:
    # The peer is authenticated only where the chain terminates TLS (requiring a client certificate).
    terminates = chain.transport_socket.typed_config.Is(tls_pb2.DownstreamTlsContext.DESCRIPTOR)
    if terminates:
        if not request.peer_principal:
            raise SimulationError(
                f"filter chain {chain_name} terminates mTLS: a plaintext client fails the "
                "handshake (Envoy closes the connection)"
            )
        steps.append(f"mTLS terminated, peer {request.peer_principal}")
    peer = request.peer_principal if terminates else None
    for flt in chain.filters:
        any_msg = flt.typed_config
        if any_msg.Is(network_rbac_pb2.RBAC.DESCRIPTOR):
            net = network_rbac_pb2.RBAC()
            any_msg.Unpack(net)
            ctx = _RbacContext(peer, request.source_ip, request.port, request.address, {}, None)
            if not _rbac_allows(net.rules, ctx, steps, "network"):
                return Result(listener=listener.name, filter_chain=chain_name, explanation=tuple(steps))
            continue
        if any_msg.Is(hcm_pb2.HttpConnectionManager.DESCRIPTOR):
            hcm = hcm_pb2.HttpConnectionManager()
            any_msg.Unpack(hcm)
            return _run_http(resources, request, listener.name, chain_name, hcm, steps, peer)
        if any_msg.Is(tcp_proxy_pb2.TcpProxy.DESCRIPTOR):
            tcp = tcp_proxy_pb2.TcpProxy()
            any_msg.Unpack(tcp)
            return _run_tcp(resources, listener.name, chain_name, tcp, steps)
        steps.append(f"network filter {flt.name or any_msg.type_url} passed through (not simulated)")
    raise SimulationError(f"filter chain {chain_name} of {listener.name} has no http_connection_manager or tcp_proxy")


def _run_tcp(
    resources: Mapping[str, Mapping[str, Message]],
    listener: str,
    chain_name: str,
    tcp: tcp_proxy_pb2.TcpProxy,
    steps: list[str],
) -> Result:
    if tcp.WhichOneof("cluster_specifier") == "weighted_clusters":
        clusters = tuple((c.name, c.weight) for c in tcp.weighted_clusters.clusters)
        steps.append("tcp_proxy weighted clusters " + ", ".join(f"{n} ({w})" for n, w in clusters))
    else:
        clusters = ((tcp.cluster, 100),)
        steps.append(f"tcp_proxy to cluster {tcp.cluster}")
    for name, _ in clusters:
        missing = _describe_cluster(resources, name, steps)
        if missing:
            steps.append(f"cluster {name} is not in CDS: Envoy closes the connection")
    return Result(listener=listener, filter_chain=chain_name, clusters=clusters, explanation=tuple(steps))


# --------------------------------------------------------------------------------------------------
# HTTP connection manager
# --------------------------------------------------------------------------------------------------


def _split_port(authority: str) -> tuple[str, str | None]:
    """Envoy's getPortStart: the last ':' not inside an IPv6 '[...]' literal."""
    colon = authority.rfind(":")
    if colon < 0 or authority.rfind("]") > colon:
        return authority, None
    return authority[:colon], authority[colon + 1 :]


def _normalize_path(path: str) -> str:
    """RFC 3986 dot-segment removal (what Envoy's normalize_path does for the cases that matter)."""
    path = path.replace("\\", "/")
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        if seg == ".":
            if i == len(segments) - 1:
                out.append("")
            continue
        if seg == "..":
            if len(out) > 1:
                out.pop()
            if i == len(segments) - 1:
                out.append("")
            continue
        out.append(seg)
    result = "/".join(out)
    return result if result.startswith("/") else "/" + result


def _run_http(
    resources: Mapping[str, Mapping[str, Message]],
    request: Request,
    listener: str,
    chain_name: str,
    hcm: hcm_pb2.HttpConnectionManager,
    steps: list[str],
    peer: str | None = None,
) -> Result:
    kind = hcm.WhichOneof("route_specifier")
    if kind == "rds":
        name = hcm.rds.route_config_name
        cfg = resources.get(ROUTE, {}).get(name)
        if not isinstance(cfg, route_pb2.RouteConfiguration):
            raise SimulationError(
                f"http_connection_manager uses RDS {name!r}, which was not sent (Envoy would keep the listener warming)"
            )
        steps.append(f"http_connection_manager, RDS route config {name}")
    elif kind == "route_config":
        cfg = hcm.route_config
        name = cfg.name
        steps.append(f"http_connection_manager, inline route config {name or '(unnamed)'}")
    else:
        raise SimulationError(f"http_connection_manager route specifier {kind} is not simulated")

    headers: dict[str, str] = {k.lower(): v for k, v in request.headers.items()}
    authority = request.host
    if hcm.strip_trailing_host_dot:
        host_part, port_part = _split_port(authority)
        if host_part.endswith("."):
            authority = host_part[:-1] + (f":{port_part}" if port_part is not None else "")
    port_mode = hcm.WhichOneof("strip_port_mode")
    host_part, port_part = _split_port(authority)
    if port_part is not None and (
        port_mode == "strip_any_host_port"
        and hcm.strip_any_host_port
        or port_mode == "strip_matching_host_port"
        and port_part == str(request.port)
    ):
        steps.append(f"http_connection_manager {port_mode}: authority {authority!r} -> {host_part!r}")
        authority = host_part
    elif port_part is not None and hcm.strip_matching_host_port:
        steps.append(f"strip_matching_host_port: port {port_part} is not the connection's port {request.port}")
    path = request.path
    path_only, sep, query = path.partition("?")
    path_only = path_only.split("#", 1)[0]
    if hcm.HasField("normalize_path") and hcm.normalize_path.value:
        path_only = _normalize_path(path_only)
    if hcm.merge_slashes:
        path_only = re.sub("/{2,}", "/", path_only)
    full_path = path_only + (sep + query if sep else "")
    if full_path != path:
        steps.append(f"path normalized to {full_path!r}")
    headers.update(
        {":authority": authority, ":path": full_path, ":method": request.method.upper(), ":scheme": request.scheme}
    )
    for http_filter in hcm.http_filters:
        if http_filter.typed_config.Is(http_rbac_pb2.RBAC.DESCRIPTOR):
            rbac = http_rbac_pb2.RBAC()
            http_filter.typed_config.Unpack(rbac)
            ctx = _RbacContext(peer, request.source_ip, request.port, request.address, headers, path_only)
            if not _rbac_allows(rbac.rules, ctx, steps, "http"):
                return Result(
                    listener=listener,
                    filter_chain=chain_name,
                    route_config=name or None,
                    status=403,
                    explanation=tuple(steps),
                )
    return _route(
        resources, request, listener, chain_name, name or None, cfg, headers, path_only, query, steps, hcm.http_filters
    )


def _select_virtual_host(
    cfg: route_pb2.RouteConfiguration,
    host: str,
) -> tuple[rc.VirtualHost | None, str]:
    """Envoy's RouteMatcher::findVirtualHost precedence."""
    host = host.lower()
    exact: dict[str, rc.VirtualHost] = {}
    suffixes: list[tuple[str, rc.VirtualHost]] = []
    prefixes: list[tuple[str, rc.VirtualHost]] = []
    default: rc.VirtualHost | None = None
    for vh in cfg.virtual_hosts:
        if vh.HasField("matcher"):
            raise SimulationError(f"virtual host {vh.name}: matcher is not simulated")
        for domain in vh.domains:
            d = domain.lower()
            if d == "*":
                default = default or vh
            elif d.startswith("*"):
                suffixes.append((d[1:], vh))
            elif d.endswith("*"):
                prefixes.append((d[:-1], vh))
            else:
                exact.setdefault(d, vh)
    if host in exact:
        return exact[host], f"domain {host!r} exactly"
    for suffix, vh in sorted(suffixes, key=lambda s: -len(s[0])):
        if len(host) > len(suffix) and host.endswith(suffix):
            return vh, f"wildcard domain '*{suffix}'"
    for prefix, vh in sorted(prefixes, key=lambda p: -len(p[0])):
        if len(host) > len(prefix) and host.startswith(prefix):
            return vh, f"wildcard domain '{prefix}*'"
    if default is not None:
        return default, "default domain '*'"
    return None, ""


def _port_hint(cfg: route_pb2.RouteConfiguration, host: str) -> str | None:
    bare, port = _split_port(host.lower())
    if port is None:
        return None
    for vh in cfg.virtual_hosts:
        if bare in (d.lower() for d in vh.domains):
            return (
                f"note: virtual host {vh.name} has domain {bare!r}, but Envoy matches the full authority "
                f"{host!r} including ':{port}', so it does not apply"
            )
    return None


def _route(
    resources: Mapping[str, Mapping[str, Message]],
    request: Request,
    listener: str,
    chain_name: str,
    cfg_name: str | None,
    cfg: route_pb2.RouteConfiguration,
    headers: dict[str, str],
    path: str,
    query: str,
    steps: list[str],
    filters: Sequence[hcm_pb2.HttpFilter] = (),
) -> Result:
    if cfg.vhds.HasField("config_source"):
        raise SimulationError(f"route config {cfg_name}: VHDS is not simulated")
    host = headers.get(cfg.vhost_header.lower(), "") if cfg.vhost_header else headers[":authority"]
    if cfg.ignore_port_in_host_matching:
        host = _split_port(host)[0]
    vh, how = _select_virtual_host(cfg, host)
    hint = _port_hint(cfg, host)
    if vh is None:
        steps.append(f"no virtual host matches {host!r}: 404")
        if hint:
            steps.append(hint)
        return Result(
            listener=listener, filter_chain=chain_name, route_config=cfg_name, status=404, explanation=tuple(steps)
        )
    steps.append(f"virtual host {vh.name} matched {how}" + (f" for {host!r}" if "exactly" not in how else ""))
    if hint and "exactly" not in how:
        steps.append(hint)
    vh_name = vh.name or None

    if (
        vh.require_tls == rc.VirtualHost.ALL
        and request.scheme != "https"
        or (
            vh.require_tls == rc.VirtualHost.EXTERNAL_ONLY
            and request.scheme != "https"
            and headers.get("x-envoy-internal") != "true"
        )
    ):
        steps.append(
            f"virtual host requires TLS ({rc.VirtualHost.TlsRequirementType.Name(vh.require_tls)}): redirect to https"
        )
        return Result(
            listener=listener,
            filter_chain=chain_name,
            route_config=cfg_name,
            virtual_host=vh_name,
            status=301,
            explanation=tuple(steps),
        )

    params = _parse_query(query)
    for index, route in enumerate(vh.routes, start=1):
        label = f"route #{index}" + (f" {route.name!r}" if route.name else "")
        ok, why = _match_route(route.match, request, headers, path, params)
        if not ok:
            steps.append(f"{label}: {why} did not match")
            continue
        steps.append(f"{label}: {why} matched")
        result = _apply_route(resources, listener, chain_name, cfg_name, cfg, vh, route, headers, steps)
        limits = ratelimit.describe(
            resources, filters, cfg, vh, route, headers, request.source_ip, result.cluster, _header_match
        )
        return replace(result, rate_limits=tuple(limits)) if limits else result
    steps.append(f"no route in virtual host {vh.name} matched: 404")
    return Result(
        listener=listener,
        filter_chain=chain_name,
        route_config=cfg_name,
        virtual_host=vh_name,
        status=404,
        explanation=tuple(steps),
    )


def _headers_to_add(options: Iterable[base_pb2.HeaderValueOption]) -> list[tuple[str, str]]:
    return [(o.header.key, o.header.value or o.header.raw_value.decode("utf-8", "replace")) for o in options]


def _apply_route(
    resources: Mapping[str, Mapping[str, Message]],
    listener: str,
    chain_name: str,
    cfg_name: str | None,
    cfg: route_pb2.RouteConfiguration,
    vh: rc.VirtualHost,
    route: rc.Route,
    headers: Mapping[str, str],
    steps: list[str],
) -> Result:
    # Envoy's order: route, virtual host, table (the table's win), or the reverse with
    # most_specific_header_mutations_wins; each level removes its headers before adding its own.
    levels: list[rc.Route | rc.VirtualHost | route_pb2.RouteConfiguration] = [route, vh, cfg]
    if cfg.most_specific_header_mutations_wins:
        levels.reverse()
    to_add: list[tuple[str, str]] = []
    for level in levels:
        removed = {name.lower() for name in level.request_headers_to_remove}
        to_add = [(k, v) for k, v in to_add if k.lower() not in removed]
        to_add += _headers_to_add(level.request_headers_to_add)
    clusters: tuple[tuple[str, int], ...] = ()
    status: int | None = None
    action = route.WhichOneof("action")
    if action == "route":
        ra = route.route
        spec = ra.WhichOneof("cluster_specifier")
        if spec == "cluster":
            clusters = ((ra.cluster, 100),)
            steps.append(f"route to cluster {ra.cluster}")
        elif spec == "weighted_clusters":
            entries: list[tuple[str, int]] = []
            for cw in ra.weighted_clusters.clusters:
                cname = cw.name
                if cw.cluster_header:
                    cname = headers.get(cw.cluster_header.lower(), "")
                    steps.append(f"weighted cluster from header {cw.cluster_header}: {cname or '(absent)'}")
                entries.append((cname, cw.weight.value if cw.HasField("weight") else 0))
            clusters = tuple(entries)
            steps.append("route to weighted clusters " + ", ".join(f"{n} ({w})" for n, w in clusters))
        elif spec == "cluster_header":
            cname = headers.get(ra.cluster_header.lower(), "")
            if cname:
                clusters = ((cname, 100),)
                steps.append(f"route to cluster {cname} named by header {ra.cluster_header}")
            else:
                status = _CLUSTER_NOT_FOUND_CODES.get(ra.cluster_not_found_response_code, 503)
                steps.append(f"cluster_header {ra.cluster_header} absent: no cluster, {status}")
        else:
            raise SimulationError(f"route {route.name!r}: cluster specifier {spec} is not simulated")
        missing = [n for n, _ in clusters if _describe_cluster(resources, n, steps)]
        if missing and len(missing) == len(clusters):
            status = _CLUSTER_NOT_FOUND_CODES.get(ra.cluster_not_found_response_code, 503)
            steps.append(f"cluster {', '.join(missing)} not in CDS: Envoy answers {status} (NC)")
        elif missing:
            steps.append(
                f"cluster {', '.join(missing)} not in CDS: requests picked for it get "
                f"{_CLUSTER_NOT_FOUND_CODES.get(ra.cluster_not_found_response_code, 503)}"
            )
    elif action == "direct_response":
        status = route.direct_response.status
        steps.append(f"direct response {status}")
    elif action == "redirect":
        status = _REDIRECT_CODES.get(route.redirect.response_code, 301)
        steps.append(f"redirect {status}")
    elif action == "non_forwarding_action":
        status = 404
        steps.append("non-forwarding route: the router filter answers 404")
    else:
        raise SimulationError(f"route {route.name!r}: action {action} is not simulated")
    return Result(
        listener=listener,
        filter_chain=chain_name,
        route_config=cfg_name,
        virtual_host=vh.name or None,
        route=route.name or None,
        operation=route.decorator.operation if route.HasField("decorator") else None,
        source=route_source(route),
        clusters=clusters,
        status=status,
        request_headers_to_add=tuple(to_add),
        explanation=tuple(steps),
    )


def route_source(route: rc.Route) -> str | None:
    """The rule a route was built from (route metadata `gossamer.source`), None if unknown."""
    meta = route.metadata.filter_metadata.get("gossamer")
    value = meta.fields.get("source") if meta is not None else None
    return value.string_value if value is not None else None


def _describe_cluster(resources: Mapping[str, Mapping[str, Message]], name: str, steps: list[str]) -> bool:
    """Note what CDS/EDS say about ``name``; True if CDS was sent and lacks it."""
    if CLUSTER not in resources:
        return False
    cluster = resources[CLUSTER].get(name)
    if not isinstance(cluster, cluster_pb2.Cluster):
        return True
    dtype = cluster.WhichOneof("cluster_discovery_type")
    if dtype == "type" and cluster.type == cluster_pb2.Cluster.EDS and ENDPOINT in resources:
        service = cluster.eds_cluster_config.service_name or name
        cla = resources[ENDPOINT].get(service)
        if isinstance(cla, endpoint_pb2.ClusterLoadAssignment):
            count = sum(len(loc.lb_endpoints) for loc in cla.endpoints)
            steps.append(
                f"cluster {name}: {count} endpoint(s) in EDS"
                + ("; Envoy would answer 503 (no healthy upstream)" if count == 0 else "")
            )
        else:
            steps.append(f"cluster {name}: no EDS assignment sent (503 no healthy upstream)")
    return False


# --------------------------------------------------------------------------------------------------
# Route matching
# --------------------------------------------------------------------------------------------------


def _parse_query(query: str) -> dict[str, str]:
    """Envoy keeps the first value of each (percent-decoded) key."""
    params: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        params.setdefault(unquote(key), unquote(value))
    return params


def _regex(matcher: regex_pb2.RegexMatcher, value: str) -> bool:
    try:
        return re.fullmatch(matcher.regex, value) is not None
    except re.error as exc:
        raise SimulationError(f"regex {matcher.regex!r} is not valid in Python: {exc}") from exc


def _string_match(m: string_pb2.StringMatcher, value: str) -> tuple[bool, str]:
    kind = m.WhichOneof("match_pattern")
    if kind == "safe_regex":
        return _regex(m.safe_regex, value), f"regex {m.safe_regex.regex!r}"
    if kind not in ("exact", "prefix", "suffix", "contains"):
        raise SimulationError(f"string matcher {kind} is not simulated")
    expected: str = getattr(m, kind)
    got = value
    if m.ignore_case:
        expected, got = expected.lower(), got.lower()
    ok = {
        "exact": got == expected,
        "prefix": got.startswith(expected),
        "suffix": got.endswith(expected),
        "contains": expected in got,
    }[kind]
    return ok, f"{kind} {getattr(m, kind)!r}" + (" (ignore case)" if m.ignore_case else "")


def _string_desc(m: string_pb2.StringMatcher) -> str:
    kind = m.WhichOneof("match_pattern")
    if kind == "safe_regex":
        return f"regex {m.safe_regex.regex!r}"
    return f"{kind} {getattr(m, kind)!r}" + (" (ignore case)" if m.ignore_case else "") if kind else "(empty)"


def _header_desc(hm: rc.HeaderMatcher) -> str:
    name = hm.name.lower()
    kind = hm.WhichOneof("header_match_specifier")
    if kind is None:
        what = "present"
    elif kind == "present_match":
        what = "present" if hm.present_match else "absent"
    elif kind == "string_match":
        what = _string_desc(hm.string_match)
    elif kind == "safe_regex_match":
        what = f"regex {hm.safe_regex_match.regex!r}"
    elif kind == "range_match":
        what = f"in [{hm.range_match.start}, {hm.range_match.end})"
    else:
        what = f"{kind.removesuffix('_match')} {getattr(hm, kind)!r}"
    return f"header {name} {what}" + (" (inverted)" if hm.invert_match else "")


def _header_match(hm: rc.HeaderMatcher, headers: Mapping[str, str]) -> tuple[bool, str]:
    """Envoy's HeaderUtility::matchHeaders, including its treatment of absent headers."""
    desc = _header_desc(hm)
    value = headers.get(hm.name.lower())
    kind = hm.WhichOneof("header_match_specifier")
    present_kind = kind is None or kind == "present_match"
    present_expected = True if kind is None else hm.present_match
    if value is None and not hm.treat_missing_header_as_empty:
        # Absent header: only a presence matcher can match (present_match false, or inverted true).
        return present_kind and present_expected == hm.invert_match, desc + " (header absent)"
    value = value or ""
    if present_kind:
        ok = present_expected
    elif kind == "string_match":
        ok = _string_match(hm.string_match, value)[0]
    elif kind == "exact_match":
        ok = hm.exact_match == "" or value == hm.exact_match
    elif kind == "safe_regex_match":
        ok = _regex(hm.safe_regex_match, value)
    elif kind == "range_match":
        try:
            ok = hm.range_match.start <= int(value) < hm.range_match.end
        except ValueError:
            ok = False
    elif kind == "prefix_match":
        ok = value.startswith(hm.prefix_match)
    elif kind == "suffix_match":
        ok = value.endswith(hm.suffix_match)
    elif kind == "contains_match":
        ok = hm.contains_match in value
    else:
        raise SimulationError(f"header matcher {kind} is not simulated")
    return ok != hm.invert_match, desc + f" (value {value!r})"


def _query_match(qm: rc.QueryParameterMatcher, params: Mapping[str, str]) -> tuple[bool, str]:
    value = params.get(qm.name)
    if qm.HasField("present_match"):
        return (value is not None) == qm.present_match, f"query {qm.name} {'present' if qm.present_match else 'absent'}"
    if value is None:
        return False, f"query {qm.name} (absent)"
    if qm.HasField("string_match"):
        ok, what = _string_match(qm.string_match, value)
        return ok, f"query {qm.name} {what}"
    return True, f"query {qm.name} present"


def _match_path(match: rc.RouteMatch, request: Request, path: str) -> tuple[bool, str]:
    """The route match's path specifier: (matched, its description)."""
    case_sensitive = not match.HasField("case_sensitive") or match.case_sensitive.value
    cmp_path = path if case_sensitive else path.lower()
    kind = match.WhichOneof("path_specifier")
    ci = "" if case_sensitive else " (case-insensitive)"
    if kind == "prefix":
        want = match.prefix if case_sensitive else match.prefix.lower()
        return cmp_path.startswith(want), f"prefix {match.prefix!r}{ci}"
    if kind == "path":
        want = match.path if case_sensitive else match.path.lower()
        return cmp_path == want, f"path {match.path!r}{ci}"
    if kind == "safe_regex":
        return _regex(match.safe_regex, path), f"regex {match.safe_regex.regex!r}"
    if kind == "path_separated_prefix":
        want = match.path_separated_prefix if case_sensitive else match.path_separated_prefix.lower()
        ok = cmp_path == want or cmp_path.startswith(want + "/")
        return ok, f"path_separated_prefix {match.path_separated_prefix!r}{ci}"
    if kind == "connect_matcher":
        return request.method.upper() == "CONNECT", "CONNECT"
    raise SimulationError(f"route path specifier {kind} is not simulated")


def _match_route(
    match: rc.RouteMatch, request: Request, headers: Mapping[str, str], path: str, params: Mapping[str, str]
) -> tuple[bool, str]:
    """(matched, description of the deciding condition(s))."""
    ok, desc = _match_path(match, request, path)
    conditions = [desc]
    if not ok:
        return False, " and ".join(conditions)
    for hm in match.headers:
        ok, desc = _header_match(hm, headers)
        conditions.append(desc)
        if not ok:
            return False, desc
    for qm in match.query_parameters:
        ok, desc = _query_match(qm, params)
        conditions.append(desc)
        if not ok:
            return False, desc
    if match.HasField("grpc"):
        ok = headers.get("content-type", "").startswith("application/grpc")
        conditions.append("gRPC content-type")
        if not ok:
            return False, "gRPC content-type"
    if match.HasField("tls_context"):
        # A simulated request never presents a client certificate.
        tc = match.tls_context
        for fld in ("presented", "validated"):
            if tc.HasField(fld) and getattr(tc, fld).value:
                return False, f"tls_context {fld} certificate"
    if match.HasField("runtime_fraction"):
        pct = match.runtime_fraction.default_value
        denom = {0: 100, 1: 10_000, 2: 1_000_000}.get(pct.denominator, 100)
        if pct.numerator == 0:
            return False, "runtime_fraction 0%"
        if pct.numerator < denom:
            conditions.append(f"runtime_fraction {pct.numerator}/{denom} (assumed to match)")
    if match.dynamic_metadata or match.filter_state:
        raise SimulationError("route match on dynamic_metadata / filter_state is not simulated")
    return True, " and ".join(conditions)


# --------------------------------------------------------------------------------------------------
# RBAC (Envoy's rbac filters: ALLOW needs a matching policy, DENY a non-matching one, LOG never denies)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RbacContext:
    principal: str | None  # the mTLS peer's URI SAN; None: not authenticated
    source_ip: str
    port: int
    address: str
    headers: Mapping[str, str]
    path: str | None  # None: a TCP connection (HTTP matchers do not match)


def _rbac_allows(rules: rbac_pb2.RBAC, ctx: _RbacContext, steps: list[str], kind: str) -> bool:
    matched = [
        name
        for name, policy in sorted(rules.policies.items())
        if any(_permission(p, ctx) for p in policy.permissions) and any(_principal(p, ctx) for p in policy.principals)
    ]
    action = rbac_pb2.RBAC.Action.Name(rules.action)
    if rules.action == rbac_pb2.RBAC.ALLOW:
        allowed = bool(matched)
    elif rules.action == rbac_pb2.RBAC.DENY:
        allowed = not matched
    else:
        allowed = True
    which = f"matched {', '.join(matched)}" if matched else "no policy matched"
    verdict = (
        "allowed" if allowed else ("denied: 403 RBAC: access denied" if kind == "http" else "denied: connection closed")
    )
    steps.append(f"{kind} rbac {action}: {which}; {verdict}")
    return allowed


def _cidr_contains(cidr: address_pb2.CidrRange, ip: str) -> bool:
    if not ip:
        raise SimulationError("an RBAC rule needs the source IP: set Request.source_ip")
    return _prefix_len([cidr], ip) is not None


def _permission(p: rbac_pb2.Permission, ctx: _RbacContext) -> bool:
    kind = p.WhichOneof("rule")
    if kind == "any":
        return bool(p.any)
    if kind == "and_rules":
        return all(_permission(r, ctx) for r in p.and_rules.rules)
    if kind == "or_rules":
        return any(_permission(r, ctx) for r in p.or_rules.rules)
    if kind == "not_rule":
        return not _permission(p.not_rule, ctx)
    if kind == "header":
        return ctx.path is not None and _header_match(p.header, ctx.headers)[0]
    if kind == "url_path":
        return ctx.path is not None and _string_match(p.url_path.path, ctx.path)[0]
    if kind == "destination_port":
        return bool(p.destination_port == ctx.port)
    if kind == "destination_ip":
        return _prefix_len([p.destination_ip], ctx.address) is not None
    raise SimulationError(f"RBAC permission {kind} is not simulated")


def _principal(p: rbac_pb2.Principal, ctx: _RbacContext) -> bool:
    kind = p.WhichOneof("identifier")
    if kind == "any":
        return bool(p.any)
    if kind == "and_ids":
        return all(_principal(i, ctx) for i in p.and_ids.ids)
    if kind == "or_ids":
        return any(_principal(i, ctx) for i in p.or_ids.ids)
    if kind == "not_id":
        return not _principal(p.not_id, ctx)
    if kind == "authenticated":
        if ctx.principal is None:
            return False
        matcher = p.authenticated.principal_name
        return not matcher.WhichOneof("match_pattern") or _string_match(matcher, ctx.principal)[0]
    if kind in ("direct_remote_ip", "remote_ip", "source_ip"):
        return _cidr_contains(getattr(p, kind), ctx.source_ip)
    if kind == "header":
        return ctx.path is not None and _header_match(p.header, ctx.headers)[0]
    if kind in ("metadata", "filter_state"):
        return False  # what jwt_authn verified: simulated requests carry no token
    raise SimulationError(f"RBAC principal {kind} is not simulated")
