"""Validation of Service and Secret."""

from __future__ import annotations

import re
from typing import Any

from gossamer.resources import core, envoy_checks
from gossamer.resources.base import FieldPath
from gossamer.resources.core import Secret, Service
from gossamer.resources.validation.common import (
    Finding,
    Report,
    check_int_or_name,
    check_labels,
    is_dns1123_label,
    is_ip,
)


def validate_service(res: Service) -> list[Finding]:
    rep = Report()
    spec = res.spec
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
        check_int_or_name(rep, p + ("targetPort",), port.target_port)
        if port.node_port is not None:
            rep.warn(p + ("nodePort",), "nodePort is ignored")
    if spec.selector:
        check_labels(rep, sp + ("selector",), spec.selector)
    return rep.findings


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


def validate_secret(res: Secret) -> list[Finding]:
    rep = Report()
    raw = res.raw
    kind = raw.get("type", "Opaque")
    if not isinstance(kind, str) or not kind:
        rep.error(("type",), "type must be a string like kubernetes.io/tls or Opaque")
        kind = "Opaque"
    fields = _secret_fields(rep, raw)
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


def _secret_fields(rep: Report, raw: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """The keys of `data` and `stringData` whose values are usable, with the path of each value."""
    import base64
    import binascii

    fields: dict[str, tuple[str, ...]] = {}
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
    return fields
