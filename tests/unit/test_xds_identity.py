"""A proxy gets config only for the identity it proves (real gRPC mTLS on a unix socket, real CA),
and the CA signs only for a pod the control plane knows (security/authz.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2

from gossamer.agent.sds import issue_workload_certificate
from gossamer.mesh import CONTROL_PLANE_NAME
from gossamer.security import CertificateAuthority, CsrRejected
from gossamer.security.authz import IdentityRejected, check_node, pod_identity, sign_for_pod
from gossamer.security.server_tls import ServerTls
from gossamer.xds.cache import ConfigCache
from gossamer.xds.server import AdsServer, serve
from gossamer.xds.types import CLUSTER

GATEWAY_ID = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
CURL_ID = "spiffe://cluster.local/ns/default/sa/curl"


@dataclass
class Pod:
    name: str
    namespace: str
    service_account: str
    phase: str = "Running"


def node(namespace: str, account: str) -> base_pb2.Node:
    meta = struct_pb2.Struct()
    meta.update({"NAMESPACE": namespace, "SERVICE_ACCOUNT": account})
    return base_pb2.Node(id=f"sidecar~10.244.0.9~x.{namespace}~{namespace}.svc.cluster.local", metadata=meta)


@dataclass
class Env:
    ca: CertificateAuthority
    socket: Path
    groups: list[str]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    ca = CertificateAuthority(tmp_path / "ca")
    cache = ConfigCache()
    groups: list[str] = []

    async def group_for_node(n: base_pb2.Node) -> str:
        groups.append(n.id)
        if not cache.has_group("g"):
            from envoy.config.cluster.v3 import cluster_pb2

            cache.set_group("g", {CLUSTER: {"c1": cluster_pb2.Cluster(name="c1")}})
        return "g"

    sock = tmp_path / "xds.sock"
    server = await serve(AdsServer(cache, group_for_node), f"unix:{sock}", credentials=ServerTls(ca).credentials)
    try:
        yield Env(ca, sock, groups)
    finally:
        await server.stop(None)


def channel(env: Env, identity: str) -> grpc.aio.Channel:
    cert = issue_workload_certificate(env.ca, identity, timedelta(minutes=5))
    creds = grpc.ssl_channel_credentials(env.ca.root_pem.encode(), cert.key_pem.encode(), cert.cert_pem.encode())
    return grpc.aio.secure_channel(
        f"unix:{env.socket}", creds, options=[("grpc.ssl_target_name_override", CONTROL_PLANE_NAME)]
    )


async def fetch(
    env: Env, claimed: base_pb2.Node, identity: str | None, ca: CertificateAuthority | None = None
) -> list[str]:
    """Cluster names the server sends on a SotW stream, over mTLS with a certificate for IDENTITY
    (from CA, default the mesh's) or with no client certificate at all."""
    signer = ca or env.ca
    if identity is not None:
        cert = issue_workload_certificate(signer, identity, timedelta(minutes=5))
        creds = grpc.ssl_channel_credentials(env.ca.root_pem.encode(), cert.key_pem.encode(), cert.cert_pem.encode())
    else:
        creds = grpc.ssl_channel_credentials(env.ca.root_pem.encode())
    async with grpc.aio.secure_channel(
        f"unix:{env.socket}", creds, options=[("grpc.ssl_target_name_override", CONTROL_PLANE_NAME)]
    ) as ch:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(ch).StreamAggregatedResources()
        await call.write(discovery_pb2.DiscoveryRequest(type_url=CLUSTER, node=claimed))
        resp = await asyncio.wait_for(call.read(), 5)
        assert resp is not grpc.aio.EOF
        return [r.type_url for r in resp.resources]


async def test_a_proven_identity_gets_its_config(env: Env) -> None:
    assert await fetch(env, node("default", "curl"), CURL_ID) == ["type.googleapis.com/envoy.config.cluster.v3.Cluster"]


async def test_a_forged_node_gets_nothing(env: Env) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await fetch(env, node("istio-system", "istio-ingressgateway-service-account"), CURL_ID)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert env.groups == []  # refused before anything was translated or sent


async def test_no_client_certificate_or_another_root_gets_nothing(env: Env, tmp_path: Path) -> None:
    for identity, ca in ((None, None), (GATEWAY_ID, CertificateAuthority(tmp_path / "rogue"))):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await fetch(env, node("istio-system", "istio-ingressgateway-service-account"), identity, ca)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails
    assert env.groups == []


def test_node_must_name_namespace_and_service_account() -> None:
    check_node(CURL_ID, {"NAMESPACE": "default", "SERVICE_ACCOUNT": "curl"})
    for meta in (
        {},
        {"NAMESPACE": "default"},
        {"NAMESPACE": "default", "SERVICE_ACCOUNT": "sleep"},
        {"NAMESPACE": "other", "SERVICE_ACCOUNT": "curl"},
    ):
        with pytest.raises(IdentityRejected):
            check_node(CURL_ID, meta)


def test_the_ca_signs_only_for_a_known_running_pod(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    pods = [Pod("curl-abc", "default", "curl"), Pod("old-xyz", "default", "old", phase="Terminating")]
    assert pod_identity(pods, "default", "curl-abc") == CURL_ID
    for ns, name in (("default", "nope"), ("other", "curl-abc"), ("default", "old-xyz")):
        with pytest.raises(CsrRejected):
            pod_identity(pods, ns, name)

    def csr_for(identity: str) -> str:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True)
            .sign(key, hashes.SHA256())
        )
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    # A CSR for the pod's own identity is signed; one asking for another identity is not.
    assert "BEGIN CERTIFICATE" in sign_for_pod(ca, pods, "default", "curl-abc", csr_for(CURL_ID))
    with pytest.raises(CsrRejected):
        sign_for_pod(ca, pods, "default", "curl-abc", csr_for(GATEWAY_ID))
