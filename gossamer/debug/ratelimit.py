"""What the rate limit filters of an HTTP connection manager do with one request, for `explain`:
Envoy's local rate limit (`envoy.filters.http.local_ratelimit`: which token bucket applies, the
filter's or the route's `typed_per_filter_config`) and global rate limit (`envoy.filters.http.ratelimit`:
the domain, the rate limit service's cluster and whether this proxy has it, `failure_mode_deny`, and
the descriptors the route's and virtual host's `rate_limits` actions make of this request, which is
what the service is asked about). The filters' configs may be the typed message or a
`udpa.type.v1.TypedStruct` / `xds.type.v3.TypedStruct` (as Istio's rate limit task writes them)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.ratelimit.v3 import rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message
from udpa.type.v1 import typed_struct_pb2 as udpa_typed_struct_pb2
from xds.type.v3 import typed_struct_pb2 as xds_typed_struct_pb2

from gossamer.xds.types import CLUSTER

LOCAL = "envoy.filters.http.local_ratelimit"
GLOBAL = "envoy.filters.http.ratelimit"
_FRACTION = {0: 100, 1: 10_000, 2: 1_000_000}  # FractionalPercent denominators


def _unpack(any_msg: any_pb2.Any, cls: type[Message]) -> Message | None:
    """The config as CLS: packed directly, or in a TypedStruct naming that type."""
    if any_msg.Is(cls.DESCRIPTOR):
        out = cls()
        any_msg.Unpack(out)
        return out
    for ts_cls in (udpa_typed_struct_pb2.TypedStruct, xds_typed_struct_pb2.TypedStruct):
        if any_msg.Is(ts_cls.DESCRIPTOR):
            ts = ts_cls()
            any_msg.Unpack(ts)
            if ts.type_url.rpartition("/")[2] != cls.DESCRIPTOR.full_name:
                return None
            out = cls()
            try:
                json_format.ParseDict(json_format.MessageToDict(ts.value, preserving_proto_field_name=True), out)
            except json_format.ParseError:
                return None
            return out
    return None


def _percent(fp: Any) -> str:
    value = fp.default_value
    return f"{value.numerator * 100 / _FRACTION.get(value.denominator, 100):g}%"


def _bucket(cfg: local_rate_limit_pb2.LocalRateLimit) -> str:
    b = cfg.token_bucket
    every = f"{b.fill_interval.seconds + b.fill_interval.nanos / 1e9:g}s"
    per_fill = b.tokens_per_fill.value if b.HasField("tokens_per_fill") else 1
    text = f"bucket of {b.max_tokens} tokens, {per_fill} more every {every}"
    enabled = _percent(cfg.filter_enabled) if cfg.HasField("filter_enabled") else "0%"
    enforced = _percent(cfg.filter_enforced) if cfg.HasField("filter_enforced") else "0%"
    text += f"; enabled for {enabled}, enforced for {enforced} of requests"
    headers = [f"{h.header.key}: {h.header.value}" for h in cfg.response_headers_to_add]
    if headers:
        text += f"; a refused request gets {cfg.status.code or 429} with {', '.join(headers)}"
    return text


def _per_filter(
    name: str, cfg: route_pb2.RouteConfiguration, vh: rc.VirtualHost, route: rc.Route
) -> tuple[any_pb2.Any, str] | None:
    for where, holder in (("route", route), ("virtual host", vh), ("route table", cfg)):
        if name in holder.typed_per_filter_config:
            return holder.typed_per_filter_config[name], where
    return None


def _entries(
    rl: rc.RateLimit,
    headers: Mapping[str, str],
    source_ip: str,
    cluster: str | None,
    header_match: Callable[[rc.HeaderMatcher, Mapping[str, str]], tuple[bool, str]],
) -> tuple[list[tuple[str, str]] | None, str]:
    """The descriptor one `rate_limits` entry makes of the request, or None and why it makes none."""
    entries: list[tuple[str, str]] = []
    for action in rl.actions:
        kind = action.WhichOneof("action_specifier")
        if kind == "request_headers":
            a = action.request_headers
            value = headers.get(a.header_name.lower())
            if value is None:
                if a.skip_if_absent:
                    continue
                return None, f"header {a.header_name} absent"
            entries.append((a.descriptor_key, value))
        elif kind == "header_value_match":
            a = action.header_value_match
            matched = all(header_match(h, headers)[0] for h in a.headers)
            expect = a.expect_match.value if a.HasField("expect_match") else True
            if matched != expect:
                return None, f"header_value_match {a.descriptor_value!r}: headers did not match"
            entries.append((a.descriptor_key or "header_match", a.descriptor_value))
        elif kind == "generic_key":
            entries.append((action.generic_key.descriptor_key or "generic_key", action.generic_key.descriptor_value))
        elif kind == "remote_address":
            entries.append(("remote_address", source_ip or "<client address>"))
        elif kind == "destination_cluster":
            entries.append(("destination_cluster", cluster or "<route cluster>"))
        elif kind == "source_cluster":
            entries.append(("source_cluster", "<this proxy's service cluster>"))
        else:
            return None, f"action {kind} is not simulated"
    return entries, ""


def describe(
    resources: Mapping[str, Mapping[str, Message]],
    filters: Sequence[hcm_pb2.HttpFilter],
    cfg: route_pb2.RouteConfiguration,
    vh: rc.VirtualHost,
    route: rc.Route,
    headers: Mapping[str, str],
    source_ip: str,
    cluster: str | None,
    header_match: Callable[[rc.HeaderMatcher, Mapping[str, str]], tuple[bool, str]],
) -> list[str]:
    """One line per rate limit filter in FILTERS (and per descriptor for the global one)."""
    out: list[str] = []
    for f in filters:
        if f.disabled:
            continue
        local = _unpack(f.typed_config, local_rate_limit_pb2.LocalRateLimit) if f.HasField("typed_config") else None
        if isinstance(local, local_rate_limit_pb2.LocalRateLimit):
            override = _per_filter(f.name, cfg, vh, route)
            per = _unpack(override[0], local_rate_limit_pb2.LocalRateLimit) if override else None
            if isinstance(per, local_rate_limit_pb2.LocalRateLimit) and override is not None:
                out.append(f"local rate limit {f.name}: the {override[1]}'s {_bucket(per)}")
            elif local.HasField("token_bucket"):
                out.append(f"local rate limit {f.name}: the filter's {_bucket(local)}")
            else:
                out.append(f"local rate limit {f.name}: no token bucket for this route: not limited")
            continue
        rl = _unpack(f.typed_config, rate_limit_pb2.RateLimit) if f.HasField("typed_config") else None
        if not isinstance(rl, rate_limit_pb2.RateLimit):
            continue
        service = rl.rate_limit_service.grpc_service
        target = service.envoy_grpc.cluster_name if service.HasField("envoy_grpc") else service.google_grpc.target_uri
        have = resources.get(CLUSTER)
        known = (
            ""
            if have is None or not service.HasField("envoy_grpc")
            else (
                " (in this proxy's clusters)" if target in have else " (NOT in this proxy's clusters: every call fails)"
            )
        )
        deny = "refused (failure_mode_deny)" if rl.failure_mode_deny else "let through"
        out.append(
            f"global rate limit {f.name}: domain {rl.domain!r}, service {target}{known}; "
            f"if the service fails the request is {deny}"
        )
        out.extend(f"  {line}" for line in _descriptors(rl, vh, route, headers, source_ip, cluster, header_match))
    return out


def _descriptors(
    rl: rate_limit_pb2.RateLimit,
    vh: rc.VirtualHost,
    route: rc.Route,
    headers: Mapping[str, str],
    source_ip: str,
    cluster: str | None,
    header_match: Callable[[rc.HeaderMatcher, Mapping[str, str]], tuple[bool, str]],
) -> list[str]:
    route_limits: Iterable[rc.RateLimit] = route.route.rate_limits if route.HasField("route") else ()
    sources: list[tuple[str, rc.RateLimit]] = [(f"route rate_limits[{i}]", r) for i, r in enumerate(route_limits)]
    include_vh = not sources or (route.HasField("route") and route.route.include_vh_rate_limits.value)
    if include_vh:
        sources += [(f"virtual host rate_limits[{i}]", r) for i, r in enumerate(vh.rate_limits)]
    elif vh.rate_limits:
        sources.append(("virtual host rate_limits", rc.RateLimit()))  # noted below as not applied
    lines = []
    for where, limit in sources:
        if not limit.actions and where == "virtual host rate_limits":
            lines.append("virtual host rate_limits: not applied (the route has its own)")
            continue
        if limit.stage.value != rl.stage:
            lines.append(f"{where}: stage {limit.stage.value}, not this filter's {rl.stage}")
            continue
        entries, why = _entries(limit, headers, source_ip, cluster, header_match)
        if entries is None:
            lines.append(f"{where}: no descriptor ({why})")
        else:
            lines.append(f"{where}: descriptor " + ", ".join(f"({k}, {v})" for k, v in entries))
    if not sources:
        lines.append("no rate_limits actions on this route or virtual host: the service is not asked")
    return lines
