"""Where a sidecar's CPU per request goes: instructions per request, counted by callgrind (issue 8).

The machine is shared and noisy; instruction counts are not. Two Envoys as the mesh builds them
(gossamer's own connection-manager, route and metrics builders), in a network namespace of their own:

  client -> A (client side: outbound, reporter=source) -> B (server side: inbound) -> upstream

one of A or B under `valgrind --tool=callgrind` (instrumented only while REQUESTS keep-alive
requests run), per variant:

  pair      one listener, one route, the router: what a person writes by hand
  bare      the mesh's connection manager (filters, path normalization, server name) without telemetry
  logs      + the access log line (stdout)
  metrics   + Istio's metrics (stats access loggers; the peer header and its filter)
  tracing   + Zipkin tracing at Istio's 1%, as a Telemetry turns it on (unsampled requests: the cost
            every request pays)
  default   metrics, and tracing as the mesh comes (Istio's default since 1.22: sampling without a
            tracer until a Telemetry names a backend; Istio's default profile: no access log)
  demo      the default and the access log (Istio's demo profile: accessLogFile /dev/stdout)

Plaintext between A and B, or with MTLS=1 mutual TLS with SPIFFE certificates as the mesh's (the
pair as benchmarks/dataplane.py's mTLS pair; the mesh's server side as its mTLS inbound chains: the
client's identity in X-Forwarded-Client-Cert and both principals in the metrics, which plaintext
does not show). Prints thousands of instructions per request for each side and variant. Takes
/run/gossamer-bench.lock.
Usage: benchmarks/sidecar_instructions.py [VARIANT ...]  (REQUESTS=500; MTLS=1; KEEP_CALLGRIND=DIR keeps
the callgrind files for callgrind_annotate)
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import REPO
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from gossamer.agent.envoy import envoy_binary
from gossamer.ir.types import Cluster, Endpoint, Tracing
from gossamer.mesh import spiffe_id
from gossamer.security.ca import CertificateAuthority
from gossamer.telemetry.peer import PEER_HEADER, proxy_env
from gossamer.xds.build.listeners import http_connection_manager
from gossamer.xds.build.telemetry import add_peer_headers, apply_cluster_service, apply_endpoint_peer, service_group

REQUESTS = int(os.environ.get("REQUESTS", "500"))
MTLS = os.environ.get("MTLS", "") == "1"
KEEP = os.environ.get("KEEP_CALLGRIND", "")  # a directory to copy the callgrind files to
NETNS = "sidecar-instructions"  # not gsm-*: a mesh's leftovers check would take it for one
BENCH_LOCK = "/run/gossamer-bench.lock"
CLIENT_PORT, SERVER_PORT, UPSTREAM_PORT = 15001, 15006, 8000
OUTBOUND = "outbound|8000||server.default.svc.cluster.local"
VARIANTS: dict[str, dict[str, bool]] = {
    "pair": {"pair": True},
    "bare": {},
    "logs": {"logs": True},
    "metrics": {"metrics": True},
    "tracing": {"tracing": True, "spans": True},
    "default": {"metrics": True, "tracing": True},
    "demo": {"logs": True, "metrics": True, "tracing": True},
}


def _dict(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return out


def _pair_hcm(cluster: str) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
            "HttpConnectionManager",
            "stat_prefix": "pair",
            "route_config": {
                "virtual_hosts": [
                    {
                        "name": "pair",
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}],
                    }
                ]
            },
            "http_filters": [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                }
            ],
        },
    }


def _mesh_hcm(inbound: bool, cluster: str, variant: dict[str, bool]) -> dict[str, Any]:
    vhost = rc.VirtualHost(name="server.default.svc.cluster.local:8000", domains=["*"])
    route = vhost.routes.add(name="default")
    route.match.prefix = "/"
    route.route.cluster = cluster
    route.route.timeout.FromSeconds(0)
    if not inbound and variant.get("metrics"):
        add_peer_headers(vhost)  # the metadata exchange exists for the server's metrics
    if inbound and variant.get("metrics"):
        vhost.request_headers_to_remove.append(PEER_HEADER)  # as the inbound route does
    return _dict(
        http_connection_manager(
            "bench",
            inline=route_pb2.RouteConfiguration(name="bench", virtual_hosts=[vhost]),
            direction="inbound" if inbound else "outbound",
            logs=variant.get("logs", False),
            metrics=variant.get("metrics", False),
            tracing=Tracing(sampling=1.0, spans=variant.get("spans", False)) if variant.get("tracing") else None,
            stats_service=service_group("server.default.svc.cluster.local") if inbound else "",
            client_cert_details=inbound and MTLS,  # an mTLS inbound chain's
        )
    )


def _cluster(name: str, port: int, *, outbound: bool) -> dict[str, Any]:
    out = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.STATIC)
    out.connect_timeout.FromSeconds(1)
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    lb_endpoint = assignment.endpoints.add().lb_endpoints.add()
    lb_endpoint.endpoint.address.socket_address.address = "127.0.0.1"
    lb_endpoint.endpoint.address.socket_address.port_value = port
    if outbound:
        server = Endpoint(
            address="127.0.0.1",
            port=port,
            labels=(("app", "server"), ("version", "v1")),
            workload="server",
            workload_namespace="default",
            principal="spiffe://cluster.local/ns/default/sa/server",
        )
        apply_endpoint_peer(lb_endpoint, server)
        apply_cluster_service(out, Cluster(name=name, kind="static", service_host="server.default.svc.cluster.local"))
    out.load_assignment.CopyFrom(assignment)
    return _dict(out)


def _spiffe_certificates(ca_dir: Path) -> dict[str, dict[str, str]]:
    """A's and B's certificates as the mesh's CA signs them (one URI SAN, the SPIFFE id)."""
    ca = CertificateAuthority(ca_dir)
    out = {}
    for side, account in (("a", "client"), ("b", "server")):
        key = ec.generate_private_key(ec.SECP256R1())
        identity = spiffe_id("default", account)
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=False)
            .sign(key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        cert = ca.sign_csr(csr.public_bytes(serialization.Encoding.PEM), identity)
        out[side] = {"cert": cert, "key": key_pem, "ca": ca.root_pem}
    return out


CERTS: dict[str, dict[str, str]] = {}  # MTLS: each side's certificate, key and CA (main)


def _tls(side: str) -> dict[str, Any]:
    certs = CERTS[side]
    common = {
        "tls_certificates": [
            {"certificate_chain": {"inline_string": certs["cert"]}, "private_key": {"inline_string": certs["key"]}}
        ],
        "validation_context": {"trusted_ca": {"inline_string": certs["ca"]}},
    }
    kind = "DownstreamTlsContext" if side == "b" else "UpstreamTlsContext"
    config: dict[str, Any] = {
        "@type": f"type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.{kind}",
        "common_tls_context": common,
    }
    if side == "b":
        config["require_client_certificate"] = True
    return {"name": "envoy.transport_sockets.tls", "typed_config": config}


def bootstrap(side: str, variant: dict[str, bool]) -> dict[str, Any]:
    inbound = side == "b"
    port, upstream = (SERVER_PORT, UPSTREAM_PORT) if inbound else (CLIENT_PORT, SERVER_PORT)
    cluster = "inbound|8000||" if inbound else OUTBOUND
    hcm = _pair_hcm(cluster) if variant.get("pair") else _mesh_hcm(inbound, cluster, variant)
    zipkin = {
        "name": "zipkin",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "zipkin",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9411}}}}
                    ]
                }
            ],
        },
    }
    chain: dict[str, Any] = {"filters": [hcm]}
    upstream_cluster = _cluster(cluster, upstream, outbound=not inbound)
    if MTLS and inbound:
        chain["transport_socket"] = _tls("b")
    elif MTLS:
        upstream_cluster["transport_socket"] = _tls("a")
    return {
        "static_resources": {
            "listeners": [
                {
                    "name": side,
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [chain],
                }
            ],
            "clusters": [upstream_cluster, zipkin],
        }
    }


def _envoy(config: Path, base_id: int) -> list[str]:
    return [str(envoy_binary()), "-c", str(config), "--concurrency", "1", "--disable-hot-restart", "-l", "error"] + [
        "--base-id",
        str(base_id),
    ]


def _requests(count: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", CLIENT_PORT, timeout=30)
    for _ in range(count):
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status


@contextmanager
def _netns_with_upstream() -> Iterator[None]:
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    upstream = None
    try:
        subprocess.run(["ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up"], check=True)
        config = REPO / "benchmarks/dataplane-extra/upstream-envoy.yaml"
        upstream = subprocess.Popen(["ip", "netns", "exec", NETNS, *_envoy(config, 30)], stdin=subprocess.DEVNULL)
        yield
    finally:
        if upstream is not None:
            upstream.terminate()
            upstream.wait()
        subprocess.run(["ip", "netns", "delete", NETNS], check=False)


def instructions_per_request(name: str, measured_side: str, tmp: Path) -> float:
    env = {
        **os.environ,
        **proxy_env(workload="client", namespace="default", service_account="client", labels={"app": "client"}),
    }
    out = tmp / f"{name}-{measured_side}.callgrind"
    procs = []
    try:
        for i, side in enumerate(("a", "b")):
            config = tmp / f"{side}.json"
            config.write_text(json.dumps(bootstrap(side, VARIANTS[name])))
            command = _envoy(config, 31 + i)
            if side == measured_side:
                command = [
                    "valgrind",
                    "--tool=callgrind",
                    "--instr-atstart=no",
                    f"--callgrind-out-file={out}",
                    *command,
                ]
            procs.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", NETNS, *command],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        in_netns = ["ip", "netns", "exec", NETNS, sys.executable, __file__]
        deadline = time.monotonic() + 300
        while subprocess.run([*in_netns, "--requests", "1"], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "the Envoys did not come up"
            time.sleep(1)
        subprocess.run([*in_netns, "--requests", "200"], check=True)  # warm: connections, caches
        subprocess.run(["callgrind_control", "--instr=on"], check=True, capture_output=True)
        subprocess.run([*in_netns, "--requests", str(REQUESTS)], check=True)
        subprocess.run(["callgrind_control", "--instr=off"], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "--dump"], check=True, capture_output=True)
        time.sleep(1)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
    totals = [
        int(line.split()[1])
        for dump in tmp.glob(f"{out.name}*")
        for line in dump.read_text().splitlines()
        if line.startswith(("summary:", "totals:"))
    ]
    return max(totals) / REQUESTS


def main() -> None:
    if sys.argv[1:2] == ["--requests"]:
        _requests(int(sys.argv[2]))
        return
    names = sys.argv[1:] or list(VARIANTS)
    with open(BENCH_LOCK, "w") as lock, tempfile.TemporaryDirectory(prefix="gsm-instr-") as tmp:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if MTLS:
            CERTS.update(_spiffe_certificates(Path(tmp) / "ca"))
        with _netns_with_upstream():
            time.sleep(1)
            results = {(n, s): instructions_per_request(n, s, Path(tmp)) for n in names for s in ("a", "b")}
        if KEEP:  # the callgrind files, for callgrind_annotate
            Path(KEEP).mkdir(parents=True, exist_ok=True)
            for dump in Path(tmp).glob("*.callgrind*"):
                shutil.copy(dump, Path(KEEP) / dump.name)
    pair = {s: results.get(("pair", s)) for s in ("a", "b")}
    tls = "mTLS" if MTLS else "plaintext"
    print(f"sidecar instructions per request (callgrind, {REQUESTS} keep-alive requests, {tls}, 1 KB responses)")
    print(f"  {'variant':10s} {'client side':>12s} {'server side':>12s}")
    for name in names:
        a, b = results[(name, "a")], results[(name, "b")]
        vs = f"  ({(a + b) / (pair['a'] + pair['b']):.2f}x the pair)" if pair["a"] and pair["b"] else ""
        print(f"  {name:10s} {a / 1000:11.1f}k {b / 1000:11.1f}k{vs}")


if __name__ == "__main__":
    main()
