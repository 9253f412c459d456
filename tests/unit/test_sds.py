"""The agent's SDS server over a real gRPC unix socket: secrets, ACK/NACK, rotation push."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from google.rpc import status_pb2

from gossamer.agent import build_bootstrap
from gossamer.agent.sds import SECRET_TYPE, SdsServer
from gossamer.mesh import ROOT_SECRET, WORKLOAD_SECRET
from gossamer.security import CertificateAuthority

IDENTITY = "spiffe://cluster.local/ns/default/sa/productpage"


def unpack(resp: discovery_pb2.DiscoveryResponse) -> dict[str, secret_pb2.Secret]:
    out = {}
    for any_ in resp.resources:
        s = secret_pb2.Secret()
        assert any_.Unpack(s)
        out[s.name] = s
    return out


def serial(secret: secret_pb2.Secret) -> int:
    return x509.load_pem_x509_certificate(secret.tls_certificate.certificate_chain.inline_bytes).serial_number


class Client:
    """One SDS stream, driven request by request like Envoy."""

    def __init__(self, socket: Path) -> None:
        self.channel = grpc.aio.insecure_channel(f"unix:{socket}")
        self.requests: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue()
        stub = sds_pb2_grpc.SecretDiscoveryServiceStub(self.channel)
        self.call = stub.StreamSecrets(self._gen())

    async def _gen(self) -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while (req := await self.requests.get()) is not None:
            yield req

    def send(self, names: list[str], *, version: str = "", nonce: str = "", error: str | None = None) -> None:
        req = discovery_pb2.DiscoveryRequest(
            type_url=SECRET_TYPE, resource_names=names, version_info=version, response_nonce=nonce
        )
        req.node.id = "sidecar~10.244.0.9~pp.default~default.svc.cluster.local"
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self.requests.put_nowait(req)

    async def recv(self, timeout: float = 5.0) -> discovery_pb2.DiscoveryResponse:
        resp = await asyncio.wait_for(self.call.read(), timeout)
        assert isinstance(resp, discovery_pb2.DiscoveryResponse)
        return resp

    async def close(self) -> None:
        self.requests.put_nowait(None)
        self.call.cancel()
        await self.channel.close()


@pytest.fixture
async def sds(tmp_path: Path) -> AsyncIterator[SdsServer]:
    ca = CertificateAuthority(tmp_path / "ca")
    server = SdsServer(identity=IDENTITY, signer=ca, socket_path=tmp_path / "pod" / "sds.sock")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
    assert not server.socket_path.exists()


async def test_serves_default_and_rootca(sds: SdsServer) -> None:
    assert stat.S_ISSOCK(sds.socket_path.stat().st_mode)
    client = Client(sds.socket_path)
    try:
        client.send([WORKLOAD_SECRET])
        resp = await client.recv()
        secrets = unpack(resp)
        assert list(secrets) == [WORKLOAD_SECRET] and resp.type_url == SECRET_TYPE and resp.nonce
        tls = secrets[WORKLOAD_SECRET].tls_certificate
        cert = x509.load_pem_x509_certificate(tls.certificate_chain.inline_bytes)
        assert b"PRIVATE KEY" in tls.private_key.inline_bytes
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [IDENTITY]
        # ACK
        client.send([WORKLOAD_SECRET], version=resp.version_info, nonce=resp.nonce)
        assert await sds.wait_for(lambda s: s.streams() and s.streams()[0].acked_version == resp.version_info, 5)
        st = sds.streams()[0]
        assert st.node_id.startswith("sidecar~") and st.resource_names == (WORKLOAD_SECRET,)
        # A new subscription on the same stream: answered at once.
        client.send([WORKLOAD_SECRET, ROOT_SECRET], version=resp.version_info, nonce=resp.nonce)
        both = unpack(await client.recv())
        assert set(both) == {WORKLOAD_SECRET, ROOT_SECRET}
        root = x509.load_pem_x509_certificate(both[ROOT_SECRET].validation_context.trusted_ca.inline_bytes)
        cert.verify_directly_issued_by(root)
    finally:
        await client.close()


async def test_nack_is_recorded_and_not_resent(sds: SdsServer) -> None:
    client = Client(sds.socket_path)
    try:
        client.send([ROOT_SECRET])
        resp = await client.recv()
        client.send([ROOT_SECRET], nonce=resp.nonce, error="bad secret")
        assert await sds.wait_for(lambda s: s.streams() and s.streams()[0].error == "bad secret", 5)
        assert sds.streams()[0].nacked_version == resp.version_info
        assert sds.streams()[0].acked_version == ""
        # A rotation leaves ROOTCA unchanged: nothing is pushed on a ROOTCA-only stream.
        await sds.issue()
        with pytest.raises(TimeoutError):
            await client.recv(timeout=0.5)
    finally:
        await client.close()


async def test_rotation_pushes_new_certificate(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    server = SdsServer(
        identity=IDENTITY, signer=ca, socket_path=tmp_path / "sds.sock", ttl=timedelta(seconds=2), rotate_fraction=0.5
    )
    await server.start()
    client = Client(server.socket_path)
    try:
        client.send([WORKLOAD_SECRET])
        first = await client.recv()
        client.send([WORKLOAD_SECRET], version=first.version_info, nonce=first.nonce)
        pushed = await client.recv(timeout=5.0)  # after ~1 s (half of 2 s)
        assert pushed.version_info != first.version_info and pushed.nonce != first.nonce
        assert serial(unpack(pushed)[WORKLOAD_SECRET]) != serial(unpack(first)[WORKLOAD_SECRET])
        assert server.rotations >= 1
        # A stale ACK (old nonce) changes nothing.
        client.send([WORKLOAD_SECRET], version=first.version_info, nonce=first.nonce)
        client.send([WORKLOAD_SECRET], version=pushed.version_info, nonce=pushed.nonce)
        # (unless yet another rotation superseded the pushed version meanwhile)
        assert await server.wait_for(
            lambda s: s.streams()[0].acked_version == pushed.version_info or s.rotations >= 2, 5
        )
    finally:
        await client.close()
        await server.stop()


async def test_fetch_secrets(sds: SdsServer) -> None:
    async with grpc.aio.insecure_channel(f"unix:{sds.socket_path}") as channel:
        stub = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)
        resp = await stub.FetchSecrets(discovery_pb2.DiscoveryRequest(resource_names=[ROOT_SECRET, "unknown"]))
        assert list(unpack(resp)) == [ROOT_SECRET]
        resp = await stub.FetchSecrets(discovery_pb2.DiscoveryRequest())
        assert set(unpack(resp)) == {WORKLOAD_SECRET, ROOT_SECRET}


def test_bootstrap_sds_cluster(tmp_path: Path) -> None:
    common = {
        "node_id": "sidecar~10.244.0.9~pp.default~default.svc.cluster.local",
        "cluster": "pp.default",
        "metadata": {},
        "xds_socket": tmp_path / "xds.sock",
        "admin_socket": tmp_path / "admin.sock",
    }
    without = build_bootstrap(**common)  # type: ignore[arg-type]
    assert "sds-grpc" not in [c["name"] for c in without["static_resources"]["clusters"]]
    b = build_bootstrap(**common, sds_socket=tmp_path / "sds.sock")  # type: ignore[arg-type]
    (cluster,) = [c for c in b["static_resources"]["clusters"] if c["name"] == "sds-grpc"]
    assert cluster["type"] == "STATIC"
    ep = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert ep == {"pipe": {"path": str(tmp_path / "sds.sock")}}
    opts = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in opts["explicit_http_config"]
