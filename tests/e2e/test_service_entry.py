"""ServiceEntry end to end: a server outside the pods (on the host, bound to the pod network's
gateway address 10.244.0.1 on the gsm0 bridge) is reached from a meshed pod by its ServiceEntry
host name; a Sidecar with REGISTRY_ONLY then blocks unregistered destinations (502) but not it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mesh import HOST_ADDRESS, REPO, Mesh, curl_status_body, free_port, own_mesh, serving_on_host, wait_until

pytestmark = pytest.mark.e2e

CURL = REPO / "samples" / "curl"
RUN_DIR = Path("/run/gsm-e2e-se")


def service_entries(port: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external-static}}
spec:
  hosts: [external.example.com]
  location: MESH_EXTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: {HOST_ADDRESS}, ports: {{http: {port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external-dns}}
spec:
  hosts: [dns.example.com]
  location: MESH_EXTERNAL
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: DNS
  endpoints: [{{address: {HOST_ADDRESS}, ports: {{http: {port}}}}}]
"""


REGISTRY_ONLY = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"""


@pytest.fixture(scope="module")
def external() -> Iterator[tuple[Mesh, Path, int]]:
    tmp = Path(tempfile.mkdtemp(prefix="gsm-e2e-se-"))
    port = free_port()
    (tmp / "config").mkdir()
    (tmp / "config" / "service-entries.yaml").write_text(service_entries(port))
    try:
        with own_mesh(RUN_DIR, tmp / "state", CURL, tmp / "config") as mesh:
            # gsm0 exists now: serve on the node's pod-network address, outside every pod.
            with serving_on_host(port):
                yield mesh, tmp, port
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_static_service_entry_host_reached_by_name_from_a_pod(external: tuple[Mesh, Path, int]) -> None:
    mesh, _tmp, _port = external
    hosts = mesh.exec("deploy/curl", "cat", "/etc/hosts").stdout
    assert "external.example.com" in hosts  # an auto-allocated address from the service range
    code, body = curl_status_body(mesh, "http://external.example.com/")
    assert code == "200", body
    assert "outside host=external.example.com" in body


def test_dns_service_entry_host_reached_by_name_from_a_pod(external: tuple[Mesh, Path, int]) -> None:
    mesh, _tmp, _port = external
    code, body = curl_status_body(mesh, "http://dns.example.com:8080/")
    assert code == "200", body
    assert "outside host=dns.example.com:8080" in body


def test_registry_only_blocks_unregistered_destinations(external: tuple[Mesh, Path, int]) -> None:
    mesh, tmp, port = external
    direct = f"http://{HOST_ADDRESS}:{port}/"  # a port no service has: plain TCP to the sidecar
    assert curl_status_body(mesh, direct)[0] == "200"  # ALLOW_ANY: passes through to the original destination
    sidecar = tmp / "sidecar.yaml"
    sidecar.write_text(REGISTRY_ONLY)
    mesh.apply(sidecar)
    try:
        # Unknown TCP destination: BlackHoleCluster closes the connection (curl reports 000).
        assert wait_until(lambda: curl_status_body(mesh, direct)[0] == "000", timeout=10)
        # Unknown host on an HTTP port of the registry (80): Istio's block_all answers 502.
        assert curl_status_body(mesh, f"http://{HOST_ADDRESS}/")[0] == "502"
        code, body = curl_status_body(mesh, "http://external.example.com/")
        assert code == "200", body  # registered: still reachable
    finally:
        mesh.delete(sidecar)
    assert wait_until(lambda: curl_status_body(mesh, direct)[0] == "200", timeout=10)
