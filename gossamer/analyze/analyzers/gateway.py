"""Gateway analyzers: a selector without workloads (IST0101), ports the workload's Service does not
expose (IST0162), credentialName Secrets missing (IST0101) or invalid (IST0161), gateways that claim
the same selector, port and host (IST0145), certificates shared by gateways (IST0138)."""

from __future__ import annotations

import base64
import binascii
import datetime
from collections.abc import Iterator, Mapping
from typing import Any

from gossamer.analyze.context import Context, selector_matches, selector_string
from gossamer.analyze.messages import Message
from gossamer.analyze.registry import analyzer
from gossamer.resources.base import Resource
from gossamer.resources.networking import Gateway


def _selector_path(gw: Resource[Any]) -> tuple[str, ...]:
    keys = sorted(gw.spec.selector)
    return ("spec", "selector", keys[0]) if keys else ("spec", "selector")


def _no_workload(ctx: Context, gw: Resource[Any]) -> Message:
    return ctx.message(
        "IST0101",
        gw,
        _selector_path(gw),
        f"referenced selector not found: {selector_string(gw.spec.selector)!r} selects no pod",
    )


@analyzer(
    "gateway.IngressGatewayPortAnalyzer",
    "Checks a gateway's ports against the gateway's Kubernetes service ports",
    ("IST0101", "IST0162"),
)
def ingress_ports(ctx: Context) -> Iterator[Message]:
    for gw in ctx.of_kind(Gateway):
        pods = ctx.pods_matching(gw.spec.selector)
        if not pods:
            yield _no_workload(ctx, gw)
            continue
        target_ports: set[int] = set()
        port_map: dict[int, int] = {}
        for pod in pods:
            for svc in ctx.of("Service"):
                if svc.namespace != pod.namespace or not selector_matches(svc.spec.selector, pod.metadata.labels):
                    continue
                for port in svc.spec.ports:
                    if port.protocol != "TCP":
                        continue
                    target = port.target_port if isinstance(port.target_port, int) else 0
                    if target:
                        target_ports.add(target)
                        port_map.setdefault(port.port, target)
                    else:
                        target_ports.add(port.port)
        for server in gw.spec.servers:
            number = server.port.number
            if number not in target_ports and number not in port_map:
                yield ctx.message(
                    "IST0162",
                    gw,
                    _selector_path(gw),
                    f"port {number} is not a (target) port of any Service of the gateway's pods "
                    f"(selector {selector_string(gw.spec.selector)}): it is not reachable through it",
                )


def _secret_certificate(secret: Resource[Any]) -> bytes | None:
    """The serving certificate a Secret holds (tls.crt with tls.key, or cert with key), as Istio reads it."""
    values: dict[str, bytes] = {}
    data = secret.raw.get("data")
    if isinstance(data, dict):
        for key, value in data.items():
            try:
                values[str(key)] = base64.b64decode(str(value), validate=True)
            except (binascii.Error, ValueError):
                values[str(key)] = b""
    string_data = secret.raw.get("stringData")
    if isinstance(string_data, dict):
        values.update({str(k): str(v).encode() for k, v in string_data.items()})
    for cert_key, key_key in (("tls.crt", "tls.key"), ("cert", "key")):
        if values.get(cert_key) and values.get(key_key):
            return values[cert_key]
    return None


def certificate_valid(pem: bytes | None) -> bool:
    if not pem:
        return False
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return False
    now = datetime.datetime.now(datetime.UTC)
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


@analyzer("gateway.SecretAnalyzer", "Checks a gateway's referenced secrets for correctness", ("IST0101", "IST0161"))
def secrets(ctx: Context) -> Iterator[Message]:
    for gw in ctx.of_kind(Gateway):
        pods = ctx.pods_matching(gw.spec.selector)
        if not pods:
            yield _no_workload(ctx, gw)
            continue
        workload_ns = pods[0].namespace  # Secrets are read in the gateway workload's namespace
        for i, server in enumerate(gw.spec.servers):
            name = server.tls.credential_name if server.tls else None
            if not name:
                continue
            ns, sep, short = name.partition("/")
            secret = ctx.find("Secret", ns, short) if sep else ctx.find("Secret", workload_ns, name)
            path = ("spec", "servers", i, "tls", "credentialName")
            if secret is None:
                yield ctx.message(
                    "IST0101", gw, path, f"referenced credentialName not found: {name!r} (no Secret in {workload_ns})"
                )
            elif not certificate_valid(_secret_certificate(secret)):
                yield ctx.message(
                    "IST0161",
                    gw,
                    path,
                    f"Secret {secret.namespace}/{secret.name} holds no valid certificate and key "
                    "(tls.crt/tls.key or cert/key, PEM, not expired)",
                )


def _key(selector: Mapping[str, str], port: int) -> tuple[str, int]:
    return selector_string(selector), port


def _parse_selector(text: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in text.split(",") if p.count("=") == 1)


@analyzer(
    "gateway.ConflictingGatewayAnalyzer", "Checks a gateway's selector, port number and hosts", ("IST0101", "IST0145")
)
def conflicting_gateways(ctx: Context) -> Iterator[Message]:
    by_key: dict[tuple[str, int], dict[str, dict[str, str | None]]] = {}
    for gw in ctx.of_kind(Gateway):
        for server in gw.spec.servers:
            hosts = by_key.setdefault(_key(gw.spec.selector, server.port.number), {})
            hosts[f"{gw.namespace}/{gw.name}"] = {h: server.bind for h in server.hosts}
    for gw in ctx.of_kind(Gateway):
        name = f"{gw.namespace}/{gw.name}"
        own = selector_string(gw.spec.selector)
        same: dict[tuple[str, int], dict[str, dict[str, str | None]]] = {}
        for (selector, port), entries in by_key.items():
            matched = selector == own
            if not matched and (selector in own or own in selector):
                other = _parse_selector(selector)
                matched = any(
                    selector_matches(gw.spec.selector, p.metadata.labels) and selector_matches(other, p.metadata.labels)
                    for p in ctx.pods
                )
            if matched:
                same[(selector, port)] = entries
        if own and not same:
            yield _no_workload(ctx, gw)
            continue
        for server in gw.spec.servers:
            conflicts = sorted(
                other
                for (_, port), entries in same.items()
                if port == server.port.number
                for other, known in entries.items()
                if other != name and any(h in known and known[h] == server.bind for h in server.hosts)
            )
            if conflicts:
                yield ctx.message(
                    "IST0145",
                    gw,
                    ("metadata", "name"),
                    f"gateways {','.join(conflicts)} also serve port {server.port.number} for hosts "
                    f"{','.join(server.hosts)} on the workloads selected by {own or '<all>'}",
                )


def _same_certificate(a: Any, b: Any) -> bool:
    if a.credential_name and b.credential_name:
        return bool(a.credential_name == b.credential_name)
    if not a.credential_name and not b.credential_name and a.server_certificate and b.server_certificate:
        return bool(
            a.server_certificate == b.server_certificate
            and a.private_key
            and b.private_key
            and a.private_key == b.private_key
        )
    return False


def _selector_subset(x: Mapping[str, str], y: Mapping[str, str]) -> bool:
    return all(k in y and y[k] == v for k, v in x.items())


@analyzer("gateway.CertificateAnalyzer", "Checks a gateway certificate", ("IST0138",))
def duplicate_certificates(ctx: Context) -> Iterator[Message]:
    gateways = ctx.of_kind(Gateway)
    for gw in gateways:
        for other in gateways:
            if other is gw or not _selector_subset(gw.spec.selector, other.spec.selector):
                continue
            for server in gw.spec.servers:
                for other_server in other.spec.servers:
                    if server.tls and other_server.tls and _same_certificate(server.tls, other_server.tls):
                        yield ctx.message(
                            "IST0138",
                            gw,
                            ("metadata", "name"),
                            f"gateways {gw.namespace}/{gw.name} and {other.namespace}/{other.name} "
                            "serve the same certificate: HTTP/2 clients reusing a connection across "
                            "them may get 404s",
                        )
