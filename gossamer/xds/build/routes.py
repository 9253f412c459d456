"""IR route tables -> Envoy RouteConfiguration (matches, weighted clusters, headers)."""

from __future__ import annotations

import base64
from functools import lru_cache

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.type.matcher.v3 import regex_pb2
from google.protobuf import wrappers_pb2

from gossamer.ir.route_actions import DirectResponse, Redirect
from gossamer.ir.types import HeaderOps, HttpRoute, RouteMatch, RouteTable, VirtualHost
from gossamer.telemetry.peer import PEER_HEADER
from gossamer.xds.build.common import seconds, string_matcher
from gossamer.xds.build.route_actions import (
    CORS_FILTER,
    FAULT_FILTER,
    cors_config,
    fault_config,
    mirror_policy,
    per_route_filter_config,
    retry_policy,
)
from gossamer.xds.build.telemetry import peer_request_headers
from gossamer.xds.build.traffic_policy import hash_policy

MAX_DIRECT_RESPONSE_BODY_BYTES = 1024 * 1024
# Virtual hosts for hosts outside the mesh: our identity is none of their business.
PASSTHROUGH_VHOSTS = ("allow_any", "block_all")
_REDIRECT_CODES = {
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}

_APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def build_route_match(match: RouteMatch) -> rc.RouteMatch:
    out = rc.RouteMatch()
    path = match.path
    if path is None:
        out.prefix = "/"
    elif path.kind == "exact":
        out.path = path.value
    elif path.kind == "prefix":
        out.prefix = path.value
    else:
        out.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=path.value))
    if path is not None and path.ignore_case:
        out.case_sensitive.CopyFrom(wrappers_pb2.BoolValue(value=False))
    for h in match.headers:
        header = rc.HeaderMatcher(name=h.name, invert_match=h.invert)
        if h.match.kind == "present":
            header.present_match = True
        else:
            header.string_match.CopyFrom(string_matcher(h.match))
        out.headers.append(header)
    for q in match.query_params:
        param = rc.QueryParameterMatcher(name=q.name)
        if q.match.kind == "present":
            param.present_match = True
        else:
            param.string_match.CopyFrom(string_matcher(q.match))
        out.query_parameters.append(param)
    return out


def header_values(ops: HeaderOps) -> list[base_pb2.HeaderValueOption]:
    values = [
        base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, value=v), append_action=_OVERWRITE)
        for k, v in ops.set
    ]
    values += [
        base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, value=v), append_action=_APPEND)
        for k, v in ops.add
    ]
    return values


def _redirect(r: Redirect) -> rc.RedirectAction:
    out = rc.RedirectAction(host_redirect=r.host, port_redirect=r.port, response_code=_REDIRECT_CODES[r.response_code])
    if r.path:
        out.path_redirect = r.path
    if r.scheme:
        out.scheme_redirect = r.scheme
    return out


def _direct_response(d: DirectResponse) -> rc.DirectResponseAction:
    out = rc.DirectResponseAction(status=d.status)
    if d.body_string is not None:
        out.body.inline_string = d.body_string
    elif d.body_base64 is not None:
        out.body.inline_bytes = base64.b64decode(d.body_base64)
    return out


def _route_action(route: HttpRoute) -> rc.RouteAction:
    # Istio disables Envoy's default 15 s route timeout unless a VirtualService sets one, and
    # lets a grpc-timeout header shorten it (capped at the route timeout, 0 = unlimited), with
    # max_stream_duration as Istio does now (max_grpc_timeout is deprecated).
    action = rc.RouteAction(timeout=seconds(route.timeout))
    action.max_stream_duration.max_stream_duration.CopyFrom(seconds(route.timeout))
    action.max_stream_duration.grpc_timeout_header_max.CopyFrom(seconds(route.timeout))
    if (
        len(route.destinations) == 1
        and not route.destinations[0].request_headers
        and not route.destinations[0].response_headers
    ):
        action.cluster = route.destinations[0].cluster
    else:
        for d in route.destinations:
            weight = rc.WeightedCluster.ClusterWeight(
                name=d.cluster,
                weight=wrappers_pb2.UInt32Value(value=d.weight),
                request_headers_to_add=header_values(d.request_headers),
                request_headers_to_remove=list(d.request_headers.remove),
                response_headers_to_add=header_values(d.response_headers),
                response_headers_to_remove=list(d.response_headers.remove),
            )
            if d.host_rewrite and len(route.destinations) > 1:
                weight.host_rewrite_literal = d.host_rewrite
            action.weighted_clusters.clusters.append(weight)
    rewrite = route.rewrite
    if rewrite.regex_pattern:
        action.regex_rewrite.CopyFrom(
            regex_pb2.RegexMatchAndSubstitute(
                pattern=regex_pb2.RegexMatcher(regex=rewrite.regex_pattern), substitution=rewrite.regex_substitution
            )
        )
    elif rewrite.prefix:
        # On a route matching an exact path Envoy swaps the whole path: a full-path rewrite.
        action.prefix_rewrite = rewrite.prefix
    if rewrite.host:
        action.host_rewrite_literal = rewrite.host
    action.request_mirror_policies.extend(mirror_policy(m) for m in route.mirrors)
    action.hash_policy.extend(hash_policy(h) for h in route.hash_policies)
    if route.retry is not None:
        action.retry_policy.CopyFrom(retry_policy(route.retry))
    return action


SOURCE_METADATA = "gossamer"


def build_route(route: HttpRoute) -> rc.Route:
    out = rc.Route(
        name=route.name,
        match=build_route_match(route.match),
        request_headers_to_add=header_values(route.request_headers),
        request_headers_to_remove=list(route.request_headers.remove),
        response_headers_to_add=header_values(route.response_headers),
        response_headers_to_remove=list(route.response_headers.remove),
    )
    if route.operation:
        out.decorator.operation = route.operation
    if route.source:
        # Which rule this route came from, for `gossamer explain` (Istio keeps its config path here too).
        out.metadata.filter_metadata[SOURCE_METADATA].update({"source": route.source})
    if route.redirect is not None:
        out.redirect.CopyFrom(_redirect(route.redirect))
    elif route.direct_response is not None:
        out.direct_response.CopyFrom(_direct_response(route.direct_response))
    else:
        out.route.CopyFrom(_route_action(route))
    if route.fault is not None:
        out.typed_per_filter_config[FAULT_FILTER].CopyFrom(per_route_filter_config(fault_config(route.fault)))
    if route.cors is not None:
        out.typed_per_filter_config[CORS_FILTER].CopyFrom(per_route_filter_config(cors_config(route.cors)))
    return out


@lru_cache(maxsize=16384)  # shared by the proxy groups of a push; see xds/build/__init__.py
def build_virtual_host(vhost: VirtualHost) -> rc.VirtualHost:
    out = rc.VirtualHost(name=vhost.name, domains=list(vhost.domains), routes=[build_route(r) for r in vhost.routes])
    if vhost.require_tls:
        out.require_tls = rc.VirtualHost.ALL  # Gateway httpsRedirect: 301 to https
    if vhost.name in PASSTHROUGH_VHOSTS:
        # The table adds the peer header first (see _table_fields); taken off again here.
        out.request_headers_to_remove.append(PEER_HEADER)
    return out


_vhosts_by_identity: dict[int, tuple[VirtualHost, rc.VirtualHost]] = {}


def _virtual_host(vhost: VirtualHost) -> rc.VirtualHost:
    """build_virtual_host, once per virtual host object: translation hands out the same object while a
    virtual host is untouched (a change to one VirtualService rebuilds one of a thousand)."""
    found = _vhosts_by_identity.get(id(vhost))
    if found is not None and found[0] is vhost:
        return found[1]
    built = build_virtual_host(vhost)
    if len(_vhosts_by_identity) > 20_000:
        _vhosts_by_identity.clear()
    _vhosts_by_identity[id(vhost)] = (vhost, built)  # holds `vhost`: its id cannot be reused meanwhile
    return built


def built_virtual_host(vhost: VirtualHost) -> rc.VirtualHost:
    """The virtual host as build_route_table builds it (once per virtual host object)."""
    return _virtual_host(vhost)


def table_fields(table: RouteTable) -> route_pb2.RouteConfiguration:
    """A route table's own fields (no virtual hosts), as build_route_table builds them."""
    return _table_fields(table)


def _table_fields(table: RouteTable) -> route_pb2.RouteConfiguration:
    """A route table's own fields (no virtual hosts)."""
    return route_pb2.RouteConfiguration(
        name=table.name,
        validate_clusters=wrappers_pb2.BoolValue(value=False),
        # Istio raises Envoy's 4 KiB limit on directResponse bodies to 1 MiB.
        max_direct_response_body_size_bytes=wrappers_pb2.UInt32Value(value=MAX_DIRECT_RESPONSE_BODY_BYTES),
        # Istio's peer metadata exchange: the server's proxy labels its metrics with our identity. Once per
        # table, not per virtual host (a third of every virtual host's bytes: what a change resends to
        # every proxy). Evaluated table -> virtual host -> route, so the passthrough virtual hosts remove
        # them again and a VirtualService's own header operations still apply after them.
        request_headers_to_add=peer_request_headers(),
        most_specific_header_mutations_wins=True,
    )


def build_route_table(table: RouteTable) -> route_pb2.RouteConfiguration:
    out = _table_fields(table)
    out.virtual_hosts.extend(_virtual_host(v) for v in table.virtual_hosts)
    return out


# A RouteConfiguration serialized from pieces: its fields without virtual hosts, then one pre-serialized
# `virtual_hosts` entry per virtual host (concatenated protobuf messages merge; repeated fields append). A
# change to one VirtualService then rebuilds one virtual host, not a table of thousands.
def route_table_header(table: RouteTable) -> bytes:
    return bytes(_table_fields(table).SerializeToString(deterministic=True))


def virtual_host_entry(vhost: VirtualHost) -> bytes:
    return bytes(
        route_pb2.RouteConfiguration(virtual_hosts=[build_virtual_host(vhost)]).SerializeToString(deterministic=True)
    )
