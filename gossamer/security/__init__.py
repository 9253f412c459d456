"""Mesh security: the CA that signs workload certificates (Istio's istiod CA)."""

from gossamer.security.ca import (
    DEFAULT_CERT_TTL,
    CertificateAuthority,
    CsrRejected,
)

__all__ = ["DEFAULT_CERT_TTL", "CertificateAuthority", "CsrRejected"]
