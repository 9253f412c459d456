"""Mesh security: the CA that signs workload certificates (Istio's istiod CA)."""

from gossamer.security.ca import (
    DEFAULT_CERT_TTL,
    TRUST_DOMAIN,
    CertificateAuthority,
    CsrRejected,
    spiffe_id,
)

__all__ = ["DEFAULT_CERT_TTL", "TRUST_DOMAIN", "CertificateAuthority", "CsrRejected", "spiffe_id"]
