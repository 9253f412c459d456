"""A real Envoy gets its certificate from the agent's SDS server: mTLS handshakes, rotation.

Envoy's static bootstrap has the `sds-grpc` cluster (the agent's unix socket) and one TLS
listener on 127.0.0.1 whose DownstreamTlsContext takes `default` (the workload certificate)
and `ROOTCA` (the mesh root, client certificates required) over SDS - the shape the mTLS
translation produces.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from gossamer.agent.bootstrap import _grpc_pipe_cluster
from gossamer.agent.sds import SdsServer, issue_workload_certificate
from gossamer.mesh import ROOT_SECRET, SDS_CLUSTER, WORKLOAD_SECRET
from gossamer.runtime.sandbox import proxy_uid
from gossamer.security import CertificateAuthority
from tests.e2e.envoy_helper import EnvoyProcess, envoy_binary, free_port, start_envoy
from tests.e2e.mesh import Mesh

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(envoy_binary() is None, reason="no envoy binary")]

SERVER_ID = "spiffe://cluster.local/ns/default/sa/reviews"
CLIENT_ID = "spiffe://cluster.local/ns/default/sa/productpage"
TLS_CONTEXT = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
# What transport sockets built by the translation reference (Istio's shape).
SDS_CONFIG = {
    "api_config_source": {
        "api_type": "GRPC",
        "transport_api_version": "V3",
        "grpc_services": [{"envoy_grpc": {"cluster_name": SDS_CLUSTER}}],
    },
    "resource_api_version": "V3",
}


def bootstrap(sds_socket: Path, admin_socket: Path, port: int) -> dict[str, Any]:
    tls = {
        "@type": TLS_CONTEXT,
        "require_client_certificate": True,
        "common_tls_context": {
            "tls_certificate_sds_secret_configs": [{"name": WORKLOAD_SECRET, "sds_config": SDS_CONFIG}],
            "validation_context_sds_secret_config": {"name": ROOT_SECRET, "sds_config": SDS_CONFIG},
        },
    }
    hcm = {
        "@type": HCM,
        "stat_prefix": "mtls",
        "route_config": {
            "name": "local",
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}
                    ],
                }
            ],
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    return {
        "node": {"id": "sidecar~127.0.0.1~reviews.default~default.svc.cluster.local", "cluster": "reviews.default"},
        "admin": {"address": {"pipe": {"path": str(admin_socket)}}},
        "static_resources": {
            "clusters": [_grpc_pipe_cluster(SDS_CLUSTER, sds_socket)],
            "listeners": [
                {
                    "name": "mtls",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {
                            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls},
                            "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}],
                        }
                    ],
                }
            ],
        },
    }


@dataclass
class Reply:
    status_line: str
    peer_uris: list[str]
    peer_serial: int


def mtls_get(port: int, root_pem: str, cert_file: Path | None, key_file: Path | None) -> Reply:
    """GET / over TLS with an optional client certificate; raises on any TLS failure."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # SPIFFE: the identity is the URI SAN, checked below
    ctx.load_verify_locations(cadata=root_pem)
    if cert_file is not None and key_file is not None:
        ctx.load_cert_chain(cert_file, key_file)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        cert = x509.load_der_x509_certificate(der)
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        tls.sendall(b"GET / HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(4096):  # a rejected client certificate surfaces here (TLS 1.3)
            data += chunk
    if not data:
        raise ConnectionError("connection closed without a response")
    return Reply(
        status_line=data.split(b"\r\n", 1)[0].decode(),
        peer_uris=uris.get_values_for_type(x509.UniformResourceIdentifier),
        peer_serial=cert.serial_number,
    )


def write_identity(ca: CertificateAuthority, identity: str, directory: Path) -> tuple[Path, Path]:
    cert = issue_workload_certificate(ca, identity, timedelta(hours=1))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert.pem").write_text(cert.cert_pem)
    (directory / "key.pem").write_text(cert.key_pem)
    (directory / "key.pem").chmod(0o600)
    return directory / "cert.pem", directory / "key.pem"


@dataclass
class Setup:
    ca: CertificateAuthority
    sds: SdsServer
    envoy: EnvoyProcess
    port: int
    tmp: Path


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    ca = CertificateAuthority(tmp_path / "ca")
    # Short-lived certificates: a rotation every ~3 s.
    sds = SdsServer(
        identity=SERVER_ID,
        signer=ca,
        socket_path=tmp_path / "pod" / "sds.sock",
        ttl=timedelta(seconds=6),
        rotate_fraction=0.5,
    )
    await sds.start()
    port = free_port()
    envoy: EnvoyProcess | None = None
    try:
        envoy = await asyncio.to_thread(
            start_envoy, bootstrap(sds.socket_path, tmp_path / "admin.sock", port), tmp_path / "envoy"
        )
        yield Setup(ca, sds, envoy, port, tmp_path)
    finally:
        if envoy is not None:
            await asyncio.to_thread(envoy.stop)  # by PID
        await sds.stop()


async def wait_listening(port: int, envoy: EnvoyProcess, timeout: float = 20.0) -> None:
    """The listener binds once both secrets arrived (it warms until then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"envoy never listened on {port}:\n{envoy.log()}")


async def test_envoy_serves_the_sds_certificate_and_rotates(setup: Setup) -> None:
    s = setup
    await wait_listening(s.port, s.envoy)
    # Envoy ACKed both secrets (one stream per secret).
    assert await s.sds.wait_for(
        lambda sds: (
            {n for st in sds.streams() if st.acked_version for n in st.resource_names} >= {WORKLOAD_SECRET, ROOT_SECRET}
        ),
        10,
    ), s.sds.streams()
    assert all(st.error is None for st in s.sds.streams())

    # 1. A client with a certificate from the mesh CA: handshake OK, server is the SPIFFE id.
    cert_file, key_file = write_identity(s.ca, CLIENT_ID, s.tmp / "client")
    reply = await asyncio.to_thread(mtls_get, s.port, s.ca.root_pem, cert_file, key_file)
    assert reply.status_line == "HTTP/1.1 200 OK"
    assert reply.peer_uris == [SERVER_ID]

    # 2. A client certificate from another CA, or none: rejected by Envoy.
    other = CertificateAuthority(s.tmp / "other-ca")
    bad_cert, bad_key = write_identity(other, CLIENT_ID, s.tmp / "intruder")
    for cf, kf in ((bad_cert, bad_key), (None, None)):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            await asyncio.to_thread(mtls_get, s.port, s.ca.root_pem, cf, kf)

    # 3. Rotation: the agent re-issues at half the 6 s lifetime and pushes; new handshakes
    #    see a new serial, and Envoy's admin /certs shows it.
    first = reply.peer_serial
    deadline = time.monotonic() + 20
    while True:
        reply = await asyncio.to_thread(mtls_get, s.port, s.ca.root_pem, cert_file, key_file)
        if reply.peer_serial != first:
            break
        assert time.monotonic() < deadline, f"serial never changed (rotations={s.sds.rotations})\n{s.envoy.log()}"
        await asyncio.sleep(0.2)
    assert reply.status_line == "HTTP/1.1 200 OK" and reply.peer_uris == [SERVER_ID]
    assert s.sds.rotations >= 1
    code, certs = await asyncio.to_thread(s.envoy.admin, "/certs")
    assert code == 200
    assert f"{s.sds.certificate.serial:x}" in certs.lower() or f"{reply.peer_serial:x}" in certs.lower()
    assert all(st.error is None for st in s.sds.streams())


def test_bookinfo_pods_get_certificates_over_sds(bookinfo: Mesh) -> None:
    """`gossamer up` wires the CA in: every pod's agent serves its SPIFFE certificate on sds.sock."""
    root_file = bookinfo.state_dir / "ca" / "root-cert.pem"
    assert stat.S_IMODE((bookinfo.state_dir / "ca" / "root-key.pem").stat().st_mode) == 0o600
    root = x509.load_pem_x509_certificate(root_file.read_bytes())
    bootstraps = sorted(bookinfo.run_dir.glob("*/envoy.json"))
    assert len(bootstraps) >= 7, bootstraps  # 6 bookinfo pods + the ingress gateway
    seen: set[str] = set()
    for path in bootstraps:
        boot = json.loads(path.read_text())
        meta = boot["node"]["metadata"]
        (cluster,) = [c for c in boot["static_resources"]["clusters"] if c["name"] == SDS_CLUSTER]
        sock = Path(
            cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["pipe"]["path"]
        )
        assert sock == path.parent / "sds.sock" and stat.S_ISSOCK(sock.stat().st_mode)
        if meta["INTERCEPTION_MODE"] == "REDIRECT":  # sidecars run as their pod's own proxy user
            assert sock.stat().st_uid == proxy_uid(meta["INSTANCE_IPS"])
        assert not sock.stat().st_mode & (stat.S_IRWXO | stat.S_IRWXG)  # nobody else gets the private key
        with grpc.insecure_channel(f"unix:{sock}") as channel:
            stub = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)
            resp = stub.FetchSecrets(discovery_pb2.DiscoveryRequest(resource_names=[WORKLOAD_SECRET]), timeout=5)
        secret = secret_pb2.Secret()
        assert resp.resources[0].Unpack(secret)
        leaf = x509.load_pem_x509_certificate(secret.tls_certificate.certificate_chain.inline_bytes)
        leaf.verify_directly_issued_by(root)
        uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        identity = f"spiffe://cluster.local/ns/{meta['NAMESPACE']}/sa/{meta['SERVICE_ACCOUNT']}"
        assert uris.get_values_for_type(x509.UniformResourceIdentifier) == [identity]
        seen.add(identity)
    assert "spiffe://cluster.local/ns/default/sa/bookinfo-productpage" in seen
