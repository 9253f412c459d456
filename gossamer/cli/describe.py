"""Text output of `gossamer describe` and `gossamer proxy-config secret` (istioctl-shaped).

Plain lines through console.out: long names (SPIFFE ids, hosts, cluster names) are never wrapped.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console


def _line(console: Console, text: str, indent: int = 0) -> None:
    console.out(" " * indent + text, highlight=False)


def _policy(tp: dict[str, Any]) -> str:
    parts = []
    if tp.get("loadBalancer"):
        parts.append(f"LB {tp['loadBalancer']}")
    for key, label in (("connectionPool", "connection pool"), ("outlierDetection", "outlier detection")):
        if tp.get(key):
            parts.append(f"{label} {tp[key]}")
    if tp.get("tls"):
        parts.append(f"TLS {tp['tls']}")
    if tp.get("portLevelSettings"):
        parts.append(f"port level {tp['portLevelSettings']}")
    return "; ".join(parts)


def print_describe(console: Console, body: dict[str, Any]) -> None:
    pod = body["pod"]
    _line(console, f"Pod: {pod['name']} ({pod['namespace']})")
    _line(console, f"Labels: {', '.join(f'{k}={v}' for k, v in sorted(pod['labels'].items()))}", 3)
    _line(console, f"Service account: {pod['serviceAccount']}  identity: {pod['identity']}", 3)
    sidecar = f"yes ({pod['proxyType']})" if pod["sidecar"] else "no"
    _line(console, f"Ready: {'yes' if pod['ready'] else 'no'}  sidecar: {sidecar}", 3)
    for svc in body["services"]:
        _line(console, "--------------------")
        ports = ", ".join(f"{p['port']}/{p['protocol']} -> {p['podPort'] or p['targetPort']}" for p in svc["ports"])
        _line(console, f"Service: {svc['name']} ({svc['host']})  ports: {ports}")
        vss = svc["virtualServices"]
        if vss["items"]:
            effective = vss["effective"] or "none (no HTTP rules)"
            _line(console, f"VirtualService: {', '.join(vss['items'])}  (sidecars use {effective})", 3)
        else:
            _line(console, "VirtualService: none (default routing)", 3)
        for w in vss["warnings"]:
            _line(console, f"WARNING: {w}", 3)
        dr = svc["destinationRule"]
        if dr is None:
            _line(console, "DestinationRule: none", 3)
            continue
        matched = ", ".join(dr["podSubsets"]) or "none"
        _line(console, f'DestinationRule: {dr["name"]} for "{dr["host"]}"', 3)
        _line(console, f"Matching subsets: {matched}  (of {', '.join(s['name'] for s in dr['subsets']) or 'none'})", 6)
        summary = _policy(dr["trafficPolicy"])
        _line(console, f"Traffic policy: {summary or 'none'}", 6)
        for s in dr["subsets"]:
            if s["trafficPolicy"]:
                _line(console, f"Subset {s['name']}: {_policy(s['trafficPolicy'])}", 6)
    _line(console, "--------------------")
    pa = body["peerAuthentication"]
    _line(console, f"Effective PeerAuthentication: {pa['mode']} (from {pa['policy']})")
    for p in pa["ports"]:
        _line(console, f"port {p['port']}: {p['mode']} (from {p['policy']})", 3)
    authz = body["authorizationPolicies"]
    _line(
        console,
        "AuthorizationPolicies: "
        + (
            ", ".join(f"{a['action']} {a['name']}" + (f" ({a['note']})" if a.get("note") else "") for a in authz)
            or "none"
        ),
    )
    _line(console, "RequestAuthentications: " + (", ".join(body["requestAuthentications"]) or "none"))
    sc = body["sidecar"]
    _line(console, f"Sidecar: {sc['name'] or 'none'}  outbound: {sc['outboundTrafficPolicy']}")
    tel = body["telemetry"]
    tracing = ", ".join(
        f"{side} {'off' if t is None else str(t['sampling']) + '%' + ('' if t.get('spans', True) else ' (no spans)')}"
        for side, t in tel["tracing"].items()
    )
    _line(
        console,
        f"Telemetry: {', '.join(tel['policies']) or 'defaults'}  access logs "
        f"{'on' if tel['accessLogging'] else 'off'}, metrics {'on' if tel['metrics'] else 'off'}, "
        f"tracing {tracing}",
    )
    _line(console, "EnvoyFilters: " + (", ".join(body["envoyFilters"]) or "none"))
    mesh = body.get("meshConfig")
    if mesh is not None:
        _line(console, f"Mesh config: {mesh['source'] or 'defaults (no ConfigMap istio-system/istio)'}")
        for key, value in mesh["options"].items():
            shown = (
                ", ".join(value) or "none"
                if isinstance(value, list)
                else (str(value).lower() if isinstance(value, bool) else ('""' if value == "" else value))
            )
            _line(console, f"{key}: {shown}", 3)
    for gw in body["gateways"]:
        servers = ", ".join(f"{s['port']}/{s['protocol']} {','.join(s['hosts'])}" for s in gw["servers"])
        _line(console, f"Gateway: {gw['name']}  servers: {servers}")
        for vs in gw["virtualServices"]:
            _line(console, f"VirtualService: {vs['name']}  hosts: {', '.join(vs['hosts'])}", 3)


def print_secret(console: Console, body: dict[str, Any]) -> None:
    _line(console, f"Pod {body['pod']} ({body['namespace']})")
    cert = body["certificate"]
    _line(console, "RESOURCE NAME  IDENTITY  SERIAL NUMBER  NOT BEFORE  NOT AFTER")
    _line(console, f"default  {cert['identity']}  {cert['serial']}  {cert['notBefore']}  {cert['notAfter']}")
    _line(console, f"Issuer: {cert['issuer']}", 3)
    root = body["root"]
    _line(console, f"ROOTCA  {root['subject']}  SHA256 {root['sha256']}  not after {root['notAfter']}")
    if not body["streams"]:
        _line(console, "SDS: no stream connected")
    for s in body["streams"]:
        state = (
            "NACKED: " + (s["error"] or "")
            if s["nackedVersion"]
            else ("ACKED" if s["ackedVersion"] and s["ackedVersion"] == s["sentVersion"] else "SENT")
        )
        _line(
            console,
            f"SDS stream {s['streamId']} {s['nodeId']}: {','.join(s['resourceNames'])} "
            f"version {s['ackedVersion'] or '-'} {state}",
        )
