"""TLS-terminating gateway servers (Istio's Secure Gateways): `tls.mode` SIMPLE / MUTUAL /
OPTIONAL_MUTUAL with `credentialName`, certificates from Secrets in the gateway workload's namespace.

Secrets are named as Istio's SDS names them: `kubernetes://NAME` (certificate and key: `tls.crt`
and `tls.key`, or an Opaque Secret's `cert` and `key`) and `kubernetes://NAME-cacert` (the CA
client certificates must chain to: `ca.crt` / `cacert` of the same Secret, else of the Secret
`NAME-cacert`). A proxy only gets the secrets its own servers refer to.
"""

from __future__ import annotations

from typing import cast

from gossamer.ir.types import GatewayTlsMode, GatewayTlsServer, TlsSecret
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.resources.core import CA_CERT_KEY, TLS_CERT_KEY, TLS_KEY_KEY, Secret, secret_data
from gossamer.resources.networking import Server

SECRET_PREFIX = "kubernetes://"
CA_SUFFIX = "-cacert"
TERMINATING_MODES: frozenset[str] = frozenset({"SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"})


def terminating_mode(server: Server) -> GatewayTlsMode | None:
    """The TLS mode of an HTTPS server that terminates TLS with a credentialName, else None."""
    tls = server.tls
    if tls is None or (server.port.protocol or "").upper() != "HTTPS":
        return None
    mode = tls.mode or "SIMPLE"
    if mode not in TERMINATING_MODES or not tls.credential_name:
        return None
    return cast(GatewayTlsMode, mode)


def _secret(snapshot: MeshSnapshot, namespace: str, name: str) -> dict[str, bytes] | None:
    for res in snapshot.of_kind(Secret):
        if res.metadata.namespace == namespace and res.metadata.name == name:
            return secret_data(res.raw)
    return None


def _text(value: bytes | None) -> str:
    return value.decode(errors="replace") if value else ""


def credential(snapshot: MeshSnapshot, namespace: str, name: str) -> TlsSecret | None:
    """`kubernetes://NAME`: the certificate and key of Secret NAMESPACE/NAME, or None."""
    data = _secret(snapshot, namespace, name)
    if data is None:
        return None
    cert = data.get(TLS_CERT_KEY) or data.get("cert")
    key = data.get(TLS_KEY_KEY) or data.get("key")
    if not cert or not key:
        return None
    return TlsSecret(SECRET_PREFIX + name, certificate_chain=_text(cert), private_key=_text(key))


def ca_credential(snapshot: MeshSnapshot, namespace: str, name: str) -> TlsSecret | None:
    """`kubernetes://NAME-cacert`: ca.crt (or cacert) of Secret NAME, else of Secret NAME-cacert."""
    for secret_name in (name, name + CA_SUFFIX):
        data = _secret(snapshot, namespace, secret_name)
        ca = (data or {}).get(CA_CERT_KEY) or (data or {}).get("cacert")
        if ca:
            return TlsSecret(SECRET_PREFIX + name + CA_SUFFIX, trusted_ca=_text(ca))
    return None


def sni_names(hosts: list[str]) -> tuple[str, ...]:
    """Server hosts ("ns/host") as SNI names; a "*" host matches any SNI (no server_names)."""
    names = [h.rpartition("/")[2] for h in hosts]
    if "*" in names:
        return ()
    return tuple(dict.fromkeys(names))


def route_table_name(server: Server, gw_name: str) -> str:
    """Istio's name for an HTTPS server's route table: https.<number>.<port name>.<gateway>.<namespace>."""
    ns, _, name = gw_name.partition("/")
    return f"https.{server.port.number}.{server.port.name or ''}.{name}.{ns}"


def tls_server(
    snapshot: MeshSnapshot, namespace: str, server: Server, gw_name: str, mode: GatewayTlsMode
) -> tuple[GatewayTlsServer, list[TlsSecret]] | None:
    """The filter chain of one server and the secrets it needs, or None when its credential is
    missing or incomplete (Istio skips such a server: nothing could complete its handshake)."""
    tls = server.tls
    assert tls is not None and tls.credential_name  # MODE: terminating_mode(server), which needs both
    cert = credential(snapshot, namespace, tls.credential_name)
    if cert is None:
        return None
    secrets = [cert]
    validation = ""
    if mode in ("MUTUAL", "OPTIONAL_MUTUAL"):
        ca = ca_credential(snapshot, namespace, tls.credential_name)
        if ca is None:
            return None
        secrets.append(ca)
        validation = ca.name
    ir = GatewayTlsServer(
        name=route_table_name(server, gw_name),
        server_names=sni_names(server.hosts),
        route_table=route_table_name(server, gw_name),
        mode=mode,
        certificate=cert.name,
        validation=validation,
        subject_alt_names=tuple(tls.subject_alt_names or ()),
        min_protocol=tls.min_protocol_version or "",
        max_protocol=tls.max_protocol_version or "",
        cipher_suites=tuple(tls.cipher_suites or ()),
    )
    return ir, secrets
