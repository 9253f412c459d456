"""Distributed tracing with live traffic: bookinfo behind the ingress gateway, a mesh-wide Telemetry
sampling every request (as Istio's bookinfo tracing task does), every Envoy posting its spans to
the control plane's Zipkin collector, read back through `gossamer traces`.

One mesh for the module (its own run dir and ingress port)."""

from __future__ import annotations

import http.server
import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.mesh import (
    HOST_ADDRESS,
    REPO,
    Applied,
    Mesh,
    applying,
    free_port,
    own_mesh,
    reviews_version,
    wait_until,
)

pytestmark = pytest.mark.e2e

RUN_DIR = Path("/run/gsm-e2e-trace")
GATEWAY = "istio-ingressgateway.istio-system"
REPORT_WAIT_S = 8.0  # Envoy flushes spans every second (bootstrap runtime), the apps answer in ms
FLUSH_S = 1.5
DRAIN_S = 2.5

MESH_TELEMETRY = {
    "apiVersion": "telemetry.istio.io/v1",
    "kind": "Telemetry",
    "metadata": {"name": "mesh-default", "namespace": "istio-system"},
    "spec": {"tracing": [{"providers": [{"name": "zipkin"}], "randomSamplingPercentage": 100.0}]},
}

Span = dict[str, Any]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("tracing")
    telemetry = tmp / "telemetry.yaml"
    telemetry.write_text(yaml.safe_dump(MESH_TELEMETRY, sort_keys=False))
    with own_mesh(RUN_DIR, tmp / "state", REPO / "samples/bookinfo", telemetry) as m:
        yield m


@pytest.fixture
def applied(mesh: Mesh, tmp_path: Path) -> Iterator[Applied]:
    with applying(mesh, tmp_path) as a:
        yield a


def traces(mesh: Mesh, *args: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(mesh.cli("traces", "-o", "json", "--limit", "1000", *args).stdout)
    return out


def trace_by_id(mesh: Mesh, trace_id: str) -> list[Span]:
    proc = mesh.cli("traces", "-o", "json", "--trace", trace_id, check=False)
    if proc.returncode != 0:
        return []
    found: list[dict[str, Any]] = json.loads(proc.stdout)
    return found[0]["spans"] if found else []


def service(span: Span) -> str:
    return str(span.get("localEndpoint", {}).get("serviceName", ""))


def spans_of(spans: list[Span], name: str, kind: str) -> list[Span]:
    return [s for s in spans if service(s) == name and s.get("kind") == kind]


def expected_services(version: str | None) -> set[str]:
    out = {GATEWAY, "productpage.default", "details.default", "reviews.default"}
    return out | ({"ratings.default"} if version in ("v2", "v3") else set())


def complete(spans: list[Span], wanted: set[str]) -> bool:
    """Every hop reported: each service's server span, and productpage's client spans to details and reviews."""
    have = {service(s) for s in spans}
    return wanted <= have and len(spans_of(spans, "productpage.default", "CLIENT")) >= 2


def test_a_request_through_the_ingress_makes_one_linked_trace(mesh: Mesh) -> None:
    before = {t["traceId"] for t in traces(mesh)}
    response = mesh.get("/productpage")
    assert response.status == 200
    wanted = expected_services(reviews_version(response.body))
    found: list[dict[str, Any]] = []

    def new_trace() -> bool:
        found[:] = [
            t
            for t in traces(mesh, "--service", "istio-ingressgateway")
            if t["traceId"] not in before and complete(t["spans"], wanted)
        ]
        return bool(found)

    assert wait_until(new_trace, REPORT_WAIT_S, interval=0.5), traces(mesh)
    assert len(found) == 1, [t["services"] for t in found]
    trace = found[0]
    spans: list[Span] = trace["spans"]
    assert set(trace["services"]) == wanted
    by_id = {s["id"]: s for s in spans}
    assert len(trace["traceId"]) == 32  # 128-bit trace ids, as Istio
    # The ingress gateway started the trace: its span is the root, 200 for /productpage.
    [root] = [s for s in spans if "parentId" not in s]
    assert service(root) == GATEWAY
    # Span names are Istio's route decorators: the gateway's bookinfo rule (host:port and its path),
    # then each service's FQDN:PORT/* (default routes and inbound routes).
    assert root["name"] == "productpage.default.svc.cluster.local:9080/productpage"
    assert root["tags"]["http.status_code"] == "200"
    assert "productpage.default.svc.cluster.local" in root["tags"].get("upstream_cluster", "")
    # productpage's inbound span is the gateway's child; its outbound spans are children of it.
    [page_in] = spans_of(spans, "productpage.default", "SERVER")
    assert page_in["parentId"] == root["id"]
    page_out = spans_of(spans, "productpage.default", "CLIENT")
    assert {s["parentId"] for s in page_out} == {page_in["id"]}
    # Each callee's inbound span is the child of productpage's outbound span to it (the cluster says which).
    for callee in ("reviews", "details"):
        [inbound] = spans_of(spans, f"{callee}.default", "SERVER")
        parent = by_id[inbound["parentId"]]
        assert inbound["name"] == parent["name"] == f"{callee}.default.svc.cluster.local:9080/*"
        assert parent in page_out
        assert f"{callee}.default.svc.cluster.local" in parent["tags"]["upstream_cluster"]
        assert parent["tags"]["http.status_code"] == "200"
    if "ratings.default" in wanted:
        [ratings_in] = spans_of(spans, "ratings.default", "SERVER")
        reviews_out = by_id[ratings_in["parentId"]]
        assert service(reviews_out) == "reviews.default" and reviews_out["kind"] == "CLIENT"
    # Durations nest: the gateway's span covers productpage's.
    assert root["duration"] >= page_in["duration"] > 0
    # `gossamer traces` shows the tree: the gateway at the top, productpage under it, then its callees.
    text = mesh.cli("traces", "--trace", trace["traceId"]).stdout
    lines = text.splitlines()
    assert lines[0].startswith(f"trace {trace['traceId']}")
    assert lines[1].startswith(f"  {GATEWAY}  server")
    assert lines[2].startswith("    productpage.default  server")
    assert any(
        line.startswith("      productpage.default  client") and "outbound|9080||reviews" in line for line in lines
    )
    assert any(line.startswith("        reviews.default  server") for line in lines)


def test_an_upstream_sampling_decision_is_kept(mesh: Mesh) -> None:
    """A caller's B3 context (`x-b3-sampled: 1`): the mesh continues that trace under the caller's span."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    response = mesh.get("/productpage", headers={"x-b3-traceid": trace_id, "x-b3-spanid": span_id, "x-b3-sampled": "1"})
    assert response.status == 200
    wanted = expected_services(reviews_version(response.body))
    assert wait_until(lambda: complete(trace_by_id(mesh, trace_id), wanted), REPORT_WAIT_S, interval=0.5), trace_by_id(
        mesh, trace_id
    )
    spans = trace_by_id(mesh, trace_id)
    [gateway] = [s for s in spans if service(s) == GATEWAY]
    assert gateway["parentId"] == span_id


def test_disable_span_reporting_silences_one_workload(mesh: Mesh, applied: Applied) -> None:
    applied.docs(
        "details-no-spans.yaml",
        {
            "apiVersion": "telemetry.istio.io/v1",
            "kind": "Telemetry",
            "metadata": {"name": "details-quiet", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "details"}}, "tracing": [{"disableSpanReporting": True}]},
        },
    )
    # Connections open before the change keep the old filter chain until Envoy drains them (--drain-time-s 1).
    time.sleep(DRAIN_S)
    trace_id = secrets.token_hex(16)
    response = mesh.get(
        "/productpage", headers={"x-b3-traceid": trace_id, "x-b3-spanid": secrets.token_hex(8), "x-b3-sampled": "1"}
    )
    assert response.status == 200
    wanted = expected_services(reviews_version(response.body)) - {"details.default"}
    assert wait_until(lambda: complete(trace_by_id(mesh, trace_id), wanted), REPORT_WAIT_S, interval=0.5), trace_by_id(
        mesh, trace_id
    )
    time.sleep(FLUSH_S)  # anything details would report has arrived by now
    spans = trace_by_id(mesh, trace_id)
    assert "details.default" not in {service(s) for s in spans}
    # productpage still reports its call to details (its own client side).
    assert any(
        "details.default.svc.cluster.local" in s["tags"].get("upstream_cluster", "")
        for s in spans_of(spans, "productpage.default", "CLIENT")
    )


class ZipkinReceiver(http.server.ThreadingHTTPServer):
    """A Zipkin-compatible collector outside the mesh: keeps the JSON v2 spans posted to it."""

    def __init__(self, port: int) -> None:
        super().__init__((HOST_ADDRESS, port), _ZipkinHandler)
        self.posts: list[tuple[str, str]] = []  # (path, Host header)
        self.spans: list[Span] = []


class _ZipkinHandler(http.server.BaseHTTPRequestHandler):
    server: ZipkinReceiver

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b""  # Envoy's span reports come chunked
        while size := int(self.rfile.readline().split(b";")[0], 16):
            body += self.rfile.read(size)
            self.rfile.readline()
        self.rfile.readline()
        return body

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self._body()
        self.server.posts.append((self.path, str(self.headers.get("Host"))))
        self.server.spans.extend(json.loads(body))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_spans_go_to_a_zipkin_collector_named_in_the_mesh_config(mesh: Mesh, applied: Applied) -> None:
    """As Istio configures an external collector: a `zipkin` provider in the mesh config's
    extensionProviders (its service: a ServiceEntry for a server outside the mesh) picked by a
    Telemetry's `tracing[].providers`. The default namespace's proxies post their spans there, through
    the service's outbound cluster; the gateway (istio-system, the mesh-wide Telemetry) keeps the
    built-in collector."""
    receiver = ZipkinReceiver(free_port())
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        applied.docs(
            "external-zipkin.yaml",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "istio", "namespace": "istio-system"},
                "data": {
                    "mesh": yaml.safe_dump(
                        {
                            "extensionProviders": [
                                {"name": "ext-zipkin", "zipkin": {"service": "zipkin.example.local", "port": 9411}}
                            ]
                        }
                    )
                },
            },
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "ServiceEntry",
                "metadata": {"name": "ext-zipkin", "namespace": "default"},
                "spec": {
                    "hosts": ["zipkin.example.local"],
                    "location": "MESH_EXTERNAL",
                    "ports": [{"number": 9411, "name": "http", "protocol": "HTTP"}],
                    "resolution": "STATIC",
                    "endpoints": [{"address": HOST_ADDRESS, "ports": {"http": receiver.server_address[1]}}],
                },
            },
            {
                "apiVersion": "telemetry.istio.io/v1",
                "kind": "Telemetry",
                "metadata": {"name": "to-ext-zipkin", "namespace": "default"},
                "spec": {"tracing": [{"providers": [{"name": "ext-zipkin"}], "randomSamplingPercentage": 100.0}]},
            },
        )
        time.sleep(DRAIN_S)  # connections on the old filter chains drain
        trace_id = secrets.token_hex(16)
        response = mesh.get(
            "/productpage",
            headers={"x-b3-traceid": trace_id, "x-b3-spanid": secrets.token_hex(8), "x-b3-sampled": "1"},
        )
        assert response.status == 200
        wanted = expected_services(reviews_version(response.body)) - {GATEWAY}

        def received() -> list[Span]:
            return [s for s in list(receiver.spans) if s.get("traceId") == trace_id]

        assert wait_until(lambda: complete(received(), wanted), REPORT_WAIT_S, interval=0.5), receiver.spans
        assert {service(s) for s in received()} == wanted  # not the gateway's
        assert {path for path, _ in receiver.posts} == {"/api/v2/spans"}
        assert {host for _, host in receiver.posts} == {"zipkin.example.local"}
        # The gateway's span went to the built-in collector; none of the default namespace's did.
        assert wait_until(lambda: bool(trace_by_id(mesh, trace_id)), REPORT_WAIT_S, interval=0.5)
        assert {service(s) for s in trace_by_id(mesh, trace_id)} == {GATEWAY}
    finally:
        receiver.shutdown()
        receiver.server_close()
