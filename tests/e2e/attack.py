"""What an attacker (an app in a pod, an unprivileged host user, another pod's Envoy) can get from the
mesh's files and sockets. Run as that user: `python3 attack.py TARGETS_JSON`.

TARGETS_JSON is a list of {"kind": ..., "path": ...}:

* file  - read the file (the CA key, the store);
* http  - GET over the unix socket (Envoy admin /config_dump, the API /v1/status);
* sds   - SDS FetchSecrets `default` (the workload's certificate and private key);
* ads   - a delta ADS stream claiming to be the ingress gateway (`node` below), asking for clusters,
          listeners and the gateway's Secret; with "sds" (an SDS socket the attacker may use: its own
          pod's), over mTLS with the certificate fetched there; "claim": [namespace, service account]
          claims that identity instead (the positive control: an Envoy claiming its own).

Prints one JSON object: path (+ " as " claim) -> what happened ("denied: ...", "got: ...", "refused: ...").
Only standard library, grpcio and the Envoy protos: no Gossamer import (it must run as any user).
"""

from __future__ import annotations

import json
import socket
import sys
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from google.protobuf import struct_pb2

CONTROL_PLANE = "istiod.istio-system.svc"
GATEWAY_NODE = "router~10.244.0.2~istio-ingressgateway-x.istio-system~istio-system.svc.cluster.local"
TYPES = (
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "type.googleapis.com/envoy.config.listener.v3.Listener",
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
)


def try_file(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f"got: {len(f.read(4096))} bytes"
    except OSError as e:
        return f"denied: {e.strerror}"


def try_http(path: str, url: str) -> str:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(3)
            s.connect(path)
            s.sendall(f"GET {url} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            data = s.recv(200)
    except OSError as e:
        return f"denied: {e.strerror or e}"
    status_line = data.split(b"\r\n", 1)[0].decode(errors="replace")
    return f"got: {status_line}"


def try_sds(path: str) -> str:
    try:
        with socket.socket(socket.AF_UNIX) as s:  # the permission check, without gRPC's retries
            s.connect(path)
    except OSError as e:
        return f"denied: {e.strerror or e}"
    with grpc.insecure_channel(f"unix:{path}") as channel:
        stub = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)
        try:
            resp = stub.FetchSecrets(discovery_pb2.DiscoveryRequest(resource_names=["default"]), timeout=5)
        except grpc.RpcError as e:
            return f"refused: {e.code().name}"
    return f"got: {len(resp.resources)} secrets" + (
        " with a private key" if b"PRIVATE KEY" in resp.SerializeToString() else ""
    )


def _node(claim: list[str] | None) -> base_pb2.Node:
    meta = struct_pb2.Struct()
    meta.update(
        {
            "NAMESPACE": "istio-system",
            "NAME": "istio-ingressgateway-x",
            "POD_NAME": "istio-ingressgateway-x",
            "SERVICE_ACCOUNT": "istio-ingressgateway-service-account",
            "WORKLOAD_NAME": "istio-ingressgateway",
            "LABELS": {"app": "istio-ingressgateway", "istio": "ingressgateway"},
            "INSTANCE_IPS": "10.244.0.2",
            "GOSSAMER_SDS": "true",
            "CLUSTER_ID": "Kubernetes",
            "MESH_ID": "cluster.local",
        }
    )
    if claim is not None:
        namespace, account = claim
        meta.update(
            {
                "NAMESPACE": namespace,
                "SERVICE_ACCOUNT": account,
                "LABELS": {"app": account},
                "WORKLOAD_NAME": account,
                "NAME": f"{account}-x",
                "POD_NAME": f"{account}-x",
            }
        )
        return base_pb2.Node(
            id=f"sidecar~10.244.0.3~{account}-x.{namespace}~{namespace}.svc.cluster.local",
            cluster=f"{account}.{namespace}",
            metadata=meta,
        )
    return base_pb2.Node(id=GATEWAY_NODE, cluster="istio-ingressgateway.istio-system", metadata=meta)


def own_identity(sds_path: str) -> tuple[bytes, bytes, bytes]:
    """(certificate, key, root) from an SDS socket (as an Envoy gets them from its own agent)."""
    from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

    with grpc.insecure_channel(f"unix:{sds_path}") as channel:
        stub = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)
        resp = stub.FetchSecrets(discovery_pb2.DiscoveryRequest(resource_names=["default", "ROOTCA"]), timeout=5)
    found: dict[str, secret_pb2.Secret] = {}
    for any_secret in resp.resources:
        secret = secret_pb2.Secret()
        any_secret.Unpack(secret)
        found[secret.name] = secret
    workload = found["default"].tls_certificate
    return (
        workload.certificate_chain.inline_bytes,
        workload.private_key.inline_bytes,
        found["ROOTCA"].validation_context.trusted_ca.inline_bytes,
    )


def try_ads(path: str, tls: tuple[bytes, bytes, bytes] | None, claim: list[str] | None = None) -> str:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
    except OSError as e:
        return f"denied: {e.strerror or e}"
    target = f"unix:{path}"
    if tls is None:
        channel = grpc.insecure_channel(target)
    else:
        cert, key, root = tls
        creds = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=cert)
        # The control plane's certificate names it istiod.istio-system.svc (Istio's name), not the socket.
        channel = grpc.secure_channel(target, creds, options=[("grpc.ssl_target_name_override", CONTROL_PLANE)])
    requests = [
        discovery_pb2.DeltaDiscoveryRequest(type_url=t, node=_node(claim) if i == 0 else None)
        for i, t in enumerate(TYPES)
    ]
    got: list[str] = []
    try:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        for resp in stub.DeltaAggregatedResources(iter(requests), timeout=4):
            got += [f"{resp.type_url.rsplit('.', 1)[-1]}/{r.name}" for r in resp.resources]
    except grpc.RpcError as e:
        code = e.code()
        if code != grpc.StatusCode.DEADLINE_EXCEEDED or not got:
            return f"refused: {code.name} {e.details()}" + (f" after {got}" if got else "")
    finally:
        channel.close()
    return f"got: {sorted(got)}" if got else "refused: nothing sent"


def main() -> None:
    targets: list[dict[str, Any]] = json.loads(sys.argv[1])
    out: dict[str, str] = {}
    for t in targets:
        kind, path = t["kind"], t["path"]
        if kind == "file":
            out[path] = try_file(path)
        elif kind == "http":
            out[path] = try_http(path, t.get("url", "/"))
        elif kind == "sds":
            out[path] = try_sds(path)
        elif kind == "ads":
            tls = own_identity(t["sds"]) if t.get("sds") else None
            claim = t.get("claim")
            out[path + (f" as {'/'.join(claim)}" if claim else "")] = try_ads(path, tls, claim)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
