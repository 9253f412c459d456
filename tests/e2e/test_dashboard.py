"""The dashboard `up --dashboard-port` serves on loopback: the mesh graph's edges with live request
rates from Istio's metrics, the workloads and config views, the explain form's endpoint, the page.

One bookinfo mesh for the module (its own run dir, ingress and dashboard ports)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.mesh import REPO, Mesh, free_port, own_mesh, wait_until

pytestmark = pytest.mark.e2e

RUN_DIR = Path("/run/gsm-e2e-dash")
REVIEWS = "reviews.default.svc.cluster.local"


@pytest.fixture(scope="module")
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, port: int) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("dashboard")
    with own_mesh(RUN_DIR, tmp / "state", REPO / "samples/bookinfo", up_args=("--dashboard-port", str(port))) as m:
        yield m


def fetch(port: int, path: str, body: Any = None, host: str | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if host:
        headers["Host"] = host
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers=headers, data=json.dumps(body).encode() if body is not None else None
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def get_json(port: int, path: str) -> Any:
    status, text = fetch(port, path)
    assert status == 200, text
    return json.loads(text)


def test_dashboard_url_and_page(mesh: Mesh, port: int) -> None:
    assert mesh.cli("dashboard").stdout.strip() == f"http://127.0.0.1:{port}/"
    status, page = fetch(port, "/")
    assert status == 200 and '<div id="app">' in page
    for asset in ("/static/dashboard.js", "/static/dashboard.css"):
        assert fetch(port, asset)[0] == 200
    assert fetch(port, "/api/overview", host="attacker.example")[0] == 403


def test_graph_shows_productpage_calling_reviews_with_a_rate(mesh: Mesh, port: int) -> None:
    for _ in range(20):
        assert mesh.get("/productpage").status == 200

    def edge() -> dict[str, Any] | None:
        graph = get_json(port, "/api/graph")
        return next(
            (
                e
                for e in graph["edges"]
                if e["source"] == "wl:default/productpage-v1"
                and e["target"] == f"svc:{REVIEWS}"
                and e["rps"] > 0
                and e["requests"] >= 20
            ),
            None,
        )

    assert wait_until(lambda: edge() is not None, 10, interval=0.5), get_json(port, "/api/graph")["edges"]
    found = edge()
    assert found is not None and found["type"] == "calls" and found["reporter"] == "source"
    assert found["errorRatio"] == 0
    graph = get_json(port, "/api/graph")
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert nodes[f"svc:{REVIEWS}"]["layer"] > nodes["wl:default/productpage-v1"]["layer"]
    assert any(
        e["source"] == f"svc:{REVIEWS}" and e["target"].startswith("wl:default/reviews-v") and e["rps"] > 0
        for e in graph["edges"]
    )


def test_workloads_and_config_views(mesh: Mesh, port: int) -> None:
    view = get_json(port, "/api/workloads")
    pods = {p["deployment"]: p for p in view["pods"]}
    assert pods["productpage-v1"]["ready"] and pods["productpage-v1"]["hasSidecar"]
    assert view["summary"]["proxies"] == view["summary"]["synced"] == len(view["proxies"]) >= 7
    assert all(set(p["types"]) >= {"cds", "eds", "lds", "rds"} and not p["nacks"] for p in view["proxies"])
    config = get_json(port, "/api/config")
    gateway = next(i for i in config["items"] if i["kind"] == "Gateway")
    assert gateway["source"].endswith("samples/bookinfo/bookinfo-gateway.yaml:1") and gateway["warnings"] == []
    status, text = fetch(
        port,
        "/api/explain",
        {"namespace": "default", "ref": "deploy/productpage-v1", "url": "http://reviews:9080/reviews/0", "headers": []},
    )
    assert status == 200, text
    assert "reviews.default.svc.cluster.local" in json.loads(text)["clusters"][0]["name"]


ANALYZED = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v7, labels: {version: v7}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v9}}]
"""


def messages(proc: Any) -> set[tuple[str, str, str, str, str, int, str]]:
    return {
        (m["code"], m["kind"], m["namespace"], m["resource"], m["file"], m["line"], m["field"])
        for m in json.loads(proc.stdout)
    }


def test_analyze_of_the_running_mesh_is_that_of_its_files(mesh: Mesh, port: int, tmp_path: Path) -> None:
    extra = tmp_path / "reviews.yaml"
    extra.write_text(ANALYZED)
    live = mesh.cli("analyze", "-A", "-o", "json", str(extra), check=False)
    assert live.returncode == 79, live.stderr  # Error-level messages, as istioctl
    offline = mesh.cli(
        "--run-dir",
        str(tmp_path / "no-mesh"),
        "analyze",
        "-A",
        "-o",
        "json",
        *(str(p) for p in sorted((REPO / "samples/bookinfo").glob("*.yaml"))),
        str(extra),
        check=False,
    )
    assert messages(live) == messages(offline)
    assert {m[:4] for m in messages(live)} >= {
        ("IST0101", "VirtualService", "default", "reviews"),
        ("IST0173", "DestinationRule", "default", "reviews"),
    }
    # applied, the same messages are in the dashboard's config view, pinned to the file's fields
    mesh.apply(extra)
    try:

        def listed() -> bool:
            analysis = get_json(port, "/api/config")["analysis"]
            shown = {(m["code"], m["resource"], m["file"], m["line"]) for m in analysis}
            return {(m[0], m[3], m[4], m[5]) for m in messages(live) if m[4] == str(extra)} <= shown

        assert wait_until(listed, 10), get_json(port, "/api/config")["analysis"]
        # and `gossamer analyze` without files now finds them in the mesh's own config
        assert messages(mesh.cli("analyze", "-A", "-o", "json", check=False)) == messages(live)
    finally:
        mesh.delete(extra)
