"""`gossamer proxy-config secret POD`: the workload certificate a pod's agent serves its Envoy over SDS
(like `istioctl proxy-config secret`). The private key is never part of it."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from gossamer.agent.sds import SdsStreamStatus, WorkloadCertificate
from gossamer.mesh import ROOT_SECRET


def _uri_sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value.get_values_for_type(x509.UniformResourceIdentifier))


def secret_summary(cert: WorkloadCertificate, streams: list[SdsStreamStatus]) -> dict[str, Any]:
    leaf = x509.load_pem_x509_certificate(cert.cert_pem.encode())
    root = x509.load_pem_x509_certificate(cert.root_pem.encode())
    return {
        "certificate": {
            "name": "default",
            "identity": (_uri_sans(leaf) or [cert.identity])[0],
            "serial": format(leaf.serial_number, "x"),
            "issuer": leaf.issuer.rfc4514_string(),
            "notBefore": leaf.not_valid_before_utc.isoformat(),
            "notAfter": leaf.not_valid_after_utc.isoformat(),
            "issuedAt": cert.issued_at.isoformat(),
        },
        "root": {
            "name": ROOT_SECRET,
            "subject": root.subject.rfc4514_string(),
            "sha256": root.fingerprint(hashes.SHA256()).hex(":").upper(),
            "notAfter": root.not_valid_after_utc.isoformat(),
        },
        "streams": [
            {
                "streamId": s.stream_id,
                "nodeId": s.node_id,
                "resourceNames": list(s.resource_names),
                "sentVersion": s.sent_version,
                "ackedVersion": s.acked_version,
                "nackedVersion": s.nacked_version,
                "error": s.error,
                "lastAck": s.last_ack,
            }
            for s in streams
        ],
    }
