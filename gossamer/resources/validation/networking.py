"""Validation of DestinationRule, Gateway, ServiceEntry, WorkloadEntry and Sidecar."""

from __future__ import annotations

from typing import Any

from gossamer.resources import envoy_checks, networking
from gossamer.resources.base import FieldPath
from gossamer.resources.networking import DestinationRule, Gateway, ServiceEntry, Sidecar, WorkloadEntry
from gossamer.resources.validation.common import (
    Finding,
    Report,
    check_export_to,
    check_labels,
    host_problem,
    is_cidr_or_ip,
    is_dns1123_label,
    is_ip,
)


def validate_destination_rule(res: DestinationRule) -> list[Finding]:
    rep = Report()
    spec = res.spec
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
    check_export_to(rep, sp + ("exportTo",), spec.export_to)
    if spec.workload_selector is not None:
        check_labels(rep, sp + ("workloadSelector", "matchLabels"), spec.workload_selector.match_labels)
    return rep.findings


def _check_traffic_policy(rep: Report, p: FieldPath, tp: Any) -> None:
    """Checks a TrafficPolicy or a PortTrafficPolicy."""
    if tp.load_balancer is not None:
        _check_load_balancer(rep, p + ("loadBalancer",), tp.load_balancer)
        envoy_checks.load_balancer(rep.error, p + ("loadBalancer",), tp.load_balancer)
    if tp.outlier_detection is not None:
        _check_outlier(rep, p + ("outlierDetection",), tp.outlier_detection)
    if tp.connection_pool is not None:
        cp = tp.connection_pool
        if cp.tcp is not None and cp.tcp.connect_timeout is not None:
            if cp.tcp.connect_timeout.seconds < 0.001:
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


def _check_load_balancer(rep: Report, p: FieldPath, lb: networking.LoadBalancerSettings) -> None:
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


def _check_outlier(rep: Report, p: FieldPath, od: networking.OutlierDetection) -> None:
    for field, value in (
        ("maxEjectionPercent", od.max_ejection_percent),
        ("minHealthPercent", od.min_health_percent),
    ):
        if value is not None and not 0 <= value <= 100:
            rep.error(p + (field,), f"{field} {value} must be between 0 and 100")
    for field, dur in (("interval", od.interval), ("baseEjectionTime", od.base_ejection_time)):
        if dur is not None and dur.seconds < 0.001:
            rep.error(p + (field,), f"{field} must be at least 1ms")
    if od.consecutive_local_origin_failures and not od.split_external_local_origin_errors:
        rep.error(
            p + ("consecutiveLocalOriginFailures",),
            "consecutiveLocalOriginFailures requires splitExternalLocalOriginErrors: true",
        )
    if od.consecutive_errors is not None:
        rep.warn(p + ("consecutiveErrors",), "deprecated: use consecutive5xxErrors / consecutiveGatewayErrors")


def _check_client_tls(rep: Report, p: FieldPath, tls: networking.ClientTLSSettings) -> None:
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


def _check_namespaced_host(rep: Report, path: FieldPath, host: str, ns_required: bool) -> None:
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


def validate_gateway(res: Gateway) -> list[Finding]:
    rep = Report()
    spec = res.spec
    sp: FieldPath = ("spec",)
    check_labels(rep, sp + ("selector",), spec.selector)
    if not spec.servers:  # Istio accepts it; it opens no port
        rep.warn(sp + ("servers",), "a Gateway without servers opens no port")
    names: dict[str, int] = {}
    passthrough: dict[tuple[int, str], int] = {}
    for i, server in enumerate(spec.servers):
        _check_server(rep, sp + ("servers", i), i, server, names, passthrough)
    return rep.findings


def _check_server(
    rep: Report,
    p: FieldPath,
    i: int,
    server: networking.Server,
    names: dict[str, int],
    passthrough: dict[tuple[int, str], int],
) -> None:
    """NAMES and PASSTHROUGH: the earlier servers' names and passthrough (port, SNI) pairs."""
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
            _check_passthrough(rep, p, i, server, passthrough)
    if server.bind is not None and not is_ip(server.bind) and not server.bind.startswith("unix://"):
        rep.error(p + ("bind",), f"bind {server.bind!r} must be an IP address or unix:// socket")
    if proto in ("HTTPS", "TLS") and server.tls is None:
        rep.error(p + ("tls",), f"server with protocol {proto} needs tls settings")
    if server.tls is not None:
        _check_server_credentials(rep, p + ("tls",), server.tls, proto)


def _check_passthrough(
    rep: Report, p: FieldPath, i: int, server: networking.Server, passthrough: dict[tuple[int, str], int]
) -> None:
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


def _check_server_credentials(rep: Report, tp: FieldPath, tls: networking.ServerTLSSettings, proto: str) -> None:
    if tls.https_redirect and proto != "HTTP":
        rep.warn(tp + ("httpsRedirect",), "httpsRedirect only has an effect on HTTP servers")
    mode = tls.mode or ("SIMPLE" if proto in ("HTTPS", "TLS") and not tls.https_redirect else None)
    if mode not in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL") or (
        tls.credential_name or tls.credential_names or tls.tls_certificates
    ):
        return
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


# ---------------------------------------------------------------------------- ServiceEntry, Sidecar


def validate_service_entry(res: ServiceEntry) -> list[Finding]:
    rep = Report()
    spec = res.spec
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
    port_names = _check_service_entry_ports(rep, sp, spec.ports)
    _check_service_entry_endpoints(rep, sp, spec, port_names)
    if spec.resolution in ("DNS", "DNS_ROUND_ROBIN") and not spec.endpoints:
        for i, host in enumerate(spec.hosts):
            if host.startswith("*"):
                rep.error(
                    sp + ("hosts", i),
                    f"wildcard host {host!r} needs endpoints with resolution {spec.resolution}",
                )
    check_export_to(rep, sp + ("exportTo",), spec.export_to)
    return rep.findings


def _check_service_entry_ports(rep: Report, sp: FieldPath, ports: list[networking.ServiceEntryPort]) -> set[str]:
    """The ports' names."""
    seen_names: dict[str, int] = {}
    seen_numbers: dict[int, int] = {}
    for i, port in enumerate(ports):
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
    return set(seen_names)


def _check_service_entry_endpoints(
    rep: Report, sp: FieldPath, spec: networking.ServiceEntrySpec, port_names: set[str]
) -> None:
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
            if spec.ports and pname not in port_names:
                rep.error(p + ("ports", pname), f"port name {pname!r} is not one of the ServiceEntry's ports")
    if spec.resolution == "STATIC" and not spec.endpoints and spec.workload_selector is None:
        rep.error(sp + ("endpoints",), "resolution STATIC needs endpoints or a workloadSelector")


def _check_workload_entry(rep: Report, p: FieldPath, we: networking.WorkloadEntrySpec) -> None:
    if not we.address and not we.network:
        rep.error(p + ("address",), "address is required (unless network is set)")
    elif we.address and not we.address.startswith("unix://") and host_problem(we.address) is not None:
        rep.error(p + ("address",), f"address {we.address!r} must be an IP, a host name or unix:// socket")
    if we.labels:
        check_labels(rep, p + ("labels",), we.labels)


def validate_workload_entry(res: WorkloadEntry) -> list[Finding]:
    rep = Report()
    _check_workload_entry(rep, ("spec",), res.spec)
    return rep.findings


def validate_sidecar(res: Sidecar) -> list[Finding]:
    rep = Report()
    spec = res.spec
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
