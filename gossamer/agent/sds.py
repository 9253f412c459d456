"""The agent's SDS server: a workload certificate for Envoy, over a unix socket (Istio's pilot-agent SDS).

Per pod, the agent makes an EC P-256 key pair and a CSR for the pod's SPIFFE identity,
has it signed by the CA (any `CertificateSigner`: the in-process `CertificateAuthority`
today, a remote CA client later) and serves Envoy two secrets, with Istio's names:

* `default` - tls_certificate: the workload certificate chain and private key (inline PEM);
* `ROOTCA`  - validation_context: trusted_ca = the mesh root certificate.

Envoy reaches it through the static cluster `sds-grpc` (see `bootstrap.build_bootstrap`).
The server speaks SotW SDS (`StreamSecrets`) with per-stream nonces, content-derived
versions and ACK/NACK bookkeeping (a NACKed version is not resent), plus `FetchSecrets`.
The private key never touches the disk.

Rotation: once `rotate_fraction` (0.8) of a certificate's lifetime has passed, a new key
and certificate are issued and pushed to every connected Envoy; if the CA fails, the
agent retries with backoff and keeps serving the current certificate meanwhile. A new
identity (`set_identity`: the mesh's trust domain changed) is a rotation now.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import secrets
import stat
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from gossamer.mesh import ROOT_SECRET, SDS_CLUSTER, WORKLOAD_SECRET
from gossamer.xds.streams import CHANGED, Changed, End, read_requests

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CERT_TTL",
    "ROOT_SECRET",
    "SDS_CLUSTER",
    "SECRET_TYPE",
    "WORKLOAD_SECRET",
    "CertificateSigner",
    "SdsServer",
    "SdsStreamStatus",
    "WorkloadCertificate",
    "issue_workload_certificate",
    "sds_socket_for",
    "secrets_for",
]

SDS_SOCKET_NAME = "sds.sock"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
DEFAULT_CERT_TTL = timedelta(hours=24)
DEFAULT_ROTATE_FRACTION = 0.8
MAX_RETRY_DELAY = 30.0

_NONCE_PREFIX = secrets.token_hex(4)
_nonce_counter = itertools.count(1)
_stream_ids = itertools.count(1)


def _next_nonce() -> str:
    return f"sds-{_NONCE_PREFIX}-{next(_nonce_counter)}"


class CertificateSigner(Protocol):
    """What the agent needs from a CA (gossamer.security.CertificateAuthority is one)."""

    @property
    def root_pem(self) -> str: ...

    def sign_csr(self, csr_pem: str, identity: str, ttl: timedelta) -> str: ...


@dataclass(frozen=True)
class WorkloadCertificate:
    identity: str
    cert_pem: str
    key_pem: str = field(repr=False)
    root_pem: str
    serial: int
    not_before: datetime
    not_after: datetime
    issued_at: datetime  # when the agent got it (not_before is backdated by the CA)

    def rotate_at(self, fraction: float) -> datetime:
        """`fraction` of the way from issue to expiry."""
        return self.issued_at + (self.not_after - self.issued_at) * fraction


def issue_workload_certificate(signer: CertificateSigner, identity: str, ttl: timedelta) -> WorkloadCertificate:
    """New key pair + CSR for `identity`, signed by `signer` (blocking: run it in a thread)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True)
        .sign(key, hashes.SHA256())
    )
    issued_at = datetime.now(UTC)
    cert_pem = signer.sign_csr(csr.public_bytes(serialization.Encoding.PEM).decode(), identity, ttl)
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    if cert.public_key() != key.public_key():
        raise ValueError("the CA returned a certificate for another key")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return WorkloadCertificate(
        identity=identity,
        cert_pem=cert_pem,
        key_pem=key_pem,
        root_pem=signer.root_pem,
        serial=cert.serial_number,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        issued_at=issued_at,
    )


def secrets_for(cert: WorkloadCertificate) -> dict[str, secret_pb2.Secret]:
    workload = secret_pb2.Secret(name=WORKLOAD_SECRET)
    workload.tls_certificate.certificate_chain.inline_bytes = cert.cert_pem.encode()
    workload.tls_certificate.private_key.inline_bytes = cert.key_pem.encode()
    root = secret_pb2.Secret(name=ROOT_SECRET)
    root.validation_context.trusted_ca.inline_bytes = cert.root_pem.encode()
    return {WORKLOAD_SECRET: workload, ROOT_SECRET: root}


@dataclass
class SdsStreamStatus:
    """One Envoy SDS stream, as the agent sees it."""

    stream_id: int
    node_id: str = ""
    resource_names: tuple[str, ...] = ()
    sent_version: str = ""
    acked_version: str = ""
    nonce: str = ""  # latest nonce sent
    nacked_version: str | None = None  # set while the latest response sent is NACKed
    error: str | None = None  # Envoy's error_detail.message for the NACK
    last_sent: float = 0.0
    last_ack: float = 0.0
    connected_at: float = field(default_factory=time.time)


@dataclass
class _Stream:
    status: SdsStreamStatus
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    names: frozenset[str] | None = None  # None until the first request
    wake_pending: bool = False

    def wake(self) -> None:
        if not self.wake_pending:
            self.wake_pending = True
            self.queue.put_nowait(CHANGED)


class SdsServer(sds_pb2_grpc.SecretDiscoveryServiceServicer):  # type: ignore[misc]
    """SDS for one workload identity on one unix socket."""

    def __init__(
        self,
        *,
        identity: str,
        signer: CertificateSigner,
        socket_path: Path,
        ttl: timedelta = DEFAULT_CERT_TTL,
        rotate_fraction: float = DEFAULT_ROTATE_FRACTION,
        socket_owner: int | None = None,
        retry_delay: float = 1.0,
    ) -> None:
        if not 0.0 < rotate_fraction < 1.0:
            raise ValueError("rotate_fraction must be between 0 and 1")
        self.identity = identity
        self.signer = signer
        self.socket_path = Path(socket_path)
        self.ttl = ttl
        self.rotate_fraction = rotate_fraction
        self.socket_owner = socket_owner
        self.retry_delay = retry_delay
        self.rotations = 0  # certificates issued after the first
        self._cert: WorkloadCertificate | None = None
        self._streams: dict[int, _Stream] = {}
        self._grpc: grpc.aio.Server | None = None
        self._rotator: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._reissue = asyncio.Event()  # set_identity: rotate now

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Get the first certificate, then listen (so Envoy's first request is answered at once)."""
        await self.issue()
        path = self.socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                path.unlink()
        server = grpc.aio.server(
            options=[
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.keepalive_permit_without_calls", 1),
            ]
        )
        sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(self, server)
        server.add_insecure_port(f"unix:{path}")
        await server.start()
        self._grpc = server
        try:
            # Only the pod's proxy user (and root) may connect: the socket hands out the private key.
            if self.socket_owner is not None and os.geteuid() == 0:
                os.chown(path, self.socket_owner, self.socket_owner)
            os.chmod(path, 0o600)
        except BaseException:
            await self.stop()
            raise
        self._rotator = asyncio.get_running_loop().create_task(self._rotate_loop(), name=f"sds-rotate {path}")
        log.info("sds %s: serving %s (serial %x)", path, self.identity, self.certificate.serial)

    async def stop(self) -> None:
        if self._rotator is not None:
            self._rotator.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._rotator
            self._rotator = None
        if self._grpc is not None:
            await self._grpc.stop(grace=0.2)
            self._grpc = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    # ---- certificates ------------------------------------------------------------------

    @property
    def certificate(self) -> WorkloadCertificate:
        if self._cert is None:
            raise RuntimeError("no certificate issued yet (call start())")
        return self._cert

    async def issue(self) -> WorkloadCertificate:
        """Issue a new key pair and certificate now and push it to connected Envoys."""
        cert = await asyncio.to_thread(issue_workload_certificate, self.signer, self.identity, self.ttl)
        if self._cert is not None:
            self.rotations += 1
        self._cert = cert
        for stream in self._streams.values():
            stream.wake()
        self._signal()
        return cert

    def set_identity(self, identity: str) -> None:
        """Serve certificates for IDENTITY from now on: one is asked for at once (Envoy keeps the current
        one until it comes; failures are retried as rotations are)."""
        if identity != self.identity:
            self.identity = identity
            self._reissue.set()

    def _needs_reissue(self) -> bool:
        return self._cert is not None and self._cert.identity != self.identity

    async def _rotate_loop(self) -> None:
        failures = 0
        while True:
            delay = (self.certificate.rotate_at(self.rotate_fraction) - datetime.now(UTC)).total_seconds()
            if failures:
                delay = min(self.retry_delay * 2 ** (failures - 1), MAX_RETRY_DELAY)
            elif self._needs_reissue():
                delay = 0.0
            self._reissue.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reissue.wait(), max(delay, 0.0))
            try:
                cert = await self.issue()
            except Exception as e:  # noqa: BLE001 - keep serving the current certificate, retry
                failures += 1
                log.warning("sds %s: certificate rotation failed (%s); retrying", self.identity, e)
                continue
            failures = 0
            log.info("sds %s: rotated certificate (serial %x, expires %s)", self.identity, cert.serial, cert.not_after)

    # ---- status ------------------------------------------------------------------------

    def streams(self) -> list[SdsStreamStatus]:
        return [replace(s.status) for s in self._streams.values()]

    async def wait_for(self, predicate: Any, timeout: float) -> bool:
        """Wait until `predicate(self)` holds (re-checked on every stream status change)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)
        return True

    def _signal(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # ---- resources ---------------------------------------------------------------------

    def _response(self, names: Iterable[str]) -> discovery_pb2.DiscoveryResponse:
        """The secrets asked for (all for a wildcard request); the version hashes their content."""
        available = secrets_for(self.certificate)
        wanted = sorted(set(names)) or sorted(available)
        resp = discovery_pb2.DiscoveryResponse(type_url=SECRET_TYPE)
        digest = hashlib.sha256()
        for name in wanted:
            secret = available.get(name)
            if secret is None:
                continue  # SotW: absent from the response = does not exist
            data = secret.SerializeToString(deterministic=True)
            digest.update(name.encode() + b"\0" + data)
            resp.resources.add().Pack(secret)
        resp.version_info = digest.hexdigest()[:16]
        return resp

    # ---- gRPC --------------------------------------------------------------------------

    async def FetchSecrets(  # noqa: N802 - gRPC method name
        self, request: discovery_pb2.DiscoveryRequest, context: Any
    ) -> discovery_pb2.DiscoveryResponse:
        return self._response(request.resource_names)

    async def StreamSecrets(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest], context: Any
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        stream = _Stream(status=SdsStreamStatus(stream_id=next(_stream_ids)))
        self._streams[stream.status.stream_id] = stream
        reader = asyncio.get_running_loop().create_task(read_requests(request_iterator, stream.queue))
        try:
            while True:
                item = await stream.queue.get()
                if isinstance(item, End):
                    if item.error is not None and not isinstance(item.error, asyncio.CancelledError):
                        log.debug("sds stream %d ended: %r", stream.status.stream_id, item.error)
                    return
                if isinstance(item, Changed):
                    stream.wake_pending = False
                    resp = self._on_change(stream)
                else:
                    resp = self._on_request(stream, item)
                if resp is not None:
                    yield resp
                self._signal()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self._streams.pop(stream.status.stream_id, None)
            self._signal()

    def _send(self, stream: _Stream, resp: discovery_pb2.DiscoveryResponse) -> discovery_pb2.DiscoveryResponse:
        st = stream.status
        resp.nonce = _next_nonce()
        st.nonce = resp.nonce
        st.sent_version = resp.version_info
        st.last_sent = time.time()
        return resp

    def _on_request(
        self, stream: _Stream, req: discovery_pb2.DiscoveryRequest
    ) -> discovery_pb2.DiscoveryResponse | None:
        st = stream.status
        if req.HasField("node") and req.node.id:
            st.node_id = req.node.id
        if req.type_url and req.type_url != SECRET_TYPE:
            log.warning("sds stream %d: unexpected type %s", st.stream_id, req.type_url)
            return None
        names = frozenset(req.resource_names)
        if req.response_nonce:
            if req.response_nonce != st.nonce:
                return None  # stale: answers a response that a newer one superseded
            if req.HasField("error_detail"):
                st.nacked_version = st.sent_version
                st.error = req.error_detail.message
                log.warning(
                    "sds stream %d (%s): NACK of version %s: %s",
                    st.stream_id,
                    st.node_id,
                    st.sent_version,
                    req.error_detail.message,
                )
            else:
                st.acked_version = req.version_info
                st.nacked_version = None
                st.error = None
                st.last_ack = time.time()
            if names == stream.names:
                return None  # an ACK/NACK only: nothing new to send
        stream.names = names
        st.resource_names = tuple(sorted(names))
        return self._send(stream, self._response(names))

    def _on_change(self, stream: _Stream) -> discovery_pb2.DiscoveryResponse | None:
        if stream.names is None:
            return None  # not subscribed yet: the first request gets the current version
        resp = self._response(stream.names)
        st = stream.status
        if resp.version_info in (st.sent_version, st.nacked_version):
            return None
        return self._send(stream, resp)


def sds_socket_for(run_dir: Path) -> Path:
    return Path(run_dir) / SDS_SOCKET_NAME
