"""Validation of VirtualService: routes, matches, retries, timeouts, faults, mirrors, CORS, delegation."""

from __future__ import annotations

from gossamer.mesh import hosts_intersect
from gossamer.resources import envoy_checks, networking
from gossamer.resources.base import Duration, FieldPath
from gossamer.resources.networking import VirtualService
from gossamer.resources.validation.common import (
    Finding,
    Report,
    camel,
    check_destination,
    check_export_to,
    check_gateway_ref,
    check_labels,
    check_percent,
    check_regex,
    check_string_match,
    check_weights,
    host_problem,
    is_cidr_or_ip,
    is_dns1123_label,
    is_dns1123_subdomain,
    seconds_or_none,
)


def validate_virtual_service(res: VirtualService) -> list[Finding]:
    rep = Report()
    spec = res.spec
    sp: FieldPath = ("spec",)
    is_delegate = not spec.hosts
    _check_hosts_and_gateways(rep, sp, spec, is_delegate)
    for i, route in enumerate(spec.http):
        _check_http_route(rep, sp + ("http", i), route, is_delegate)
    for i, tcp in enumerate(spec.tcp):
        _check_tcp_route(rep, sp + ("tcp", i), tcp)
    for i, tls in enumerate(spec.tls):
        _check_tls_route(rep, sp + ("tls", i), tls, spec.hosts)
    return rep.findings


def _check_hosts_and_gateways(
    rep: Report, sp: FieldPath, spec: networking.VirtualServiceSpec, is_delegate: bool
) -> None:
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
        check_gateway_ref(rep, sp + ("gateways", i), gw)
    check_export_to(rep, sp + ("exportTo",), spec.export_to)
    if not spec.http and not spec.tcp and not spec.tls:
        rep.error(sp, "at least one of http, tcp or tls must be set")


def _check_tcp_route(rep: Report, p: FieldPath, tcp: networking.TCPRoute) -> None:
    for k, m in enumerate(tcp.match or []):
        _check_l4_match(rep, p + ("match", k), m)
    if not tcp.route:
        rep.error(p + ("route",), "a tcp route needs at least one destination")
    else:
        for j, d in enumerate(tcp.route):
            check_destination(rep, p + ("route", j, "destination"), d.destination)
        check_weights(rep, p + ("route",), tcp.route)


def _check_tls_route(rep: Report, p: FieldPath, tls: networking.TLSRoute, hosts: list[str]) -> None:
    if not tls.match:
        rep.error(p + ("match",), "a tls route needs at least one match with sniHosts")
    for k, tm in enumerate(tls.match):
        _check_tls_match(rep, p + ("match", k), tm, hosts)
    if not tls.route:
        rep.error(p + ("route",), "a tls route needs at least one destination")
    else:
        for j, d in enumerate(tls.route):
            check_destination(rep, p + ("route", j, "destination"), d.destination)
        check_weights(rep, p + ("route",), tls.route)


def _check_tls_match(rep: Report, mp: FieldPath, tm: networking.TLSMatchAttributes, hosts: list[str]) -> None:
    if not tm.sni_hosts:
        rep.error(mp + ("sniHosts",), "sniHosts must not be empty")
    for s, sni in enumerate(tm.sni_hosts):
        envoy_checks.sni_host(rep.error, mp + ("sniHosts", s), sni)
        problem = None if sni == "*" else host_problem(sni, allow_ip=False)
        if problem:
            rep.error(mp + ("sniHosts", s), problem)
        elif hosts and not any(hosts_intersect(h, sni) for h in hosts):
            rep.error(
                mp + ("sniHosts", s),
                f"sniHost {sni!r} is not covered by any of the VirtualService hosts",
            )
    for g, gw in enumerate(tm.gateways or []):
        check_gateway_ref(rep, mp + ("gateways", g), gw)
    for c, cidr in enumerate(tm.destination_subnets or []):
        if not is_cidr_or_ip(cidr):
            rep.error(mp + ("destinationSubnets", c), f"invalid IP or CIDR {cidr!r}")


def _check_l4_match(rep: Report, path: FieldPath, m: networking.L4MatchAttributes) -> None:
    for c, cidr in enumerate(m.destination_subnets or []):
        if not is_cidr_or_ip(cidr):
            rep.error(path + ("destinationSubnets", c), f"invalid IP or CIDR {cidr!r}")
    if m.source_subnet is not None and not is_cidr_or_ip(m.source_subnet):
        rep.error(path + ("sourceSubnet",), f"invalid IP or CIDR {m.source_subnet!r}")
    for g, gw in enumerate(m.gateways or []):
        check_gateway_ref(rep, path + ("gateways", g), gw)


def _check_http_route(rep: Report, p: FieldPath, r: networking.HTTPRoute, in_delegate: bool) -> None:
    """Each part of an HTTP route in turn (the order of the findings is the order of these checks)."""
    _check_action(rep, p, r)
    for k, m in enumerate(r.match or []):
        _check_http_match(rep, p + ("match", k), m)
    _check_destinations_and_headers(rep, p, r)
    if r.delegate is not None:
        _check_delegate(rep, p + ("delegate",), r.delegate, in_delegate)
    if r.redirect is not None:
        _check_redirect(rep, p, r.redirect, r.rewrite)
    if r.direct_response is not None:
        _check_direct_response(rep, p + ("directResponse",), r.direct_response)
    if r.rewrite is not None:
        _check_rewrite(rep, p + ("rewrite",), r.rewrite)
    if r.retries is not None:
        _check_retries(rep, p + ("retries",), r.retries, r.timeout)
    if r.fault is not None:
        _check_fault(rep, p + ("fault",), r.fault)
    _check_mirrors(rep, p, r)
    if r.cors_policy is not None:
        _check_cors(rep, p + ("corsPolicy",), r.cors_policy)


def _check_action(rep: Report, p: FieldPath, r: networking.HTTPRoute) -> None:
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


def _check_destinations_and_headers(rep: Report, p: FieldPath, r: networking.HTTPRoute) -> None:
    if r.route:
        for j, d in enumerate(r.route):
            check_destination(rep, p + ("route", j, "destination"), d.destination)
            envoy_checks.headers(rep.error, p + ("route", j, "headers"), d.headers)
        check_weights(rep, p + ("route",), r.route)
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


def _check_delegate(rep: Report, dp: FieldPath, delegate: networking.Delegate, in_delegate: bool) -> None:
    if in_delegate:
        rep.error(dp, "a delegate VirtualService (no hosts) cannot delegate again")
    if not is_dns1123_subdomain(delegate.name):
        rep.error(dp + ("name",), f"invalid VirtualService name {delegate.name!r}")
    if delegate.namespace is not None and not is_dns1123_label(delegate.namespace):
        rep.error(dp + ("namespace",), f"invalid namespace {delegate.namespace!r}")


def _check_redirect(
    rep: Report, p: FieldPath, redirect: networking.HTTPRedirect, rewrite: networking.HTTPRewrite | None
) -> None:
    if rewrite is not None:
        rep.error(p + ("rewrite",), "rewrite cannot be used together with redirect")
    code = redirect.redirect_code
    if code is not None and code not in (301, 302, 303, 307, 308):
        rep.error(
            p + ("redirect", "redirectCode"),
            f"redirectCode {code} must be one of 301, 302, 303, 307, 308",
        )
    if redirect.port is not None and redirect.derive_port is not None:
        rep.error(p + ("redirect",), "only one of port, derivePort may be set")


def _check_direct_response(rep: Report, dp: FieldPath, dr: networking.HTTPDirectResponse) -> None:
    if not 200 <= dr.status <= 599:
        rep.error(dp + ("status",), f"status {dr.status} must be in the range 200-599")
    if dr.body is not None and dr.body.string is not None and dr.body.bytes is not None:
        rep.error(dp + ("body",), "only one of string, bytes may be set")


def _check_rewrite(rep: Report, rp: FieldPath, rw: networking.HTTPRewrite) -> None:
    if rw.uri is not None and rw.uri_regex_rewrite is not None:
        rep.error(rp, "only one of uri, uriRegexRewrite may be set")
    if rw.uri_regex_rewrite is not None:
        check_regex(rep, rp + ("uriRegexRewrite", "match"), rw.uri_regex_rewrite.match)
    if rw.uri is None and rw.authority is None and rw.uri_regex_rewrite is None:
        rep.error(rp, "rewrite must specify uri, uriRegexRewrite or authority")


def _check_retries(rep: Report, rp: FieldPath, rt: networking.HTTPRetry, route_timeout: Duration | None) -> None:
    if rt.attempts is not None and rt.attempts < 0:
        rep.error(rp + ("attempts",), f"attempts {rt.attempts} must not be negative")
    per_try = seconds_or_none(rt.per_try_timeout)
    timeout = seconds_or_none(route_timeout)
    if per_try is not None and timeout is not None and timeout > 0 and per_try > timeout:
        rep.warn(
            rp + ("perTryTimeout",),
            f"perTryTimeout {rt.per_try_timeout} is longer than the route timeout {route_timeout}",
        )
    if rt.retry_on:
        for cond in rt.retry_on.split(","):
            cond = cond.strip()
            if not cond:
                rep.error(rp + ("retryOn",), "empty retry condition")


def _check_fault(rep: Report, fp: FieldPath, f: networking.HTTPFaultInjection) -> None:
    if f.delay is None and f.abort is None:
        rep.error(fp, "fault injection needs a delay and/or an abort")
    if f.delay is not None:
        delay = f.delay
        if (delay.fixed_delay is None) == (delay.exponential_delay is None):
            rep.error(fp + ("delay",), "exactly one of fixedDelay, exponentialDelay must be set")
        elif delay.fixed_delay is not None and delay.fixed_delay.seconds < 0.001:
            rep.error(fp + ("delay", "fixedDelay"), "fixedDelay must be at least 1ms")
        check_percent(rep, fp + ("delay", "percentage"), delay.percentage)
        if delay.percent is not None and not 0 <= delay.percent <= 100:
            rep.error(fp + ("delay", "percent"), f"percent {delay.percent} must be between 0 and 100")
    if f.abort is not None:
        _check_abort(rep, fp + ("abort",), f.abort)


def _check_abort(rep: Report, ap: FieldPath, a: networking.FaultAbort) -> None:
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
        rep.error(ap, "exactly one of httpStatus, grpcStatus, http2Error must be set")
    if a.http_status is not None and not 200 <= a.http_status <= 599:
        rep.error(ap + ("httpStatus",), f"httpStatus {a.http_status} must be in the range 200-599")
    check_percent(rep, ap + ("percentage",), a.percentage)


def _check_mirrors(rep: Report, p: FieldPath, r: networking.HTTPRoute) -> None:
    if r.mirror is not None:
        check_destination(rep, p + ("mirror",), r.mirror)
    for j, mp in enumerate(r.mirrors or []):
        check_destination(rep, p + ("mirrors", j, "destination"), mp.destination)
        check_percent(rep, p + ("mirrors", j, "percentage"), mp.percentage)
    check_percent(rep, p + ("mirrorPercentage",), r.mirror_percentage)
    if r.mirror_percent is not None:
        rep.warn(p + ("mirrorPercent",), "mirrorPercent is deprecated: use mirrorPercentage")
        if not 0 <= r.mirror_percent <= 100:
            rep.error(p + ("mirrorPercent",), f"mirrorPercent {r.mirror_percent} must be between 0 and 100")
    if (r.mirror_percentage is not None or r.mirror_percent is not None) and r.mirror is None:
        rep.warn(p + ("mirrorPercentage",), "has no effect without mirror")


def _check_cors(rep: Report, cp_path: FieldPath, cp: networking.CorsPolicy) -> None:
    if cp.allow_origin is not None:
        rep.warn(cp_path + ("allowOrigin",), "allowOrigin is deprecated: use allowOrigins")
    for j, o in enumerate(cp.allow_origins or []):
        check_string_match(rep, cp_path + ("allowOrigins", j), o)
    for field in ("allow_headers", "expose_headers", "allow_methods"):
        for j, value in enumerate(getattr(cp, field, None) or []):
            if not value:
                rep.error(cp_path + (camel(field), j), "must not be empty")
            else:
                envoy_checks.header_value(rep.error, cp_path + (camel(field), j), value)


def _check_http_match(rep: Report, p: FieldPath, m: networking.HTTPMatchRequest) -> None:
    for field, value in (
        ("uri", m.uri),
        ("scheme", m.scheme),
        ("method", m.method),
        ("authority", m.authority),
    ):
        if value is not None:
            check_string_match(rep, p + (field,), value)
    for field, headers in (("headers", m.headers), ("withoutHeaders", m.without_headers)):
        for name, sm in (headers or {}).items():
            envoy_checks.header_match_name(rep.error, p + (field, name), name)
            check_string_match(rep, p + (field, name), sm, allow_empty=True)
    for name, sm in (m.query_params or {}).items():
        check_string_match(rep, p + ("queryParams", name), sm, allow_empty=True)
        if sm.prefix is not None:
            rep.warn(p + ("queryParams", name, "prefix"), "prefix matching of query parameters is not supported")
    for g, gw in enumerate(m.gateways or []):
        check_gateway_ref(rep, p + ("gateways", g), gw)
    if m.source_namespace is not None and not is_dns1123_label(m.source_namespace):
        rep.error(p + ("sourceNamespace",), f"invalid namespace {m.source_namespace!r}")
    if m.source_labels:
        check_labels(rep, p + ("sourceLabels",), m.source_labels)
