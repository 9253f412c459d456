"""Accepted means Envoy accepts: config that built a proxy config Envoy rejects (found by fuzzing,
issue 11) is an error at apply time, with the file and line of the field responsible."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gossamer.resources.loader import parse_documents

VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
"""


def _vs_with(route_fields: str) -> str:
    return VS + textwrap.indent(textwrap.dedent(route_fields), "    ")


def _dr(traffic_policy: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n"
        "  host: reviews\n  trafficPolicy:\n" + textwrap.indent(textwrap.dedent(traffic_policy), "    ")
    )


def _doc(kind: str, api: str, spec: str) -> str:
    return f"apiVersion: {api}\nkind: {kind}\nmetadata: {{name: x}}\nspec:\n" + textwrap.indent(
        textwrap.dedent(spec), "  "
    )


def _only_error(text: str) -> tuple[int, str, str]:
    resources, issues = parse_documents(text, "in.yaml")
    errors = [i for i in issues if i.level == "error"]
    assert errors and not resources, "accepted"
    return errors[0].line, errors[0].field, errors[0].message


CASES = [
    # regexes Python accepts and RE2 (Envoy) rejects
    (_vs_with("match: [{uri: {regex: '(a)\\1'}}]"), 9, "spec.http[0].match[0].uri.regex", "RE2"),
    (_vs_with("match: [{uri: {regex: '(?=x)'}}]"), 9, "spec.http[0].match[0].uri.regex", "invalid perl operator"),
    (
        _vs_with("match: [{headers: {x-a: {regex: 'a{1001}'}}}]"),
        9,
        "spec.http[0].match[0].headers.x-a.regex",
        "invalid repetition size",
    ),
    (_vs_with("match: [{uri: {regex: ''}}]"), 9, "spec.http[0].match[0].uri.regex", "must not be empty"),
    # header names and values Envoy forbids
    (_vs_with("headers: {request: {set: {'': v}}}"), 9, "spec.http[0].headers.request.set.", "must not be empty"),
    (_vs_with('headers: {response: {add: {x-a: "v\\nx"}}}'), 9, "spec.http[0].headers.response.add.x-a", "LF"),
    (
        _vs_with(f"headers: {{request: {{set: {{x-a: {'v' * 17000}}}}}}}"),
        9,
        "spec.http[0].headers.request.set.x-a",
        "16384 bytes",
    ),
    (
        _vs_with("match: [{headers: {'bad header': {exact: x}}}]"),
        9,
        "spec.http[0].match[0].headers.bad header",
        "invalid header name",
    ),
    # durations and integers beyond the protos' ranges
    (_vs_with("timeout: 2562048h"), 9, "spec.http[0].timeout", "longer than Envoy's maximum"),
    (_vs_with("retries: {attempts: 4294967296}"), 9, "spec.http[0].retries.attempts", "less than or equal to"),
    (
        _dr("connectionPool: {http: {http1MaxPendingRequests: 2147483648}}"),
        7,
        "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests",
        "less than or equal to",
    ),
    (
        _dr("outlierDetection: {consecutive5xxErrors: 4294967296}"),
        7,
        "spec.trafficPolicy.outlierDetection.consecutive5xxErrors",
        "less than or equal to",
    ),
    (
        _dr("connectionPool: {tcp: {tcpKeepalive: {time: 5000000000s}}}"),
        7,
        "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.time",
        "4294967295 seconds",
    ),
    # ring hash and maglev limits
    (
        _dr("loadBalancer: {consistentHash: {useSourceIp: true, ringHash: {minimumRingSize: 10000000}}}"),
        7,
        "spec.trafficPolicy.loadBalancer.consistentHash.ringHash.minimumRingSize",
        "over Envoy's limit",
    ),
    (
        _dr("loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 65536}}}"),
        7,
        "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
        "prime",
    ),
    # certificate files are the proxy's: absolute paths (whether they exist is checked at apply)
    (_dr("tls: {mode: SIMPLE, caCertificates: ca.pem}"), 7, "spec.trafficPolicy.tls.caCertificates", "absolute path"),
    # reserved ports
    (
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  selector: {app: s}\n  ports:\n"
        "  - {port: 15001, name: http}\n",
        7,
        "spec.ports[0].port",
        "outbound capture port",
    ),
    (
        _doc(
            "Gateway",
            "networking.istio.io/v1",
            """\
        selector: {istio: ingressgateway}
        servers:
        - port: {number: 15021, name: http, protocol: HTTP}
          hosts: ["*"]
        """,
        ),
        7,
        "spec.servers[0].port.number",
        "health check port",
    ),
    # unknown cipher suites, duplicate SNI on passthrough gateways
    (
        _doc(
            "Gateway",
            "networking.istio.io/v1",
            """\
        selector: {istio: ingressgateway}
        servers:
        - port: {number: 443, name: https, protocol: HTTPS}
          hosts: ["a.example.com"]
          tls: {mode: SIMPLE, credentialName: c, cipherSuites: [ECDHE-FOO]}
        """,
        ),
        9,
        "spec.servers[0].tls.cipherSuites[0]",
        "unknown cipher suite",
    ),
    (
        _doc(
            "Gateway",
            "networking.istio.io/v1",
            """\
        selector: {istio: ingressgateway}
        servers:
        - port: {number: 443, name: tls1, protocol: TLS}
          hosts: ["a.example.com"]
          tls: {mode: PASSTHROUGH}
        - port: {number: 443, name: tls2, protocol: TLS}
          hosts: ["a.example.com"]
          tls: {mode: PASSTHROUGH}
        """,
        ),
        11,
        "spec.servers[1].hosts[0]",
        "same SNI",
    ),
    # sniHosts: ["*"]
    (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: t}\nspec:\n"
        "  hosts: ['*.example.com']\n  gateways: [gw]\n  tls:\n  - match: [{sniHosts: ['*']}]\n"
        "    route: [{destination: {host: a.example.com}}]\n",
        8,
        "spec.tls[0].match[0].sniHosts[0]",
        "not a server name Envoy can match",
    ),
    # malformed CIDRs and ports in AuthorizationPolicy
    (
        _doc(
            "AuthorizationPolicy",
            "security.istio.io/v1",
            """\
        rules:
        - from: [{source: {ipBlocks: ["1.2.3.4/-1"]}}]
        """,
        ),
        6,
        "spec.rules[0].from[0].source.ipBlocks[0]",
        "invalid IP address or CIDR",
    ),
    (
        _doc(
            "AuthorizationPolicy",
            "security.istio.io/v1",
            """\
        rules:
        - to: [{operation: {ports: ["abc"]}}]
        """,
        ),
        6,
        "spec.rules[0].to[0].operation.ports[0]",
        "invalid port",
    ),
    (
        _doc(
            "AuthorizationPolicy",
            "security.istio.io/v1",
            """\
        rules:
        - when: [{key: remote.ip, values: [x]}]
        """,
        ),
        6,
        "spec.rules[0].when[0].values[0]",
        "invalid IP address or CIDR",
    ),
    (
        _doc(
            "AuthorizationPolicy",
            "security.istio.io/v1",
            """\
        rules:
        - when: [{key: "request.headers[]", values: [x]}]
        """,
        ),
        6,
        "spec.rules[0].when[0].key",
        "needs a name",
    ),
    # inline JWKS that is not a key set
    (
        _doc(
            "RequestAuthentication",
            "security.istio.io/v1",
            """\
        jwtRules:
        - {issuer: i, jwks: '{"keys": 5}'}
        """,
        ),
        6,
        "spec.jwtRules[0].jwks",
        "JSON Web Key Set",
    ),
    (
        _doc(
            "RequestAuthentication",
            "security.istio.io/v1",
            """\
        jwtRules:
        - {issuer: i, jwks: '{"keys": [{"kty": "RSA"}]}'}
        """,
        ),
        6,
        "spec.jwtRules[0].jwks",
        "lacks n, e",
    ),
]


@pytest.mark.parametrize(("text", "line", "field", "fragment"), CASES, ids=[f"{c[2]}:{c[3]}" for c in CASES])
def test_what_envoy_rejects_is_an_error_with_its_line(text: str, line: int, field: str, fragment: str) -> None:
    got_line, got_field, message = _only_error(text)
    assert (got_line, got_field) == (line, field), message
    assert fragment in message


def test_files_that_exist_are_accepted(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here: Envoy reads it")
    resources, issues = parse_documents(_dr(f"tls: {{mode: SIMPLE, caCertificates: {ca}}}"), "in.yaml")
    assert resources and not [i for i in issues if i.level == "error"], issues


def test_what_istio_accepts_stays_accepted() -> None:
    """Limits as Istio and Envoy have them, not stricter: a prime maglev table, an 8M ring, ~292 years,
    host/:authority in header edits (a host rewrite), a key set with an RSA key, Istio's RE2 program size."""
    texts = [
        _dr("loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 65537}}}"),
        _dr("loadBalancer: {consistentHash: {useSourceIp: true, ringHash: {minimumRingSize: 8388608}}}"),
        _vs_with("timeout: 9223372035s"),
        _vs_with("headers: {request: {set: {':authority': a.example.com, host: b}}}"),
        _vs_with("match: [{uri: {regex: '/[a-z]{200}'}}]"),
        _doc(
            "RequestAuthentication",
            "security.istio.io/v1",
            """\
            jwtRules:
            - {issuer: i, jwks: '{"keys": [{"kty": "RSA", "e": "AQAB", "n": "xAE7"}]}'}
            """,
        ),
    ]
    for text in texts:
        resources, issues = parse_documents(text, "in.yaml")
        assert resources, [str(i) for i in issues]
