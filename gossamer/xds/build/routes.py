"""IR route tables -> Envoy RouteConfiguration (matches, weighted clusters, headers)."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import wrappers_pb2

from gossamer.ir.types import HeaderOps, HttpRoute, RouteMatch, RouteTable, StringMatch, VirtualHost
from gossamer.xds.build.common import seconds

_APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def string_matcher(m: StringMatch) -> string_pb2.StringMatcher:
    out = string_pb2.StringMatcher(ignore_case=m.ignore_case)
    if m.kind == "exact":
        out.exact = m.value
    elif m.kind == "prefix":
        out.prefix = m.value
    elif m.kind == "regex":
        out.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=m.value))
    return out


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
    values = [base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, value=v), append_action=_OVERWRITE)
              for k, v in ops.set]
    values += [base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, value=v), append_action=_APPEND)
               for k, v in ops.add]
    return values


def build_route(route: HttpRoute) -> rc.Route:
    # Istio disables Envoy's default 15 s route timeout unless a VirtualService sets one.
    action = rc.RouteAction(timeout=seconds(0))
    if len(route.destinations) == 1 and not route.destinations[0].request_headers \
            and not route.destinations[0].response_headers:
        action.cluster = route.destinations[0].cluster
    else:
        for d in route.destinations:
            action.weighted_clusters.clusters.append(rc.WeightedCluster.ClusterWeight(
                name=d.cluster, weight=wrappers_pb2.UInt32Value(value=d.weight),
                request_headers_to_add=header_values(d.request_headers),
                request_headers_to_remove=list(d.request_headers.remove),
                response_headers_to_add=header_values(d.response_headers),
                response_headers_to_remove=list(d.response_headers.remove),
            ))
    return rc.Route(
        name=route.name,
        match=build_route_match(route.match),
        route=action,
        request_headers_to_add=header_values(route.request_headers),
        request_headers_to_remove=list(route.request_headers.remove),
        response_headers_to_add=header_values(route.response_headers),
        response_headers_to_remove=list(route.response_headers.remove),
        decorator=rc.Decorator(operation=route.source or route.name),
    )


def build_virtual_host(vhost: VirtualHost) -> rc.VirtualHost:
    return rc.VirtualHost(name=vhost.name, domains=list(vhost.domains),
                          routes=[build_route(r) for r in vhost.routes])


def build_route_table(table: RouteTable) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(
        name=table.name,
        virtual_hosts=[build_virtual_host(v) for v in table.virtual_hosts],
        validate_clusters=wrappers_pb2.BoolValue(value=False),
    )
