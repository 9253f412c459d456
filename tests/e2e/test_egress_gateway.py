"""Istio's "Egress Gateways" task end to end (`up --egress-gateway`): a ServiceEntry for an external
host (a server on the host, bound to the pod network's gateway address 10.244.0.1), a Gateway on
istio-egressgateway for it, a DestinationRule for the egress gateway's Service and a VirtualService
bound to [mesh, istio-egressgateway]: the curl pod's request goes sidecar -> egress gateway -> host
(the egress gateway's access log shows it); without the VirtualService it goes direct.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mesh import (
    ACCESS_LOGGING,
    HOST_ADDRESS,
    REPO,
    Mesh,
    curl_status_body,
    free_port,
    own_mesh,
    serving_on_host,
    wait_until,
)

pytestmark = pytest.mark.e2e

CURL = REPO / "samples" / "curl"
RUN_DIR = Path("/run/gsm-e2e-egress")
EGRESS = ("-n", "istio-system", "deploy/istio-egressgateway")


def service_entry(port: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external}}
spec:
  hosts: [external.example.com]
  location: MESH_EXTERNAL
  ports: [{{number: 80, name: http-port, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: {HOST_ADDRESS}, ports: {{http-port: {port}}}}}]
"""


GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [external.example.com]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: egressgateway-for-external}
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets: [{name: external}]
"""

VIRTUAL_SERVICE = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: direct-external-through-egress-gateway}
spec:
  hosts: [external.example.com]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{gateways: [mesh], port: 80}]
    route:
    - destination: {host: istio-egressgateway.istio-system.svc.cluster.local, subset: external, port: {number: 80}}
  - match: [{gateways: [istio-egressgateway], port: 80}]
    route:
    - destination: {host: external.example.com, port: {number: 80}}
      weight: 100
"""


@pytest.fixture(scope="module")
def egress() -> Iterator[tuple[Mesh, Path]]:
    tmp = Path(tempfile.mkdtemp(prefix="gsm-e2e-egress-"))
    port = free_port()
    (tmp / "config").mkdir()
    (tmp / "config" / "service-entry.yaml").write_text(service_entry(port))
    (tmp / "config" / "gateway.yaml").write_text(GATEWAY)
    try:
        with own_mesh(
            RUN_DIR, tmp / "state", CURL, tmp / "config", ACCESS_LOGGING, up_args=("--egress-gateway",)
        ) as mesh:
            # gsm0 exists now: serve on the node's pod-network address, outside every pod.
            with serving_on_host(port):
                yield mesh, tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _debug(mesh: Mesh) -> str:
    out = []
    for args in (
        ("proxy-config", "listeners", *EGRESS),
        ("proxy-config", "routes", *EGRESS),
        ("proxy-config", "clusters", *EGRESS),
        ("proxy-config", "endpoints", *EGRESS),
        ("proxy-config", "routes", "deploy/curl"),
        ("proxy-config", "clusters", "deploy/curl"),
        ("proxy-config", "endpoints", "deploy/curl"),
        ("logs", *EGRESS, "-c", "istio-proxy"),
        ("logs", "deploy/curl", "-c", "istio-proxy"),
        ("status",),
    ):
        proc = mesh.cli(*args, check=False)
        out.append(f"== {' '.join(args)}\n{proc.stdout[-3000:]}{proc.stderr[-1000:]}")
    return "\n".join(out)


def egress_log(mesh: Mesh) -> str:
    return mesh.cli("logs", *EGRESS, "-c", "istio-proxy").stdout


def test_status_lists_the_egress_gateway(egress: tuple[Mesh, Path]) -> None:
    mesh, _tmp = egress
    status = mesh.cli("status").stdout
    assert "istio-egressgateway" in status and "istio-ingressgateway" in status


def test_request_goes_direct_without_the_virtual_service(egress: tuple[Mesh, Path]) -> None:
    mesh, _tmp = egress
    before = egress_log(mesh).count("/direct")
    code, body = curl_status_body(mesh, "http://external.example.com/direct")
    assert code == "200", body
    assert "outside host=external.example.com path=/direct" in body
    time.sleep(2)  # Envoy flushes its access log about once a second
    assert egress_log(mesh).count("/direct") == before  # the egress gateway saw nothing


def test_request_passes_through_the_egress_gateway(egress: tuple[Mesh, Path]) -> None:
    mesh, tmp = egress
    vs = tmp / "virtual-service.yaml"
    vs.write_text(VIRTUAL_SERVICE)
    mesh.apply(vs)
    try:
        code, body = curl_status_body(mesh, "http://external.example.com/via-egress")
        assert code == "200", body + _debug(mesh)
        assert "outside host=external.example.com path=/via-egress" in body
        # Envoy flushes its access log about once a second.
        assert wait_until(lambda: "/via-egress" in egress_log(mesh), timeout=10), egress_log(mesh)[-2000:]
    finally:
        mesh.delete(vs)
    # Back to direct once the VirtualService is gone.
    count = egress_log(mesh).count("/after")
    assert wait_until(lambda: curl_status_body(mesh, "http://external.example.com/after")[0] == "200", timeout=10)
    time.sleep(2)
    assert egress_log(mesh).count("/after") == count
