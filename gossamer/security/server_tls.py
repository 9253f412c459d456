"""The control plane's gRPC server over mTLS (what istiod's xDS port is to pilot-agent).

The server presents a certificate from the mesh CA for `istiod.istio-system.svc` (DNS SAN only, so
no workload can obtain one like it) and requires a client certificate that chains to the mesh root.
The certificate is renewed in-process: gRPC asks `_fetch` on each new handshake, which hands over a
fresh one once `rotate_fraction` of the current one's lifetime has passed.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

import grpc

from gossamer.mesh import CONTROL_PLANE_NAME  # Istio's: the SAN and SNI proxies expect

SERVER_CERT_TTL = timedelta(hours=24)


class ServerCertificateIssuer(Protocol):
    @property
    def root_pem(self) -> str: ...

    def issue_server_certificate(self, dns_name: str, ttl: timedelta) -> tuple[str, str]: ...


class ServerTls:
    """Dynamic server credentials that require and verify client certificates against the mesh root."""

    def __init__(
        self, ca: ServerCertificateIssuer, *, ttl: timedelta = SERVER_CERT_TTL, rotate_fraction: float = 0.5
    ) -> None:
        self.ca = ca
        self.ttl = ttl
        self.rotate_fraction = rotate_fraction
        self._lock = threading.Lock()
        self._renew_at = datetime.now(UTC)
        self.issued = 0
        initial = self._config()
        assert initial is not None
        self.credentials: grpc.ServerCredentials = grpc.dynamic_ssl_server_credentials(
            initial, self._fetch, require_client_authentication=True
        )

    def _config(self) -> grpc.ServerCertificateConfiguration | None:
        cert_pem, key_pem = self.ca.issue_server_certificate(CONTROL_PLANE_NAME, self.ttl)
        self._renew_at = datetime.now(UTC) + self.ttl * self.rotate_fraction
        self.issued += 1
        return grpc.ssl_server_certificate_configuration(
            [(key_pem.encode(), cert_pem.encode())], root_certificates=self.ca.root_pem.encode()
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's per-handshake hook: None keeps the current certificate."""
        with self._lock:
            if datetime.now(UTC) < self._renew_at:
                return None
            return self._config()
