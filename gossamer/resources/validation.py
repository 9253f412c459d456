"""Semantic checks, after the models have parsed: the rules Istio's validation webhook and
Kubernetes' API server apply (weights, one-of fields, names, ports, ...).

Every validator takes a `Resource` and returns `Finding`s whose `path` is the field path in
the YAML document (camelCase keys, list indices), e.g. ("spec", "http", 0, "route"); the
loader turns them into `Issue`s with the line of that field.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gossamer.mesh import POD_ID_BASE, POD_ID_RANGE, hosts_intersect, is_reserved_id
from gossamer.resources import apps, core, envoy_checks, networking, security
from gossamer.resources import volumes as pod_volumes
from gossamer.resources.base import FieldPath, Resource
from gossamer.resources.duration import parse_duration
from gossamer.resources.regex import re2_problem


@dataclass(frozen=True)
class Finding:
    level: Literal["error", "warning"]
    path: FieldPath
    message: str
    # The line, when the field is inside a value of the document (a ConfigMap's embedded YAML);
    # 0: the line of `path` in the document.
    line: int = 0


class _Report:
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def error(self, path: Sequence[str | int], message: str) -> None:
        self.findings.append(Finding("error", tuple(path), message))

    def warn(self, path: Sequence[str | int], message: str) -> None:
        self.findings.append(Finding("warning", tuple(path), message))


# ---------------------------------------------------------------------------- names and hosts

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_HOST_LABEL = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?$")
_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def is_dns1123_label(s: str) -> bool:
    return len(s) <= 63 and bool(_DNS1123_LABEL.match(s))


def is_dns1123_subdomain(s: str) -> bool:
    return len(s) <= 253 and bool(_DNS1123_SUBDOMAIN.match(s))


def is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def is_cidr_or_ip(s: str) -> bool:
    try:
        ipaddress.ip_network(s, strict=False)
    except ValueError:
        return False
    return True


def host_problem(host: str, allow_ip: bool = True) -> str | None:
    """Why `host` is not a valid (wildcard) DNS name, short name or IP, or None if it is."""
    if host == "*":
        return None
    if allow_ip and is_ip(host):
        return None
    if len(host) > 255:
        return "host name is longer than 255 characters"
    body = host[2:] if host.startswith("*.") else host
    if not body:
        return "empty host name"
    if "*" in body:
        return "a wildcard is only allowed as the first label ('*.example.com')"
    for label in body.split("."):
        if not label or len(label) > 63 or not _HOST_LABEL.match(label):
            return f"invalid host name {host!r}: each label must be 1-63 letters, digits or '-'"
    return None


def check_labels(rep: _Report, path: FieldPath, labels: dict[str, str] | None) -> None:
    for key, value in (labels or {}).items():
        prefix, _, name = key.rpartition("/")
        if prefix and not is_dns1123_subdomain(prefix):
            rep.error(path + (key,), f"label key prefix {prefix!r} must be a DNS-1123 subdomain")
        if len(name) > 63 or not _LABEL_NAME.match(name):
            rep.error(
                path + (key,),
                f"invalid label key {key!r}: must be at most 63 letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit",
            )
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            rep.error(
                path + (key,),
                f"invalid label value {value!r}: must be at most 63 letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit",
            )


def check_metadata(resource: Resource[Any], namespaced: bool, name_rule: str = "subdomain") -> list[Finding]:
    rep = _Report()
    name = resource.metadata.name
    if name_rule == "any":  # kinds read only for analysis (RBAC names like "system:auth-delegator")
        ok = bool(name)
    else:
        ok = is_dns1123_label(name) if name_rule == "label" else is_dns1123_subdomain(name)
    if not ok:
        what = "DNS-1123 label" if name_rule == "label" else "DNS-1123 subdomain"
        rep.error(
            ("metadata", "name"),
            f"invalid name {name!r}: must be a {what} (lowercase letters, digits, '-'"
            + ("" if name_rule == "label" else ", '.'")
            + ", starting and ending with a letter or digit)",
        )
    ns = resource.metadata.namespace
    if namespaced and not is_dns1123_label(ns):
        rep.error(("metadata", "namespace"), f"invalid namespace {ns!r}: must be a DNS-1123 label")
    check_labels(rep, ("metadata", "labels"), resource.metadata.labels)
    return rep.findings


# ---------------------------------------------------------------------------- helpers


def _check_regex(rep: _Report, path: FieldPath, pattern: str) -> None:
    """As Envoy compiles it: RE2 syntax and program size (Python's `re` accepts more)."""
    if pattern == "":
        rep.error(path, "regex must not be empty")
        return
    problem = re2_problem(pattern)
    if problem:
        rep.error(path, f"invalid regex {pattern!r} (RE2 syntax, as Envoy runs it): {problem}")


def _check_string_match(rep: _Report, path: FieldPath, m: networking.StringMatch, allow_empty: bool = False) -> None:
    fields = m.set_fields
    if len(fields) > 1:
        rep.error(path, f"exactly one of exact, prefix, regex may be set (found {', '.join(fields)})")
    elif not fields and not allow_empty:
        rep.error(path, "one of exact, prefix, regex must be set")
    if m.regex is not None:
        _check_regex(rep, path + ("regex",), m.regex)


def _check_percent(rep: _Report, path: FieldPath, p: networking.Percent | None) -> None:
    if p is not None and not 0.0 <= p.value <= 100.0:
        rep.error(path + ("value",), f"percentage {p.value} must be between 0 and 100")


def _check_gateway_ref(rep: _Report, path: FieldPath, gw: str) -> None:
    if gw == "mesh":
        return
    ns, _, name = gw.rpartition("/")
    if ns and not is_dns1123_label(ns):
        rep.error(path, f"invalid gateway {gw!r}: namespace {ns!r} must be a DNS-1123 label")
    if not is_dns1123_subdomain(name):
        rep.error(path, f"invalid gateway {gw!r}: must be 'mesh' or [namespace/]name")


def _check_export_to(rep: _Report, path: FieldPath, export_to: list[str] | None) -> None:
    for i, ns in enumerate(export_to or []):
        if ns not in (".", "*", "~") and not is_dns1123_label(ns):
            rep.error(path + (i,), f"invalid exportTo {ns!r}: must be '.', '*', '~' or a namespace name")


def _check_destination(rep: _Report, path: FieldPath, d: networking.Destination) -> None:
    problem = host_problem(d.host)
    if problem:
        rep.error(path + ("host",), problem)
    if d.subset is not None and not is_dns1123_label(d.subset):
        rep.error(path + ("subset",), f"invalid subset name {d.subset!r}: must be a DNS-1123 label")


def _check_weights(rep: _Report, path: FieldPath, routes: Sequence[Any]) -> None:
    total = 0
    for j, r in enumerate(routes):
        w = r.weight or 0
        if w < 0:
            rep.error(path + (j, "weight"), f"weight {w} must not be negative")
        total += w
    if len(routes) > 1:
        if total != 100:
            rep.error(path, f"weights sum to {total}, must be 100")
    elif len(routes) == 1 and routes[0].weight not in (None, 0, 100):
        rep.warn(
            path + (0, "weight"),
            f"weight {routes[0].weight} on the only destination is ignored: it receives all traffic",
        )


def _duration(value: str | None) -> float | None:
    return None if value is None else parse_duration(value)


# ---------------------------------------------------------------------------- VirtualService


def validate_virtual_service(res: Resource[Any]) -> list[Finding]:
    rep = _Report()
    spec: networking.VirtualServiceSpec = res.spec
    sp: FieldPath = ("spec",)
    is_delegate = not spec.hosts
    if is_delegate:
        rep.warn(
            sp + ("hosts",),
            "no hosts: this is a delegate VirtualService, used only where another VirtualService delegates to it",
        )
        if spec.gateways:
            rep.error(sp + ("gateways",), "a delegate VirtualService (no hosts) must not set gateways")
        if spec.tcp:
            rep.error(sp + ("tcp",), "a delegate VirtualService (no hosts) must not have tcp routes")
        if spec.tls:
            rep.error(sp + ("tls",), "a delegate VirtualService (no hosts) must not have tls routes")
    for i, host in enumerate(spec.hosts):
        problem = host_problem(host)
        if problem:
            rep.error(sp + ("hosts", i), problem)
        elif host == "*" and (not spec.gateways or "mesh" in spec.gateways):
            rep.error(sp + ("hosts", i), "wildcard host '*' is not allowed for VirtualServices bound to the mesh")
    for i, gw in enumerate(spec.gateways):
        _check_gateway_ref(rep, sp + ("gateways", i), gw)
    _check_export_to(rep, sp + ("exportTo",), spec.export_to)
    if not spec.http and not spec.tcp and not spec.tls:
        rep.error(sp, "at least one of http, tcp or tls must be set")

    for i, route in enumerate(spec.http):
        _check_http_route(rep, sp + ("http", i), route, is_delegate)

    for i, tcp in enumerate(spec.tcp):
        p = sp + ("tcp", i)
        for k, m in enumerate(tcp.match or []):
            _check_l4_match(rep, p + ("match", k), m)
        if not tcp.route:
            rep.error(p + ("route",), "a tcp route needs at least one destination")
        else:
            for j, d in enumerate(tcp.route):
                _check_destination(rep, p + ("route", j, "destination"), d.destination)
            _check_weights(rep, p + ("route",), tcp.route)

    for i, tls in enumerate(spec.tls):
        p = sp + ("tls", i)
        if not tls.match:
            rep.error(p + ("match",), "a tls route needs at least one match with sniHosts")
        for k, tm in enumerate(tls.match):
            mp = p + ("match", k)
            if not tm.sni_hosts:
                rep.error(mp + ("sniHosts",), "sniHosts must not be empty")
            for s, sni in enumerate(tm.sni_hosts):
                envoy_checks.sni_host(rep.error, mp + ("sniHosts", s), sni)
                problem = None if sni == "*" else host_problem(sni, allow_ip=False)
                if problem:
                    rep.error(mp + ("sniHosts", s), problem)
                elif spec.hosts and not any(hosts_intersect(h, sni) for h in spec.hosts):
                    rep.error(
                        mp + ("sniHosts", s),
                        f"sniHost {sni!r} is not covered by any of the VirtualService hosts",
                    )
            for g, gw in enumerate(tm.gateways or []):
                _check_gateway_ref(rep, mp + ("gateways", g), gw)
            for c, cidr in enumerate(tm.destination_subnets or []):
                if not is_cidr_or_ip(cidr):
                    rep.error(mp + ("destinationSubnets", c), f"invalid IP or CIDR {cidr!r}")
        if not tls.route:
            rep.error(p + ("route",), "a tls route needs at least one destination")
        else:
            for j, d in enumerate(tls.route):
                _check_destination(rep, p + ("route", j, "destination"), d.destination)
            _check_weights(rep, p + ("route",), tls.route)
    return rep.findings


def _check_l4_match(rep: _Report, path: FieldPath, m: networking.L4MatchAttributes) -> None:
    for c, cidr in enumerate(m.destination_subnets or []):
        if not is_cidr_or_ip(cidr):
            rep.error(path + ("destinationSubnets", c), f"invalid IP or CIDR {cidr!r}")
    if m.source_subnet is not None and not is_cidr_or_ip(m.source_subnet):
        rep.error(path + ("sourceSubnet",), f"invalid IP or CIDR {m.source_subnet!r}")
    for g, gw in enumerate(m.gateways or []):
        _check_gateway_ref(rep, path + ("gateways", g), gw)


def _check_http_route(rep: _Report, p: FieldPath, r: networking.HTTPRoute, in_delegate: bool) -> None:
    actions = [
        name
        for name, value in (
            ("route", r.route),
            ("redirect", r.redirect),
            ("directResponse", r.direct_response),
            ("delegate", r.delegate),
        )
        if value
    ]
    if not actions:
        rep.error(p, "HTTP route, redirect, directResponse or delegate is required")
    elif len(actions) > 1:
        rep.error(
            p + (actions[1],),
            f"only one of route, redirect, directResponse, delegate may be set (found {', '.join(actions)})",
        )

    for k, m in enumerate(r.match or []):
        _check_http_match(rep, p + ("match", k), m)

    if r.route:
        for j, d in enumerate(r.route):
            _check_destination(rep, p + ("route", j, "destination"), d.destination)
            envoy_checks.headers(rep.error, p + ("route", j, "headers"), d.headers)
        _check_weights(rep, p + ("route",), r.route)
    envoy_checks.headers(rep.error, p + ("headers",), r.headers)
    for field, value in (
        ("rewrite", "uri"),
        ("rewrite", "authority"),
        ("redirect", "uri"),
        ("redirect", "authority"),
        ("redirect", "scheme"),
    ):
        text = getattr(getattr(r, field), value, None) if getattr(r, field) is not None else None
        if isinstance(text, str):
            envoy_checks.header_value(rep.error, p + (field, value), text)

    if r.delegate is not None:
        if in_delegate:
            rep.error(p + ("delegate",), "a delegate VirtualService (no hosts) cannot delegate again")
        if not is_dns1123_subdomain(r.delegate.name):
            rep.error(p + ("delegate", "name"), f"invalid VirtualService name {r.delegate.name!r}")
        if r.delegate.namespace is not None and not is_dns1123_label(r.delegate.namespace):
            rep.error(p + ("delegate", "namespace"), f"invalid namespace {r.delegate.namespace!r}")

    if r.redirect is not None:
        if r.rewrite is not None:
            rep.error(p + ("rewrite",), "rewrite cannot be used together with redirect")
        code = r.redirect.redirect_code
        if code is not None and code not in (301, 302, 303, 307, 308):
            rep.error(
                p + ("redirect", "redirectCode"),
                f"redirectCode {code} must be one of 301, 302, 303, 307, 308",
            )
        if r.redirect.port is not None and r.redirect.derive_port is not None:
            rep.error(p + ("redirect",), "only one of port, derivePort may be set")

    if r.direct_response is not None:
        dr = r.direct_response
        if not 200 <= dr.status <= 599:
            rep.error(p + ("directResponse", "status"), f"status {dr.status} must be in the range 200-599")
        if dr.body is not None and dr.body.string is not None and dr.body.bytes is not None:
            rep.error(p + ("directResponse", "body"), "only one of string, bytes may be set")

    if r.rewrite is not None:
        rw = r.rewrite
        if rw.uri is not None and rw.uri_regex_rewrite is not None:
            rep.error(p + ("rewrite",), "only one of uri, uriRegexRewrite may be set")
        if rw.uri_regex_rewrite is not None:
            _check_regex(rep, p + ("rewrite", "uriRegexRewrite", "match"), rw.uri_regex_rewrite.match)
        if rw.uri is None and rw.authority is None and rw.uri_regex_rewrite is None:
            rep.error(p + ("rewrite",), "rewrite must specify uri, uriRegexRewrite or authority")

    if r.retries is not None:
        rt = r.retries
        if rt.attempts is not None and rt.attempts < 0:
            rep.error(p + ("retries", "attempts"), f"attempts {rt.attempts} must not be negative")
        per_try = _duration(rt.per_try_timeout)
        timeout = _duration(r.timeout)
        if per_try is not None and timeout is not None and timeout > 0 and per_try > timeout:
            rep.warn(
                p + ("retries", "perTryTimeout"),
                f"perTryTimeout {rt.per_try_timeout} is longer than the route timeout {r.timeout}",
            )
        if rt.retry_on:
            for cond in rt.retry_on.split(","):
                cond = cond.strip()
                if not cond:
                    rep.error(p + ("retries", "retryOn"), "empty retry condition")

    if r.fault is not None:
        f = r.fault
        fp = p + ("fault",)
        if f.delay is None and f.abort is None:
            rep.error(fp, "fault injection needs a delay and/or an abort")
        if f.delay is not None:
            delay = f.delay
            if (delay.fixed_delay is None) == (delay.exponential_delay is None):
                rep.error(fp + ("delay",), "exactly one of fixedDelay, exponentialDelay must be set")
            elif delay.fixed_delay is not None and parse_duration(delay.fixed_delay) < 0.001:
                rep.error(fp + ("delay", "fixedDelay"), "fixedDelay must be at least 1ms")
            _check_percent(rep, fp + ("delay", "percentage"), delay.percentage)
            if delay.percent is not None and not 0 <= delay.percent <= 100:
                rep.error(fp + ("delay", "percent"), f"percent {delay.percent} must be between 0 and 100")
        if f.abort is not None:
            a = f.abort
            kinds = [
                n
                for n, v in (
                    ("httpStatus", a.http_status),
                    ("grpcStatus", a.grpc_status),
                    ("http2Error", a.http2_error),
                )
                if v is not None
            ]
            if len(kinds) != 1:
                rep.error(fp + ("abort",), "exactly one of httpStatus, grpcStatus, http2Error must be set")
            if a.http_status is not None and not 200 <= a.http_status <= 599:
                rep.error(fp + ("abort", "httpStatus"), f"httpStatus {a.http_status} must be in the range 200-599")
            _check_percent(rep, fp + ("abort", "percentage"), a.percentage)

    if r.mirror is not None:
        _check_destination(rep, p + ("mirror",), r.mirror)
    for j, mp in enumerate(r.mirrors or []):
        _check_destination(rep, p + ("mirrors", j, "destination"), mp.destination)
        _check_percent(rep, p + ("mirrors", j, "percentage"), mp.percentage)
    _check_percent(rep, p + ("mirrorPercentage",), r.mirror_percentage)
    if r.mirror_percent is not None:
        rep.warn(p + ("mirrorPercent",), "mirrorPercent is deprecated: use mirrorPercentage")
        if not 0 <= r.mirror_percent <= 100:
            rep.error(p + ("mirrorPercent",), f"mirrorPercent {r.mirror_percent} must be between 0 and 100")
    if (r.mirror_percentage is not None or r.mirror_percent is not None) and r.mirror is None:
        rep.warn(p + ("mirrorPercentage",), "has no effect without mirror")

    if r.cors_policy is not None:
        cp = r.cors_policy
        if cp.allow_origin is not None:
            rep.warn(p + ("corsPolicy", "allowOrigin"), "allowOrigin is deprecated: use allowOrigins")
        for j, o in enumerate(cp.allow_origins or []):
            _check_string_match(rep, p + ("corsPolicy", "allowOrigins", j), o)
        for field in ("allow_headers", "expose_headers", "allow_methods"):
            for j, value in enumerate(getattr(cp, field, None) or []):
                if not value:
                    rep.error(p + ("corsPolicy", _camel(field), j), "must not be empty")
                else:
                    envoy_checks.header_value(rep.error, p + ("corsPolicy", _camel(field), j), value)


def _check_http_match(rep: _Report, p: FieldPath, m: networking.HTTPMatchRequest) -> None:
    for field, value in (
        ("uri", m.uri),
        ("scheme", m.scheme),
        ("method", m.method),
        ("authority", m.authority),
    ):
        if value is not None:
            _check_string_match(rep, p + (field,), value)
    for field, headers in (("headers", m.headers), ("withoutHeaders", m.without_headers)):
        for name, sm in (headers or {}).items():
            envoy_checks.header_match_name(rep.error, p + (field, name), name)
            _check_string_match(rep, p + (field, name), sm, allow_empty=True)
    for name, sm in (m.query_params or {}).items():
        _check_string_match(rep, p + ("queryParams", name), sm, allow_empty=True)
        if sm.prefix is not None:
            rep.warn(p + ("queryParams", name, "prefix"), "prefix matching of query parameters is not supported")
    for g, gw in enumerate(m.gateways or []):
        _check_gateway_ref(rep, p + ("gateways", g), gw)
    if m.source_namespace is not None and not is_dns1123_label(m.source_namespace):
        rep.error(p + ("sourceNamespace",), f"invalid namespace {m.source_namespace!r}")
    if m.source_labels:
        check_labels(rep, p + ("sourceLabels",), m.source_labels)


# ---------------------------------------------------------------------------- DestinationRule


def validate_destination_rule(res: Resource[Any]) -> list[Finding]:
    rep = _Report()
    spec: networking.DestinationRuleSpec = res.spec
    sp: FieldPath = ("spec",)
    if not spec.host:
        rep.error(sp + ("host",), "host is required")
    else:
        problem = host_problem(spec.host)
        if problem:
            rep.error(sp + ("host",), problem)
    if spec.traffic_policy is not None:
        _check_traffic_policy(rep, sp + ("trafficPolicy",), spec.traffic_policy)
    seen: dict[str, int] = {}
    for i, subset in enumerate(spec.subsets):
        p = sp + ("subsets", i)
        if not is_dns1123_label(subset.name):
            rep.error(p + ("name",), f"invalid subset name {subset.name!r}: must be a DNS-1123 label")
        if subset.name in seen:
            rep.error(p + ("name",), f"duplicate subset name {subset.name!r} (also subsets[{seen[subset.name]}])")
        seen.setdefault(subset.name, i)
        check_labels(rep, p + ("labels",), subset.labels)
        if subset.traffic_policy is not None:
            _check_traffic_policy(rep, p + ("trafficPolicy",), subset.traffic_policy)
    _check_export_to(rep, sp + ("exportTo",), spec.export_to)
    if spec.workload_selector is not None:
        check_labels(rep, sp + ("workloadSelector", "matchLabels"), spec.workload_selector.match_labels)
    return rep.findings


def _check_traffic_policy(rep: _Report, p: FieldPath, tp: Any) -> None:
    """Checks a TrafficPolicy or a PortTrafficPolicy."""
    if tp.load_balancer is not None:
        _check_load_balancer(rep, p + ("loadBalancer",), tp.load_balancer)
        envoy_checks.load_balancer(rep.error, p + ("loadBalancer",), tp.load_balancer)
    if tp.outlier_detection is not None:
        _check_outlier(rep, p + ("outlierDetection",), tp.outlier_detection)
    if tp.connection_pool is not None:
        cp = tp.connection_pool
        if cp.tcp is not None and cp.tcp.connect_timeout is not None:
            if parse_duration(cp.tcp.connect_timeout) < 0.001:
                rep.error(p + ("connectionPool", "tcp", "connectTimeout"), "connectTimeout must be at least 1ms")
        if cp.tcp is None and cp.http is None:
            rep.warn(p + ("connectionPool",), "empty connectionPool: set tcp and/or http")
        if cp.tcp is not None and cp.tcp.tcp_keepalive is not None:
            ka = cp.tcp.tcp_keepalive
            for field in ("time", "interval"):
                envoy_checks.duration_seconds_in_uint32(
                    rep.error, p + ("connectionPool", "tcp", "tcpKeepalive", field), getattr(ka, field)
                )
    if tp.tls is not None:
        _check_client_tls(rep, p + ("tls",), tp.tls)
        envoy_checks.client_tls_files(rep.error, p + ("tls",), tp.tls)
    if isinstance(tp, networking.TrafficPolicy):
        seen: set[int] = set()
        for i, pls in enumerate(tp.port_level_settings or []):
            pp = p + ("portLevelSettings", i)
            if pls.port is None:
                rep.error(pp + ("port",), "port is required in portLevelSettings")
            elif pls.port.number in seen:
                rep.error(pp + ("port", "number"), f"duplicate port {pls.port.number} in portLevelSettings")
            else:
                seen.add(pls.port.number)
            _check_traffic_policy(rep, pp, pls)


def _check_load_balancer(rep: _Report, p: FieldPath, lb: networking.LoadBalancerSettings) -> None:
    if lb.simple is not None and lb.consistent_hash is not None:
        rep.error(p, "only one of simple, consistentHash may be set")
    if lb.warmup_duration_secs is not None and lb.warmup is not None:
        rep.error(p, "only one of warmupDurationSecs, warmup may be set")
    ch = lb.consistent_hash
    if ch is not None:
        cp = p + ("consistentHash",)
        keys = [
            n
            for n, v in (
                ("httpHeaderName", ch.http_header_name),
                ("httpCookie", ch.http_cookie),
                ("useSourceIp", ch.use_source_ip),
                ("httpQueryParameterName", ch.http_query_parameter_name),
            )
            if v not in (None, False)
        ]
        if len(keys) != 1:
            rep.error(
                cp,
                "exactly one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName must be set"
                + (f" (found {', '.join(keys)})" if keys else ""),
            )
        algos = [
            n
            for n, v in (
                ("ringHash", ch.ring_hash),
                ("maglev", ch.maglev),
                ("minimumRingSize", ch.minimum_ring_size),
            )
            if v is not None
        ]
        if len(algos) > 1:
            rep.error(cp, f"only one of ringHash, maglev, minimumRingSize may be set (found {', '.join(algos)})")
        if ch.minimum_ring_size is not None:
            rep.warn(cp + ("minimumRingSize",), "deprecated: use ringHash.minimumRingSize")
        if ch.http_cookie is not None and not ch.http_cookie.name:
            rep.error(cp + ("httpCookie", "name"), "cookie name is required")
    loc = lb.locality_lb_setting
    if loc is not None:
        lp = p + ("localityLbSetting",)
        if loc.distribute and loc.failover:
            rep.error(lp, "only one of distribute, failover may be set")
        for i, d in enumerate(loc.distribute or []):
            total = sum((d.to or {}).values())
            if total != 100:
                rep.error(lp + ("distribute", i, "to"), f"weights sum to {total}, must be 100")


def _check_outlier(rep: _Report, p: FieldPath, od: networking.OutlierDetection) -> None:
    for field, value in (
        ("maxEjectionPercent", od.max_ejection_percent),
        ("minHealthPercent", od.min_health_percent),
    ):
        if value is not None and not 0 <= value <= 100:
            rep.error(p + (field,), f"{field} {value} must be between 0 and 100")
    for field, dur in (("interval", od.interval), ("baseEjectionTime", od.base_ejection_time)):
        if dur is not None and parse_duration(dur) < 0.001:
            rep.error(p + (field,), f"{field} must be at least 1ms")
    if od.consecutive_local_origin_failures and not od.split_external_local_origin_errors:
        rep.error(
            p + ("consecutiveLocalOriginFailures",),
            "consecutiveLocalOriginFailures requires splitExternalLocalOriginErrors: true",
        )
    if od.consecutive_errors is not None:
        rep.warn(p + ("consecutiveErrors",), "deprecated: use consecutive5xxErrors / consecutiveGatewayErrors")


def _check_client_tls(rep: _Report, p: FieldPath, tls: networking.ClientTLSSettings) -> None:
    if tls.mode == "ISTIO_MUTUAL":
        for field, value in (
            ("clientCertificate", tls.client_certificate),
            ("privateKey", tls.private_key),
            ("caCertificates", tls.ca_certificates),
            ("credentialName", tls.credential_name),
        ):
            if value:
                rep.error(p + (field,), f"{field} must not be set with mode ISTIO_MUTUAL")
    elif tls.mode == "MUTUAL" and not tls.credential_name:
        if not tls.client_certificate:
            rep.error(p + ("clientCertificate",), "clientCertificate is required with mode MUTUAL")
        if not tls.private_key:
            rep.error(p + ("privateKey",), "privateKey is required with mode MUTUAL")


# ---------------------------------------------------------------------------- Gateway

_GATEWAY_PROTOCOLS = {"HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "TCP", "TLS", "REDIS", "MYSQL"}


def _check_namespaced_host(rep: _Report, path: FieldPath, host: str, ns_required: bool) -> None:
    ns, slash, name = host.partition("/")
    if not slash:
        if ns_required:
            rep.error(path, f"host {host!r} must be of the form namespace/host ('*/' or './' for any/this)")
            return
        ns, name = "", host
    if slash and ns not in ("*", ".", "~") and not is_dns1123_label(ns):
        rep.error(path, f"invalid namespace {ns!r} in host {host!r}")
    problem = host_problem(name)
    if problem:
        rep.error(path, problem)


def validate_gateway(res: Resource[Any]) -> list[Finding]:
    rep = _Report()
    spec: networking.GatewaySpec = res.spec
    sp: FieldPath = ("spec",)
    check_labels(rep, sp + ("selector",), spec.selector)
    if not spec.servers:  # Istio accepts it; it opens no port
        rep.warn(sp + ("servers",), "a Gateway without servers opens no port")
    names: dict[str, int] = {}
    passthrough: dict[tuple[int, str], int] = {}
    for i, server in enumerate(spec.servers):
        p = sp + ("servers", i)
        proto = server.port.protocol.upper()
        if proto not in _GATEWAY_PROTOCOLS:
            rep.error(
                p + ("port", "protocol"),
                f"unknown protocol {server.port.protocol!r}; expected one of {', '.join(sorted(_GATEWAY_PROTOCOLS))}",
            )
        if not server.hosts:
            rep.error(p + ("hosts",), "a server needs at least one host")
        for h, host in enumerate(server.hosts):
            _check_namespaced_host(rep, p + ("hosts", h), host, ns_required=False)
        if server.name is not None:
            if server.name in names:
                rep.error(
                    p + ("name",),
                    f"duplicate server name {server.name!r} (also servers[{names[server.name]}])",
                )
            names.setdefault(server.name, i)
        envoy_checks.reserved_port(rep.error, p + ("port", "number"), server.port.number)
        envoy_checks.reserved_port(rep.error, p + ("port", "targetPort"), server.port.target_port, "targetPort")
        if server.tls is not None:
            envoy_checks.server_tls(rep.error, p + ("tls",), server.tls)
            if server.tls.mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH"):
                for h, host in enumerate(server.hosts):
                    sni = host.partition("/")[2] or host
                    key = (server.port.number, sni)
                    if key in passthrough:
                        rep.error(
                            p + ("hosts", h),
                            f"host {sni!r} on port {server.port.number} is already a "
                            f"passthrough server (servers[{passthrough[key]}]): Envoy "
                            "cannot tell two filter chains with the same SNI apart",
                        )
                    passthrough.setdefault(key, i)
        if server.bind is not None and not is_ip(server.bind) and not server.bind.startswith("unix://"):
            rep.error(p + ("bind",), f"bind {server.bind!r} must be an IP address or unix:// socket")
        tls = server.tls
        if proto in ("HTTPS", "TLS"):
            if tls is None:
                rep.error(p + ("tls",), f"server with protocol {proto} needs tls settings")
        if tls is not None:
            tp = p + ("tls",)
            if tls.https_redirect and proto != "HTTP":
                rep.warn(tp + ("httpsRedirect",), "httpsRedirect only has an effect on HTTP servers")
            mode = tls.mode or ("SIMPLE" if proto in ("HTTPS", "TLS") and not tls.https_redirect else None)
            if mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL") and not (
                tls.credential_name or tls.credential_names or tls.tls_certificates
            ):
                if not tls.server_certificate:
                    rep.error(
                        tp + ("serverCertificate",),
                        f"mode {mode} needs credentialName or serverCertificate and privateKey",
                    )
                if not tls.private_key:
                    rep.error(
                        tp + ("privateKey",),
                        f"mode {mode} needs credentialName or serverCertificate and privateKey",
                    )
                if mode in ("MUTUAL", "OPTIONAL_MUTUAL") and not tls.ca_certificates:
                    rep.error(tp + ("caCertificates",), f"mode {mode} needs caCertificates or credentialName")
    return rep.findings


# ---------------------------------------------------------------------------- ServiceEntry, Sidecar


def validate_service_entry(res: Resource[Any]) -> list[Finding]:
    rep = _Report()
    spec: networking.ServiceEntrySpec = res.spec
    sp: FieldPath = ("spec",)
    if not spec.hosts:
        rep.error(sp + ("hosts",), "a ServiceEntry needs at least one host")
    for i, host in enumerate(spec.hosts):
        if host == "*":
            rep.error(sp + ("hosts", i), "wildcard host '*' is not allowed in a ServiceEntry")
            continue
        problem = host_problem(host, allow_ip=False)
        if problem:
            rep.error(sp + ("hosts", i), problem)
    for i, addr in enumerate(spec.addresses or []):
        if not is_cidr_or_ip(addr):
            rep.error(sp + ("addresses", i), f"invalid IP or CIDR {addr!r}")
    if not spec.ports and spec.resolution != "NONE":
        rep.warn(sp + ("ports",), "no ports")
    seen_names: dict[str, int] = {}
    seen_numbers: dict[int, int] = {}
    for i, port in enumerate(spec.ports):
        p = sp + ("ports", i)
        if port.name is not None:
            if not is_dns1123_label(port.name):
                rep.error(p + ("name",), f"invalid port name {port.name!r}: must be a DNS-1123 label")
            if port.name in seen_names:
                rep.error(p + ("name",), f"duplicate port name {port.name!r}")
            seen_names.setdefault(port.name, i)
        envoy_checks.reserved_port(rep.error, p + ("number",), port.number)
        if port.number in seen_numbers:
            rep.error(p + ("number",), f"duplicate port number {port.number}")
        seen_numbers.setdefault(port.number, i)
    if spec.workload_selector is not None and spec.endpoints:
        rep.error(sp + ("workloadSelector",), "only one of workloadSelector, endpoints may be set")
    if spec.resolution == "NONE" and spec.endpoints:
        rep.error(sp + ("endpoints",), "endpoints must not be set with resolution NONE")
    for i, ep in enumerate(spec.endpoints or []):
        p = sp + ("endpoints", i)
        _check_workload_entry(rep, p, ep)
        if (
            ep.address
            and spec.resolution == "STATIC"
            and not is_ip(ep.address)
            and not ep.address.startswith("unix://")
        ):
            rep.error(p + ("address",), f"endpoint address {ep.address!r} must be an IP with resolution STATIC")
        for pname in ep.ports or {}:
            if spec.ports and pname not in seen_names:
                rep.error(p + ("ports", pname), f"port name {pname!r} is not one of the ServiceEntry's ports")
    if spec.resolution == "STATIC" and not spec.endpoints and spec.workload_selector is None:
        rep.error(sp + ("endpoints",), "resolution STATIC needs endpoints or a workloadSelector")
    if spec.resolution in ("DNS", "DNS_ROUND_ROBIN") and not spec.endpoints:
        for i, host in enumerate(spec.hosts):
            if host.startswith("*"):
                rep.error(
                    sp + ("hosts", i),
                    f"wildcard host {host!r} needs endpoints with resolution {spec.resolution}",
                )
    _check_export_to(rep, sp + ("exportTo",), spec.export_to)
    return rep.findings


def _check_workload_entry(rep: _Report, p: FieldPath, we: networking.WorkloadEntrySpec) -> None:
    if not we.address and not we.network:
        rep.error(p + ("address",), "address is required (unless network is set)")
    elif we.address and not we.address.startswith("unix://") and host_problem(we.address) is not None:
        rep.error(p + ("address",), f"address {we.address!r} must be an IP, a host name or unix:// socket")
    if we.labels:
        check_labels(rep, p + ("labels",), we.labels)


def validate_workload_entry(res: Resource[Any]) -> list[Finding]:
    rep = _Report()
    _check_workload_entry(rep, ("spec",), res.spec)
    return rep.findings


def validate_sidecar(res: Resource[Any]) -> list[Finding]:
    rep = _Report()
    spec: networking.SidecarSpec = res.spec
    sp: FieldPath = ("spec",)
    if not (spec.egress or spec.ingress or spec.outbound_traffic_policy or spec.inbound_connection_pool):
        rep.error(sp, "empty Sidecar: set egress, ingress, outboundTrafficPolicy or inboundConnectionPool")
    if spec.workload_selector is not None:
        check_labels(rep, sp + ("workloadSelector", "labels"), spec.workload_selector.labels)
    for i, eg in enumerate(spec.egress or []):
        p = sp + ("egress", i)
        if not eg.hosts:
            rep.error(p + ("hosts",), "egress listener needs at least one host")
        for h, host in enumerate(eg.hosts):
            _check_namespaced_host(rep, p + ("hosts", h), host, ns_required=True)
    ports: dict[int, int] = {}
    for i, ing in enumerate(spec.ingress or []):
        p = sp + ("ingress", i)
        envoy_checks.reserved_port(rep.error, p + ("port", "number"), ing.port.number)
        if ing.port.number in ports:
            rep.error(p + ("port", "number"), f"duplicate ingress port {ing.port.number}")
        ports.setdefault(ing.port.number, i)
    return rep.findings


_EF_LISTENER_CLASS = ("LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER")
_EF_ROUTE_CLASS = ("ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE")


def validate_envoy_filter(res: Resource[Any]) -> list[Finding]:
    from gossamer.resources.envoyfilter_values import OPERATIONS, PatchValueError, value_to_proto

    rep = _Report()
    spec: networking.EnvoyFilterSpec = res.spec
    sp: FieldPath = ("spec",)
    if spec.workload_selector is not None:
        check_labels(rep, sp + ("workloadSelector", "labels"), spec.workload_selector.labels)
        if spec.target_refs:
            rep.error(sp + ("targetRefs",), "set either workloadSelector or targetRefs, not both")
    for i, cp in enumerate(spec.config_patches):
        p = sp + ("configPatches", i)
        if cp.apply_to == "INVALID":
            rep.error(p + ("applyTo",), "applyTo is required")
            continue
        if cp.patch is None:
            rep.error(p, "missing patch")
            continue
        op = cp.patch.operation
        if op == "INVALID":
            rep.error(p + ("patch", "operation"), "missing patch operation")
            continue
        if cp.apply_to not in OPERATIONS:
            rep.error(p + ("applyTo",), f"applyTo {cp.apply_to} is not supported by this version")
            continue
        if op not in OPERATIONS[cp.apply_to]:
            rep.error(
                p + ("patch", "operation"),
                f"operation {op} is not valid for applyTo {cp.apply_to}"
                f" (valid: {', '.join(sorted(OPERATIONS[cp.apply_to]))})",
            )
            continue
        m = cp.match
        if m is not None:
            if cp.apply_to in _EF_LISTENER_CLASS and (m.route_configuration or m.cluster):
                rep.error(p + ("match",), f"applyTo {cp.apply_to} takes a listener match")
            if cp.apply_to in _EF_ROUTE_CLASS and (m.listener or m.cluster):
                rep.error(p + ("match",), f"applyTo {cp.apply_to} takes a routeConfiguration match")
            if cp.apply_to == "CLUSTER" and (m.listener or m.route_configuration):
                rep.error(p + ("match",), "applyTo CLUSTER takes a cluster match")
            if m.proxy and m.proxy.proxy_version:
                _check_regex(rep, p + ("match", "proxy", "proxyVersion"), m.proxy.proxy_version)
        if op == "REMOVE":
            continue
        if cp.patch.value is None:
            rep.error(p + ("patch", "value"), f"operation {op} needs a value")
            continue
        try:
            value_to_proto(cp.apply_to, cp.patch.value)
        except PatchValueError as e:
            rep.error(p + ("patch", "value"), str(e))
    return rep.findings


# ---------------------------------------------------------------------------- security / telemetry


def validate_peer_authentication(res: Resource[Any]) -> list[Finding]:
    rep = _Report()
    spec: security.PeerAuthenticationSpec = res.spec
    if spec.port_level_mtls and (spec.selector is None or not spec.selector.match_labels):
        rep.error(("spec", "portLevelMtls"), "portLevelMtls requires a workload selector")
    for port in spec.port_level_mtls or {}:
        if not 1 <= port <= 65535:
            rep.error(("spec", "portLevelMtls", port), f"port {port} must be in the range 1-65535")
    return rep.findings


def _check_target(rep: _Report, spec: Any) -> None:
    set_ = [
        n
        for n, v in (
            ("selector", spec.selector),
            ("targetRef", spec.target_ref),
            ("targetRefs", spec.target_refs),
        )
        if v
    ]
    if len(set_) > 1:
        rep.error(
            ("spec", set_[1]),
            f"only one of selector, targetRef, targetRefs may be set (found {', '.join(set_)})",
        )


def validate_authorization_policy(res: Resource[Any]) -> list[Finding]:
    rep = _Report()
    spec: security.AuthorizationPolicySpec = res.spec
    _check_target(rep, spec)
    if spec.action == "CUSTOM" and spec.provider is None:
        rep.error(("spec", "provider"), "action CUSTOM needs a provider")
    if spec.provider is not None and spec.action != "CUSTOM":
        rep.error(("spec", "provider"), "provider is only allowed with action CUSTOM")
    for i, rule in enumerate(spec.rules or []):
        envoy_checks.authorization_rule(rep.error, ("spec", "rules", i), rule)
        for j, cond in enumerate(rule.when or []):
            if not cond.values and not cond.not_values:
                rep.error(("spec", "rules", i, "when", j), "condition needs values or notValues")
    return rep.findings


def validate_request_authentication(res: Resource[Any]) -> list[Finding]:
    rep = _Report()
    spec: security.RequestAuthenticationSpec = res.spec
    _check_target(rep, spec)
    for i, rule in enumerate(spec.jwt_rules or []):
        if not rule.issuer:
            rep.error(("spec", "jwtRules", i, "issuer"), "issuer is required")
        envoy_checks.jwt_rule(rep.error, ("spec", "jwtRules", i), rule)
    return rep.findings


def validate_telemetry(res: Resource[Any]) -> list[Finding]:
    from pydantic import ValidationError

    from gossamer.resources.telemetry import ENTRY_MODELS

    rep = _Report()
    _check_target(rep, res.spec)
    for field, model in ENTRY_MODELS.items():
        for i, entry in enumerate(getattr(res.spec, _snake(field)) or []):
            try:
                model.model_validate(entry)
            except ValidationError as e:
                for err in e.errors()[:20]:
                    loc = tuple(p for p in err["loc"] if isinstance(p, int) or p in _known_keys(entry, err["loc"]))
                    message = (
                        f"unknown field {err['loc'][-1]!r}"
                        if err["type"] == "extra_forbidden"
                        else "required field is missing"
                        if err["type"] == "missing"
                        else str(err["msg"]).removeprefix("Value error, ")
                    )
                    shown = loc[:-1] if err["type"] == "extra_forbidden" else loc
                    rep.error(("spec", field, i) + shown, message)
    return rep.findings


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _known_keys(entry: Any, loc: Sequence[Any]) -> set[str]:
    """The keys present along `loc` in `entry` (pydantic's locations also name union members)."""
    keys: set[str] = set()
    cur = entry
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            keys.add(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        elif isinstance(part, str):
            keys.add(part)  # a missing or unknown key: named at the end
            break
    return keys


# ---------------------------------------------------------------------------- core / apps


def validate_service(res: Resource[Any]) -> list[Finding]:
    rep = _Report()
    spec: core.ServiceSpec = res.spec
    sp: FieldPath = ("spec",)
    if spec.type == "ExternalName":
        if not spec.external_name:
            rep.error(sp + ("externalName",), "externalName is required for type ExternalName")
    elif not spec.ports and not spec.headless:  # Kubernetes accepts it (e.g. selector-less, for Endpoints)
        rep.warn(sp + ("ports",), "a Service without ports receives no traffic")
    if spec.cluster_ip not in (None, "", "None") and not is_ip(spec.cluster_ip):
        rep.error(sp + ("clusterIP",), f"clusterIP {spec.cluster_ip!r} must be 'None' or an IP address")
    names: dict[str, int] = {}
    pairs: dict[tuple[int, str], int] = {}
    for i, port in enumerate(spec.ports):
        p = sp + ("ports", i)
        if port.name is None or port.name == "":
            if len(spec.ports) > 1:
                rep.error(p + ("name",), "port name is required when a Service has more than one port")
        else:
            if not is_dns1123_label(port.name):
                rep.error(p + ("name",), f"invalid port name {port.name!r}: must be a DNS-1123 label")
            if port.name in names:
                rep.error(p + ("name",), f"duplicate port name {port.name!r} (also ports[{names[port.name]}])")
            names.setdefault(port.name, i)
        if port.protocol not in ("TCP", "UDP", "SCTP"):
            rep.error(p + ("protocol",), f"protocol must be TCP, UDP or SCTP, got {port.protocol!r}")
        envoy_checks.reserved_port(rep.error, p + ("port",), port.port)
        if isinstance(port.target_port, int) or (isinstance(port.target_port, str) and port.target_port.isdigit()):
            envoy_checks.reserved_port(rep.error, p + ("targetPort",), int(port.target_port), "targetPort")
        if (port.port, port.protocol) in pairs:
            rep.error(p + ("port",), f"duplicate port {port.port}/{port.protocol}")
        pairs.setdefault((port.port, port.protocol), i)
        _check_int_or_name(rep, p + ("targetPort",), port.target_port)
        if port.node_port is not None:
            rep.warn(p + ("nodePort",), "nodePort is ignored")
    if spec.selector:
        check_labels(rep, sp + ("selector",), spec.selector)
    return rep.findings


def _check_run_as(rep: _Report, pod_path: FieldPath, pod: Any, container_path: FieldPath, container: Any) -> None:
    """securityContext users the local runtime can honour (runtime/sandbox.py)."""
    contexts = [(container_path, container.security_context)]
    if container is pod.containers[0]:  # the pod's own once
        contexts.insert(0, (pod_path, pod.security_context))
    for path, ctx in contexts:
        for field in ("run_as_user", "run_as_group"):
            value = getattr(ctx, field, None) if ctx is not None else None
            if value is not None and is_reserved_id(value):
                rep.error(
                    path + ("securityContext", _camel(field)),
                    f"{value} is reserved for the mesh's per-pod users "
                    f"({POD_ID_BASE}..{POD_ID_BASE + POD_ID_RANGE - 1})",
                )
    user, _ = apps.run_as(pod, container)
    non_root = None
    for ctx in (pod.security_context, container.security_context):
        if ctx is not None and ctx.run_as_non_root is not None:
            non_root = ctx.run_as_non_root
    if non_root and user == 0:
        rep.error(container_path + ("securityContext", "runAsUser"), "runAsNonRoot is true but runAsUser is 0")


def _check_int_or_name(rep: _Report, path: FieldPath, value: int | str | None) -> None:
    if value is None:
        return
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            rep.error(path, f"port {value} must be in the range 1-65535")
    elif value.isdigit():
        if not 1 <= int(value) <= 65535:
            rep.error(path, f"port {value} must be in the range 1-65535")
    elif len(value) > 15 or not _IANA_SVC_NAME.match(value) or not re.search("[a-z]", value) or "--" in value:
        rep.error(path, f"invalid port name {value!r}: at most 15 lowercase letters, digits and '-'")


def validate_deployment(res: Resource[Any]) -> list[Finding]:
    rep = _Report()
    spec: apps.DeploymentSpec = res.spec
    sp: FieldPath = ("spec",)
    tmpl_labels = spec.template.metadata.labels
    check_labels(rep, sp + ("selector", "matchLabels"), spec.selector.match_labels)
    check_labels(rep, sp + ("template", "metadata", "labels"), tmpl_labels)
    if not spec.selector.match_labels and not spec.selector.match_expressions:
        rep.error(sp + ("selector",), "selector must not be empty")
    if spec.selector.match_expressions:
        rep.warn(sp + ("selector", "matchExpressions"), "matchExpressions are not supported and are ignored")
    mismatched = [k for k, v in spec.selector.match_labels.items() if tmpl_labels.get(k) != v]
    if mismatched:
        rep.error(
            sp + ("selector", "matchLabels"),
            "selector does not match template labels ("
            + ", ".join(f"{k}={spec.selector.match_labels[k]}" for k in mismatched)
            + " not in spec.template.metadata.labels)",
        )
    pod = spec.template.spec
    pp = sp + ("template", "spec")
    if not pod.containers:
        rep.error(pp + ("containers",), "at least one container is required")
    for field in apps.IGNORED_POD_FIELDS:
        if getattr(pod, field) is not None:
            rep.warn(pp + (_camel(field),), "ignored: has no meaning for local pods")
    if (
        pod.service_account is not None
        and pod.service_account != pod.service_account_name
        and "service_account_name" in pod.model_fields_set
    ):
        rep.error(pp + ("serviceAccount",), "serviceAccount and serviceAccountName differ")
    elif pod.service_account is not None:
        rep.warn(pp + ("serviceAccount",), "deprecated: use serviceAccountName")
    # "" is what Kubernetes defaults to "default" (Istio's samples/ratelimit sets it so)
    if pod.service_account_name and not is_dns1123_subdomain(pod.service_account_name):
        rep.error(pp + ("serviceAccountName",), f"invalid service account name {pod.service_account_name!r}")
    for problem in pod_volumes.check_pod(pod, pp):  # volumes, volumeMounts, valueFrom, envFrom
        (rep.error if problem.level == "error" else rep.warn)(problem.path, problem.message)
    names: dict[str, int] = {}
    for i, c in enumerate(pod.containers):
        cp = pp + ("containers", i)
        if not is_dns1123_label(c.name):
            rep.error(cp + ("name",), f"invalid container name {c.name!r}: must be a DNS-1123 label")
        if c.name in names:
            rep.error(cp + ("name",), f"duplicate container name {c.name!r} (also containers[{names[c.name]}])")
        names.setdefault(c.name, i)
        for field in apps.IGNORED_CONTAINER_FIELDS:
            if getattr(c, field) is not None:
                rep.warn(cp + (_camel(field),), "ignored: has no meaning for local pods")
        _check_run_as(rep, pp, pod, cp, c)
        port_names: set[str] = set()
        for j, port in enumerate(c.ports):
            if port.name is not None:
                _check_int_or_name(rep, cp + ("ports", j, "name"), port.name)
                if port.name in port_names:
                    rep.error(cp + ("ports", j, "name"), f"duplicate port name {port.name!r}")
                port_names.add(port.name)
        env_names: set[str] = set()
        for j, env in enumerate(c.env):
            if env.name in env_names:
                rep.warn(cp + ("env", j, "name"), f"duplicate environment variable {env.name!r}: the last one wins")
            env_names.add(env.name)
        for probe_field, probe in (
            ("readinessProbe", c.readiness_probe),
            ("livenessProbe", c.liveness_probe),
            ("startupProbe", c.startup_probe),
        ):
            if probe is None:
                continue
            prp = cp + (probe_field,)
            handlers = [
                n
                for n, v in (
                    ("httpGet", probe.http_get),
                    ("tcpSocket", probe.tcp_socket),
                    ("exec", probe.exec),
                    ("grpc", probe.grpc),
                )
                if v is not None
            ]
            if len(handlers) != 1:
                rep.error(
                    prp,
                    "exactly one of httpGet, tcpSocket, exec, grpc must be set"
                    + (f" (found {', '.join(handlers)})" if handlers else ""),
                )
            for hname, handler in (("httpGet", probe.http_get), ("tcpSocket", probe.tcp_socket)):
                if handler is None:
                    continue
                port_value: int | str = handler.port
                _check_int_or_name(rep, prp + (hname, "port"), port_value)
                if isinstance(port_value, str) and not port_value.isdigit() and port_value not in port_names:
                    rep.error(
                        prp + (hname, "port"),
                        f"named port {port_value!r} is not one of the container's ports",
                    )
            if probe.exec is not None or probe.grpc is not None:
                rep.warn(prp, "exec and grpc probes are not supported locally; the probe always passes")
            if probe_field in ("livenessProbe", "startupProbe") and probe.success_threshold != 1:
                rep.error(prp + ("successThreshold",), "successThreshold must be 1 for liveness and startup probes")
    return rep.findings


def _camel(name: str) -> str:
    parts = name.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def validate_nothing(res: Resource[Any]) -> list[Finding]:
    return []


def all_findings(validators: Iterable[Any], res: Resource[Any]) -> list[Finding]:
    out: list[Finding] = []
    for v in validators:
        out.extend(v(res))
    return out


# ---------------------------------------------------------------------------- Secret


def _pem_problem(key: str, value: bytes) -> str | None:
    """Why VALUE is not what KEY needs (PEM certificates for tls.crt / ca.crt, a PEM private key for
    tls.key), or None."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        if key == core.TLS_KEY_KEY:
            serialization.load_pem_private_key(value, password=None)
        else:
            if not x509.load_pem_x509_certificates(value):
                return "holds no certificate"
    except (ValueError, TypeError) as e:
        what = "a PEM private key" if key == core.TLS_KEY_KEY else "PEM certificates"
        return f"is not {what}: {e}"
    return None


def validate_secret(res: Resource[Any]) -> list[Finding]:
    import base64
    import binascii

    rep = _Report()
    raw = res.raw
    kind = raw.get("type", "Opaque")
    if not isinstance(kind, str) or not kind:
        rep.error(("type",), "type must be a string like kubernetes.io/tls or Opaque")
        kind = "Opaque"
    fields: dict[str, tuple[str, ...]] = {}  # key -> path of its value
    for section in ("data", "stringData"):
        values = raw.get(section)
        if values is None:
            continue
        if not isinstance(values, dict):
            rep.error((section,), f"{section} must be a mapping of key to value")
            continue
        for key, value in values.items():
            path = (section, str(key))
            if not isinstance(key, str) or not re.match(r"^[-._a-zA-Z0-9]+$", key):
                rep.error(path, f"invalid key {key!r}: keys are letters, digits, '-', '_' and '.'")
                continue
            if not isinstance(value, str):
                rep.error(path, f"{section}.{key} must be a string")
                continue
            if section == "data":
                try:
                    base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    rep.error(path, f"data.{key} is not valid base64")
                    continue
            fields[key] = path
    values_by_key = core.secret_data(raw)
    if kind == "kubernetes.io/tls":
        for key in (core.TLS_CERT_KEY, core.TLS_KEY_KEY):
            if key not in fields:
                rep.error(("data",), f"a kubernetes.io/tls Secret needs {key}")
    for key in (core.TLS_CERT_KEY, core.TLS_KEY_KEY, core.CA_CERT_KEY):
        if key in fields and key in values_by_key:
            problem = _pem_problem(key, values_by_key[key])
            if problem:
                rep.error(fields[key], f"{key} {problem}")
    if (core.TLS_CERT_KEY in fields) != (core.TLS_KEY_KEY in fields) and kind != "kubernetes.io/tls":
        rep.error(("data",), "tls.crt and tls.key go together")
    return rep.findings
