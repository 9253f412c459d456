"""Envoy's rules, applied to the Istio fields they come from, so that what Envoy would reject (a NACK
in production) is an apply-time error with the file and line of the field.

Each rule here was seen to break a proxy (fuzzing the samples and goldens, issue 11): headers Envoy
will not send or modify, ports the proxy itself listens on, ring hash and maglev limits, integer and
duration ranges of the protos, CIDRs and ports of authorization rules, key sets that are not JWKS,
certificate files that are not there, cipher suites BoringSSL does not know, SNI Envoy cannot match.
`gossamer.xds.rules` checks the built protos generically as a second line.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from gossamer.mesh import PROXY_PORTS
from gossamer.resources.base import Duration, FieldPath

Error = Callable[[FieldPath, str], None]


MAX_HEADER_BYTES = 16384  # Envoy's HeaderValue key and value limits
# Istio's header names for operations (ValidateHTTPHeaderName); matches also allow pseudo-headers
_HEADER_NAME = re.compile(r":?[-_A-Za-z0-9]+")
_MATCH_HEADER_NAME = re.compile(r":?[-_A-Za-z0-9.]+")
_FORBIDDEN_IN_HEADER = re.compile(r"[\x00\r\n]")

RING_HASH_MAX = 8_388_608  # Envoy: ring_hash_lb_config.minimum_ring_size <= 8M
MAGLEV_MAX = 5_000_011  # Envoy: maglev_lb_config.table_size <= 5000011, and a prime
UINT32_MAX = 2**32 - 1

# BoringSSL's cipher suite names (what Envoy's `cipher_suites` accepts; TLS 1.3 suites are not
# configurable there).
CIPHER_SUITES = frozenset(
    {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-PSK-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-PSK-AES128-CBC-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES256-SHA",
        "ECDHE-PSK-AES256-CBC-SHA",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "AES128-SHA",
        "PSK-AES128-CBC-SHA",
        "AES256-SHA",
        "PSK-AES256-CBC-SHA",
        "DES-CBC3-SHA",
    }
)
_TLS_VERSIONS = {"TLS_AUTO": 0, "TLSV1_0": 1, "TLSV1_1": 2, "TLSV1_2": 3, "TLSV1_3": 4}


def _show(value: str) -> str:
    return repr(value) if len(value) <= 40 else repr(value[:40]) + f"... ({len(value)} characters)"


# ---------------------------------------------------------------------------- headers


def header_value(error: Error, path: FieldPath, value: str) -> None:
    if _FORBIDDEN_IN_HEADER.search(value):
        error(path, f"header value {_show(value)} contains a NUL, CR or LF character, which HTTP forbids")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_HEADER_BYTES:
        error(path, f"header value is longer than Envoy's limit of {MAX_HEADER_BYTES} bytes")


def header_operation_name(error: Error, path: FieldPath, name: str) -> None:
    """A header set, added or removed by a route (Istio's names; `host` and `:authority` become a host
    rewrite, other pseudo-headers are dropped, as Istio does)."""
    if not name:
        error(path, "header name must not be empty")
    elif len(name) > MAX_HEADER_BYTES or not _HEADER_NAME.fullmatch(name):
        error(path, f"invalid header name {_show(name)}: letters, digits, '-' and '_' only")


def header_match_name(error: Error, path: FieldPath, name: str) -> None:
    if name.startswith("@request.auth.claims"):
        return
    if not name:
        error(path, "header name must not be empty")
    elif len(name) > MAX_HEADER_BYTES or not _MATCH_HEADER_NAME.fullmatch(name):
        error(path, f"invalid header name {_show(name)}: letters, digits, '-', '_' and '.' only")


def headers(error: Error, path: FieldPath, h: Any) -> None:
    """`headers: {request|response: {set, add, remove}}` of a route or destination."""
    if h is None:
        return
    for side in ("request", "response"):
        ops = getattr(h, side)
        if ops is None:
            continue
        for op in ("set", "add"):
            for name, value in (getattr(ops, op) or {}).items():
                header_operation_name(error, path + (side, op, name), name)
                header_value(error, path + (side, op, name), value)
        for i, name in enumerate(ops.remove or []):
            header_operation_name(error, path + (side, "remove", i), name)


# ---------------------------------------------------------------------------- ports, durations, numbers


def reserved_port(error: Error, path: FieldPath, port: Any, what: str = "port") -> None:
    if isinstance(port, int) and port in PROXY_PORTS:
        error(path, f"{what} {port} is reserved for {PROXY_PORTS[port]}")


def duration_seconds_in_uint32(error: Error, path: FieldPath, value: Duration | None) -> None:
    """Durations Envoy keeps as whole seconds in a uint32 (TCP keepalive)."""
    if value is not None and value.seconds > UINT32_MAX:
        error(path, f"{value} is longer than Envoy's limit for this field ({UINT32_MAX} seconds)")


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    i = 3
    while i * i <= n:
        if n % i == 0:
            return False
        i += 2
    return True


def load_balancer(error: Error, path: FieldPath, lb: Any) -> None:
    ch = lb.consistent_hash
    if ch is None:
        return
    cp = path + ("consistentHash",)
    ring = ch.ring_hash.minimum_ring_size if ch.ring_hash else None
    for field_path, size in ((("ringHash", "minimumRingSize"), ring), (("minimumRingSize",), ch.minimum_ring_size)):
        if size is not None and size > RING_HASH_MAX:
            error(cp + field_path, f"ring size {size} is over Envoy's limit ({RING_HASH_MAX})")
    if ch.maglev is not None and ch.maglev.table_size is not None:
        size = ch.maglev.table_size
        if size > MAGLEV_MAX:
            error(cp + ("maglev", "tableSize"), f"table size {size} is over Envoy's limit ({MAGLEV_MAX})")
        elif size and not _is_prime(size):
            error(cp + ("maglev", "tableSize"), f"table size {size} must be a prime number (Envoy's rule), e.g. 65537")
    if ch.http_header_name is not None:
        header_match_name(error, cp + ("httpHeaderName",), ch.http_header_name)
    if ch.http_cookie is not None:
        if ch.http_cookie.path is not None:
            header_value(error, cp + ("httpCookie", "path"), ch.http_cookie.path)
        if _FORBIDDEN_IN_HEADER.search(ch.http_cookie.name or "") or ";" in (ch.http_cookie.name or ""):
            error(cp + ("httpCookie", "name"), f"invalid cookie name {_show(ch.http_cookie.name)}")


# ---------------------------------------------------------------------------- TLS


def certificate_file(error: Error, path: FieldPath, value: str | None) -> None:
    """A file the proxy reads: an absolute path (Envoy's working directory is not the user's). Whether it
    exists is checked when it is applied to this machine's proxies (`missing_files`), not by analysis of
    manifests meant for elsewhere."""
    if value and not value.startswith("/"):
        error(path, f"{_show(value)} must be an absolute path")


def missing_files(resource: Any) -> list[tuple[FieldPath, str]]:
    """(field path, message) for each certificate file a DestinationRule or Gateway names that is not on
    this machine, where the proxies run: Envoy would reject the cluster or listener."""
    spec = resource.spec
    out: list[tuple[FieldPath, str]] = []

    def check(path: FieldPath, value: str | None) -> None:
        if value and value.startswith("/") and not Path(value).is_file():
            out.append(
                (path, f"file {_show(value)} does not exist on this machine (Envoy would reject the configuration)")
            )

    def client(path: FieldPath, tls: Any) -> None:
        if tls is not None and tls.mode in ("SIMPLE", "MUTUAL") and not tls.credential_name:
            for field in ("ca_certificates", "client_certificate", "private_key"):
                check(path + ("tls", _camel(field)), getattr(tls, field))

    if resource.kind == "DestinationRule":
        policies: list[tuple[FieldPath, Any]] = [(("spec", "trafficPolicy"), spec.traffic_policy)]
        policies += [(("spec", "subsets", i, "trafficPolicy"), s.traffic_policy) for i, s in enumerate(spec.subsets)]
        for path, tp in policies:
            if tp is None:
                continue
            client(path, tp.tls)
            for j, pls in enumerate(tp.port_level_settings or []):
                client(path + ("portLevelSettings", j), pls.tls)
    elif resource.kind == "Gateway":
        for i, server in enumerate(spec.servers):
            tls = server.tls
            if tls is None or tls.credential_name or tls.credential_names or tls.tls_certificates:
                continue
            if tls.mode in (None, "SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"):
                for field in ("server_certificate", "private_key", "ca_certificates"):
                    check(("spec", "servers", i, "tls", _camel(field)), getattr(tls, field))
    return out


def client_tls_files(error: Error, path: FieldPath, tls: Any) -> None:
    if tls.mode in ("SIMPLE", "MUTUAL") and not tls.credential_name:
        for field, value in (
            ("caCertificates", tls.ca_certificates),
            ("clientCertificate", tls.client_certificate),
            ("privateKey", tls.private_key),
        ):
            certificate_file(error, path + (field,), value)
    if tls.sni is not None and (tls.sni == "" or _FORBIDDEN_IN_HEADER.search(tls.sni) or len(tls.sni) > 255):
        error(path + ("sni",), f"invalid SNI {_show(tls.sni)}")
    for i, san in enumerate(tls.subject_alt_names or []):
        if not san:
            error(path + ("subjectAltNames", i), "subject alternative name must not be empty")


def server_tls(error: Error, path: FieldPath, tls: Any) -> None:
    for i, suite in enumerate(tls.cipher_suites or []):
        names = suite[1:-1].split("|") if suite.startswith("[") and suite.endswith("]") else [suite]
        unknown = [n for n in names if n not in CIPHER_SUITES]
        if unknown:
            error(
                path + ("cipherSuites", i),
                f"unknown cipher suite {_show(unknown[0])} (BoringSSL's names, e.g. ECDHE-RSA-AES128-GCM-SHA256)",
            )
    low, high = tls.min_protocol_version, tls.max_protocol_version
    if low and high and low != "TLS_AUTO" and high != "TLS_AUTO" and _TLS_VERSIONS[low] > _TLS_VERSIONS[high]:
        error(path + ("minProtocolVersion",), f"minProtocolVersion {low} is above maxProtocolVersion {high}")
    if not tls.credential_name and not tls.credential_names and not tls.tls_certificates:
        for field, value in (
            ("serverCertificate", tls.server_certificate),
            ("privateKey", tls.private_key),
            ("caCertificates", tls.ca_certificates),
        ):
            certificate_file(error, path + (field,), value)
    for i, san in enumerate(tls.subject_alt_names or []):
        if not san:
            error(path + ("subjectAltNames", i), "subject alternative name must not be empty")


# ---------------------------------------------------------------------------- authorization


def _cidr_problem(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"invalid IP address or CIDR {_show(value)}"
    return None


def _port_problem(value: str) -> str | None:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        return f"invalid port {_show(value)}: a number in the range 0-65535"
    return None


_CIDR_KEYS = ("source.ip", "remote.ip", "destination.ip")
_PORT_KEYS = ("destination.port",)


def authorization_rule(error: Error, path: FieldPath, rule: Any) -> None:
    for i, f in enumerate(rule.from_ or []):
        if f.source is not None:
            _authorization_source(error, path + ("from", i, "source"), f.source)
    for i, t in enumerate(rule.to or []):
        if t.operation is not None:
            _authorization_operation(error, path + ("to", i, "operation"), t.operation)
    for i, cond in enumerate(rule.when or []):
        _authorization_condition(error, path + ("when", i), cond)


def _authorization_source(error: Error, sp: FieldPath, source: Any) -> None:
    for field in ("ip_blocks", "not_ip_blocks", "remote_ip_blocks", "not_remote_ip_blocks"):
        for j, value in enumerate(getattr(source, field) or []):
            problem = _cidr_problem(value)
            if problem:
                error(sp + (_camel(field), j), problem)


def _authorization_operation(error: Error, op_path: FieldPath, op: Any) -> None:
    for field in ("ports", "not_ports"):
        for j, value in enumerate(getattr(op, field) or []):
            problem = _port_problem(value)
            if problem:
                error(op_path + (_camel(field), j), problem)
    for field in ("methods", "not_methods", "paths", "not_paths", "hosts", "not_hosts"):
        for j, value in enumerate(getattr(op, field) or []):
            if not value:
                error(op_path + (_camel(field), j), "must not be empty")


def _authorization_condition(error: Error, cp: FieldPath, cond: Any) -> None:
    key_problem = _condition_key_problem(cond.key)
    if key_problem:
        error(cp + ("key",), key_problem)
        return
    check = _cidr_problem if cond.key in _CIDR_KEYS else _port_problem if cond.key in _PORT_KEYS else None
    if check is None:
        return
    for field in ("values", "not_values"):
        for j, value in enumerate(getattr(cond, field) or []):
            problem = check(value)
            if problem:
                error(cp + (_camel(field), j), problem)


_BRACKETED = re.compile(r"(request\.headers|request\.auth\.claims)\[(.*)\]")


def _condition_key_problem(key: str) -> str | None:
    """A header or claim named inside [] must be there (an empty header name is an RBAC rule Envoy
    rejects). Keys the translator does not know are left to it (they never match)."""
    m = _BRACKETED.fullmatch(key)
    if m is None:
        return None
    if not m.group(2):
        return f"{m.group(1)}[] needs a name inside the brackets"
    if m.group(1) == "request.headers" and not _HEADER_NAME.fullmatch(m.group(2)):
        return f"invalid header name {_show(m.group(2))}"
    return None


def _camel(name: str) -> str:
    parts = name.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


# ---------------------------------------------------------------------------- JWT


_KEY_FIELDS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "oct": ("k",), "OKP": ("crv", "x")}


def jwks_problem(text: str) -> str | None:
    """Why `text` is not a JSON Web Key Set Envoy's jwt_authn can load, or None."""
    try:
        data = json.loads(text)
    except ValueError as e:
        return f"jwks is not JSON: {str(e)[:80]}"
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
        return 'jwks must be a JSON Web Key Set: an object with a non-empty "keys" list'
    for i, key in enumerate(data["keys"]):
        if not isinstance(key, dict):
            return f"jwks key {i} is not an object"
        kty = key.get("kty")
        if kty not in _KEY_FIELDS:
            return f"jwks key {i}: kty must be one of {', '.join(_KEY_FIELDS)}"
        missing = [f for f in _KEY_FIELDS[kty] if not isinstance(key.get(f), str) or not key.get(f)]
        if missing:
            return f"jwks key {i} ({kty}) lacks {', '.join(missing)}"
    return None


def jwt_rule(error: Error, path: FieldPath, rule: Any) -> None:
    if rule.jwks is not None:
        problem = jwks_problem(rule.jwks)
        if problem:
            error(path + ("jwks",), problem)
    if rule.jwks_uri is not None:
        url = urlparse(rule.jwks_uri)
        if url.scheme not in ("http", "https") or not url.hostname or " " in rule.jwks_uri:
            error(path + ("jwksUri",), f"jwksUri {_show(rule.jwks_uri)} must be an http(s) URL with a host")
    for i, h in enumerate(rule.from_headers or []):
        header_match_name(error, path + ("fromHeaders", i, "name"), h.name)
    if rule.output_payload_to_header is not None:
        header_operation_name(error, path + ("outputPayloadToHeader",), rule.output_payload_to_header)
    for i, c in enumerate(rule.output_claim_to_headers or []):
        header_operation_name(error, path + ("outputClaimToHeaders", i, "header"), c.header)
    for i, a in enumerate(rule.audiences or []):
        if not a:
            error(path + ("audiences", i), "audience must not be empty")


# ---------------------------------------------------------------------------- SNI


def sni_host(error: Error, path: FieldPath, host: str) -> None:
    if host == "*":
        error(path, "'*' is not a server name Envoy can match: leave out the SNI match or use '*.domain'")
