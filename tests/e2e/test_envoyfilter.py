"""EnvoyFilter with real Envoys: Istio's Lua example on httpbin's inbound listener (a response header
set by a Lua filter inserted before the router), a MERGE on curl's outbound cluster of httpbin, a fault
MERGEd into httpbin's inbound fault filter (every route aborts, as in Istio), and deleting the EnvoyFilters
undoes each. One mesh for the module (httpbin + curl)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mesh import REPO, Applied, Mesh, applying, own_mesh, wait_until

pytestmark = pytest.mark.e2e

RUN_DIR = Path("/run/gsm-e2e-ef")
HTTPBIN_CLUSTER = "outbound|8000||httpbin.default.svc.cluster.local"

LUA = """\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: httpbin-lua
spec:
  workloadSelector:
    labels:
      app: httpbin
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        portNumber: 8080
        filterChain:
          filter:
            name: "envoy.filters.network.http_connection_manager"
            subFilter:
              name: "envoy.filters.http.router"
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.lua
        typed_config:
          "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
          inlineCode: |
            function envoy_on_response(response_handle)
              response_handle:headers():add("x-lua", "hello")
            end
"""

CLUSTER_MERGE = """\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: curl-timeout
spec:
  workloadSelector:
    labels:
      app: curl
  configPatches:
  - applyTo: CLUSTER
    match:
      context: SIDECAR_OUTBOUND
      cluster:
        service: httpbin.default.svc.cluster.local
        portNumber: 8000
    patch:
      operation: MERGE
      value:
        connect_timeout: 3.5s
"""

FAULT_MERGE = """\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: httpbin-abort
spec:
  workloadSelector:
    labels:
      app: httpbin
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        portNumber: 8080
        filterChain:
          filter:
            name: "envoy.filters.network.http_connection_manager"
            subFilter:
              name: "envoy.filters.http.fault"
    patch:
      operation: MERGE
      value:
        name: envoy.filters.http.fault
        typed_config:
          "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
          abort:
            http_status: 418
            percentage: {numerator: 100}
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("envoyfilter")
    with own_mesh(RUN_DIR, tmp / "state", REPO / "samples/httpbin/httpbin.yaml", REPO / "samples/curl") as m:
        yield m


@pytest.fixture
def applied(mesh: Mesh, tmp_path: Path) -> Iterator[Applied]:
    with applying(mesh, tmp_path) as a:
        yield a


def response_headers(mesh: Mesh) -> str:
    proc = mesh.exec(
        "deploy/curl",
        "curl",
        "-sS",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "--max-time",
        "5",
        "http://httpbin:8000/headers",
        check=False,
    )
    return proc.stdout.lower()


def status_line(mesh: Mesh) -> str:
    lines = response_headers(mesh).splitlines()
    return lines[0].strip() if lines else ""


def connect_timeout(mesh: Mesh) -> str | None:
    body = json.loads(mesh.cli("proxy-config", "clusters", "deploy/curl", "-o", "json").stdout)
    cluster = next((c for c in body["clusters"]["items"] if c["name"] == HTTPBIN_CLUSTER), None)
    return cluster.get("connectTimeout") if cluster else None


def test_lua_filter_adds_a_response_header_until_deleted(mesh: Mesh, applied: Applied) -> None:
    assert wait_until(lambda: " 200" in status_line(mesh), 30), status_line(mesh)
    assert "x-lua" not in response_headers(mesh)
    path = applied.yaml("lua.yaml", LUA)
    applied(path)
    assert wait_until(lambda: "x-lua: hello" in response_headers(mesh), 20), response_headers(mesh)
    mesh.delete(path)
    assert wait_until(lambda: "x-lua" not in response_headers(mesh), 20), response_headers(mesh)
    assert " 200" in status_line(mesh)


def test_cluster_merge_sets_connect_timeout(mesh: Mesh, applied: Applied) -> None:
    before = connect_timeout(mesh)
    assert before is not None and before != "3.500s"
    path = applied.yaml("timeout.yaml", CLUSTER_MERGE)
    applied(path)
    assert wait_until(lambda: connect_timeout(mesh) == "3.500s", 20), connect_timeout(mesh)
    status = mesh.status()
    assert not status.get("patchErrors"), status.get("patchErrors")
    # the proxy took it (no NACK) and still reaches httpbin
    assert wait_until(lambda: " 200" in status_line(mesh), 20), status_line(mesh)
    mesh.delete(path)
    assert wait_until(lambda: connect_timeout(mesh) == before, 20)


def test_fault_merged_into_the_fault_filter_aborts_every_route(mesh: Mesh, applied: Applied) -> None:
    assert wait_until(lambda: " 200" in status_line(mesh), 30), status_line(mesh)
    path = applied.yaml("abort.yaml", FAULT_MERGE)
    applied(path)
    assert wait_until(lambda: " 418" in status_line(mesh), 20), status_line(mesh)
    assert not mesh.status().get("patchErrors")
    mesh.delete(path)
    assert wait_until(lambda: " 200" in status_line(mesh), 20), status_line(mesh)
