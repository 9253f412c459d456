"""VirtualService http rules -> IR routes (Istio's route semantics).

Rules are evaluated in order and the first match wins, so the IR keeps their
order; a rule with several match blocks becomes one route per block (OR).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from gossamer.ir.matches import StringMatch
from gossamer.ir.route_actions import MirrorPolicy
from gossamer.ir.traffic_policy import HashPolicy
from gossamer.ir.types import HeaderMatch, HeaderOps, HttpRoute, QueryParamMatch, RouteMatch, WeightedDestination
from gossamer.mesh import outbound_cluster_name, parse_cluster_name
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy
from gossamer.resources import networking
from gossamer.resources.networking import VirtualService
from gossamer.translate.clusters import destination_rule_for
from gossamer.translate.delegate import expand_delegates
from gossamer.translate.hosts import resolve_host
from gossamer.translate.route_actions import (
    mirror_percent,
    mirror_policy_percent,
    translate_cors,
    translate_direct_response,
    translate_fault,
    translate_redirect,
    translate_retry,
    translate_rewrite,
)
from gossamer.translate.traffic_policy import hash_for_destination
from gossamer.translate.visibility import exported_to

MESH_GATEWAY = "mesh"


AnyMatch = networking.HTTPMatchRequest | networking.L4MatchAttributes | networking.TLSMatchAttributes
RouteDestinationT = TypeVar("RouteDestinationT", networking.HTTPRouteDestination, networking.RouteDestination)


@dataclass(frozen=True)
class RouteContext:
    """Where the routes are being built: which proxy, for which gateway names and port."""

    proxy: Proxy
    gateways: frozenset[str]  # {"mesh"} for sidecars, {"ns/name", ...} for a gateway proxy
    port: int


def vs_gateways(vs: VirtualService) -> frozenset[str]:
    """A VirtualService's gateways, qualified with its namespace; default is the mesh."""
    names = list(vs.spec.gateways or []) or [MESH_GATEWAY]
    return frozenset(qualify_gateway(n, vs.metadata.namespace) for n in names)


def qualify_gateway(name: str, namespace: str) -> str:
    if name == MESH_GATEWAY or "/" in name:
        return name
    return f"{namespace}/{name}"


def _string_match(m: networking.StringMatch | None, ignore_case: bool = False) -> StringMatch | None:
    if m is None:
        return None
    if m.exact is not None:
        return StringMatch("exact", m.exact, ignore_case)
    if m.prefix is not None:
        return StringMatch("prefix", m.prefix, ignore_case)
    if m.regex is not None:
        return StringMatch("regex", m.regex, ignore_case)
    return StringMatch("present")


def _match_applies(match: AnyMatch, vs: VirtualService, ctx: RouteContext) -> bool:
    gateways = (
        frozenset(qualify_gateway(g, vs.metadata.namespace) for g in match.gateways)
        if match.gateways
        else vs_gateways(vs)
    )
    if not gateways & ctx.gateways:
        return False
    if match.port is not None and match.port != ctx.port:
        return False
    if match.source_labels:
        labels = ctx.proxy.label_map
        if any(labels.get(k) != v for k, v in match.source_labels.items()):
            return False
    if match.source_namespace and match.source_namespace != ctx.proxy.namespace:
        return False
    return True


def translate_match(match: networking.HTTPMatchRequest) -> RouteMatch:
    headers: list[HeaderMatch] = []
    for pseudo, field in ((":method", match.method), (":scheme", match.scheme), (":authority", match.authority)):
        sm = _string_match(field)
        if sm is not None:
            headers.append(HeaderMatch(pseudo, sm))
    for name, m in (match.headers or {}).items():
        headers.append(HeaderMatch(name.lower(), _string_match(m) or StringMatch("present")))
    for name, m in (match.without_headers or {}).items():
        headers.append(HeaderMatch(name.lower(), _string_match(m) or StringMatch("present"), invert=True))
    params = tuple(
        QueryParamMatch(name, _string_match(m) or StringMatch("present"))
        for name, m in (match.query_params or {}).items()
    )
    return RouteMatch(
        path=_string_match(match.uri, bool(match.ignore_uri_case)),
        headers=tuple(headers),
        query_params=params,
    )


def _is_internal_header(name: str) -> bool:
    return name.startswith(":") or name.lower() == "host"


def _is_authority_header(name: str) -> bool:
    return name.lower() in (":authority", "host")


def translate_header_ops(ops: networking.HeaderOperations | None) -> HeaderOps:
    """Istio drops pseudo-headers and Host from header edits (the authority is a host rewrite)."""
    if ops is None:
        return HeaderOps()
    return HeaderOps(
        set=tuple((k.lower(), v) for k, v in (ops.set or {}).items() if not _is_internal_header(k)),
        add=tuple((k.lower(), v) for k, v in (ops.add or {}).items() if not _is_internal_header(k)),
        remove=tuple(h.lower() for h in (ops.remove or []) if not _is_internal_header(h)),
    )


def header_authority(headers: networking.Headers | None) -> str:
    """The :authority (or Host) a Headers block sets on requests; `set` wins over `add`."""
    request = headers.request if headers is not None else None
    if request is None:
        return ""
    found = ""
    for ops in (request.add, request.set):
        for k, v in (ops or {}).items():
            if _is_authority_header(k):
                found = v
    return found


def destination_port(snapshot: MeshSnapshot, host: str, port: networking.PortSelector | None, ctx: RouteContext) -> int:
    """Istio: the destination's port, else the service's only port, else the listener port."""
    if port is not None and port.number:
        return int(port.number)
    service = snapshot.service_by_host(host)
    if service is not None and len(service.ports) == 1:
        return service.ports[0].port
    return ctx.port


def destination_cluster(
    snapshot: MeshSnapshot, destination: networking.Destination, namespace: str, ctx: RouteContext
) -> str:
    host = resolve_host(destination.host, namespace)
    return outbound_cluster_name(
        host, destination_port(snapshot, host, destination.port, ctx), destination.subset or ""
    )


def _kept_destinations(routes: Sequence[RouteDestinationT]) -> list[tuple[RouteDestinationT, int]]:
    """A rule's route destinations with their weights (zero-weight ones dropped)."""
    out = []
    for dest in routes:
        weight = dest.weight if dest.weight is not None else (100 if len(routes) == 1 else 0)
        if weight <= 0 and len(routes) > 1:
            continue  # Istio drops zero-weight destinations
        out.append((dest, weight))
    return out


def translate_destinations(
    snapshot: MeshSnapshot, rule: networking.HTTPRoute, namespace: str, ctx: RouteContext
) -> tuple[WeightedDestination, ...]:
    out = []
    for dest, weight in _kept_destinations(rule.route or []):
        headers = dest.headers
        out.append(
            WeightedDestination(
                cluster=destination_cluster(snapshot, dest.destination, namespace, ctx),
                weight=weight,
                request_headers=translate_header_ops(headers.request if headers else None),
                response_headers=translate_header_ops(headers.response if headers else None),
                host_rewrite=header_authority(headers),
            )
        )
    return tuple(out)


def _hash_policies(
    snapshot: MeshSnapshot, rule: networking.HTTPRoute, namespace: str, ctx: RouteContext
) -> tuple[HashPolicy, ...]:
    """Istio puts each destination's consistent-hash key (from its DestinationRule) on the route."""
    out = []
    for dest, _weight in _kept_destinations(rule.route or []):
        host = resolve_host(dest.destination.host, namespace)
        dr = destination_rule_for(snapshot, host, ctx.proxy.namespace)
        explicit_port = dest.destination.port.number if dest.destination.port is not None else None
        hp = hash_for_destination(dr, dest.destination.subset or "", explicit_port)
        if hp is not None:
            out.append(hp)
    return tuple(out)


def translate_rule_action(
    snapshot: MeshSnapshot, rule: networking.HTTPRoute, namespace: str, ctx: RouteContext, authority: str
) -> dict[str, Any] | None:
    """The HttpRoute fields that say what a rule does: redirect, direct response or forward
    (destinations, timeout, retries, rewrite, mirrors, hash policies). None: no valid action."""
    if rule.redirect is not None:
        redirect = translate_redirect(rule.redirect, ctx.port)
        return None if redirect is None else {"destinations": (), "redirect": redirect}
    if rule.direct_response is not None:
        return {"destinations": (), "direct_response": translate_direct_response(rule.direct_response)}
    destinations = translate_destinations(snapshot, rule, namespace, ctx)
    hashes = _hash_policies(snapshot, rule, namespace, ctx)
    rewrite = translate_rewrite(rule.rewrite, authority)
    if not rewrite.host and len(destinations) == 1 and destinations[0].host_rewrite:
        # Istio: a single destination's :authority applies unless the route already rewrites it.
        rewrite = replace(rewrite, host=destinations[0].host_rewrite)
    mirrors = []
    if rule.mirror is not None:
        pct = mirror_percent(rule)
        if pct is not None:
            mirrors.append(MirrorPolicy(destination_cluster(snapshot, rule.mirror, namespace, ctx), pct))
    for m in rule.mirrors or []:
        pct = mirror_policy_percent(m)
        if pct is not None:
            mirrors.append(MirrorPolicy(destination_cluster(snapshot, m.destination, namespace, ctx), pct))
    consistent_hash = len(rule.route or []) == 1 and bool(hashes)
    return {
        "destinations": destinations,
        "timeout": rule.timeout.seconds if rule.timeout is not None else 0.0,
        "retry": translate_retry(rule.retries, consistent_hash),
        "hash_policies": hashes,
        "mirrors": tuple(mirrors),
        "rewrite": rewrite,
    }


def route_operation(route: HttpRoute, vs_name: str, port: int) -> str:
    """Istio's route decorator (GetRouteOperation): the matched path ("/*" without one, a prefix
    with "*" appended, an exact path or a regex as written) after "HOST:PORT" of the one
    destination cluster, or after "VS-NAME:PORT" when the route has several destinations or none."""
    path = route.match.path
    if path is None:
        suffix = "/*"
    else:
        suffix = path.value + "*" if path.kind == "prefix" else path.value
    if len(route.destinations) == 1 and route.redirect is None and route.direct_response is None:
        cluster = parse_cluster_name(route.destinations[0].cluster)
        if cluster is not None and cluster.direction == "outbound" and cluster.port:
            return f"{cluster.host}:{cluster.port}{suffix}"
    return f"{vs_name}:{port}{suffix}"


def translate_http_rules(snapshot: MeshSnapshot, vs: VirtualService, ctx: RouteContext) -> list[HttpRoute]:
    """The routes one VirtualService contributes in this context, in rule order."""
    routes: list[HttpRoute] = []
    ns = vs.metadata.namespace
    for index, rule in enumerate(expand_delegates(snapshot, vs)):
        headers = rule.headers
        request_ops = translate_header_ops(headers.request if headers else None)
        response_ops = translate_header_ops(headers.response if headers else None)
        action = translate_rule_action(snapshot, rule, ns, ctx, header_authority(headers))
        if action is None:
            continue  # e.g. an unsupported redirect code: Istio leaves the route without an action
        filters: dict[str, Any] = {"fault": translate_fault(rule.fault), "cors": translate_cors(rule.cors_policy)}
        source = f"{ns}/{vs.metadata.name}#http[{index}]" + (f" ({rule.name})" if rule.name else "")
        matches: Sequence[networking.HTTPMatchRequest] = rule.match or []
        if not matches:
            if vs_gateways(vs) & ctx.gateways:
                routes.append(
                    HttpRoute(
                        name=rule.name or f"{vs.metadata.name}.{index}",
                        match=RouteMatch(),
                        request_headers=request_ops,
                        response_headers=response_ops,
                        source=source,
                        **action,
                        **filters,
                    )
                )
            continue
        for m_index, match in enumerate(matches):
            if not _match_applies(match, vs, ctx):
                continue
            routes.append(
                HttpRoute(
                    name=match.name or rule.name or f"{vs.metadata.name}.{index}.{m_index}",
                    match=translate_match(match),
                    request_headers=request_ops,
                    response_headers=response_ops,
                    source=source,
                    **action,
                    **filters,
                )
            )
    return [replace(r, operation=route_operation(r, vs.metadata.name, ctx.port)) for r in routes]


def virtual_services_for(snapshot: MeshSnapshot, ctx: RouteContext) -> Iterable[VirtualService]:
    """VirtualServices bound to any of the context's gateways (exportTo respected)."""
    return (vs for vs in snapshot.of_kind(VirtualService) if applies_to(vs, ctx))


def applies_to(vs: VirtualService, ctx: RouteContext) -> bool:
    """Whether VS is one of virtual_services_for(CTX)."""
    if not exported_to(vs, ctx.proxy.namespace):
        return False
    bound = vs_gateways(vs)
    rule_gateways = {
        qualify_gateway(g, vs.metadata.namespace)
        for rule in vs.spec.all_rules
        for m in rule.match or []
        for g in m.gateways or []
    }
    return bool((bound | rule_gateways) & ctx.gateways)
