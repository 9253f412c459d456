"""Istio's standard metrics with live traffic: bookinfo behind the ingress gateway, every sidecar
computing them inside Envoy, each pod serving them on :15020, and the control plane's scrape of
the pods on `up --metrics-port` (loopback), the REST socket and `gossamer metrics`.

A real Prometheus (`up --prometheus`) scrapes the pods and the control plane; PromQL, including the
queries of Istio's own Grafana dashboards, sees the traffic.

One mesh for the module (its own run dir, ingress port and metrics port)."""

from __future__ import annotations

import json
import secrets
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.mesh import ACCESS_LOGGING, REPO, Applied, Mesh, applying, free_port, own_mesh, wait_until
from tests.support.manifests import deployment

pytestmark = pytest.mark.e2e

RUN_DIR = Path("/run/gsm-e2e-tel")
REVIEWS = "reviews.default.svc.cluster.local"
DETAILS = "details.default.svc.cluster.local"
FLUSH_WAIT_S = 12.0  # counters count at once; Envoy merges histograms every 5 s

Sample = dict[str, str | float]


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, metrics_port: int) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("telemetry")
    with own_mesh(
        RUN_DIR,
        tmp / "state",
        REPO / "samples/bookinfo",
        ACCESS_LOGGING,
        up_args=("--metrics-port", str(metrics_port), "--prometheus"),
    ) as m:
        yield m


@pytest.fixture
def applied(mesh: Mesh, tmp_path: Path) -> Iterator[Applied]:
    with applying(mesh, tmp_path) as a:
        yield a


def scrape(port: int) -> dict[str, list[Sample]]:
    """sample name -> samples (labels plus "value"), as Prometheus would read them."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append({**s.labels, "value": s.value})
    return out


def total(samples: list[Sample], **labels: str) -> float:
    return sum(float(s["value"]) for s in samples if all(s.get(k) == v for k, v in labels.items()))


def test_requests_through_the_ingress_are_counted_with_istio_labels(mesh: Mesh, metrics_port: int) -> None:
    source = {
        "reporter": "source",
        "source_workload": "productpage-v1",
        "destination_service": REVIEWS,
        "response_code": "200",
    }
    gateway = {
        "reporter": "source",
        "source_workload": "istio-ingressgateway",
        "destination_service": "productpage.default.svc.cluster.local",
        "response_code": "200",
    }
    destination = {"reporter": "destination", "destination_service": REVIEWS}
    for _ in range(20):
        assert mesh.get("/productpage").status == 200

    def counted() -> bool:
        requests = scrape(metrics_port).get("istio_requests_total", [])
        return all(total(requests, **labels) >= 20 for labels in (source, gateway, destination))

    assert wait_until(counted, FLUSH_WAIT_S, interval=0.25), scrape(metrics_port).get("istio_requests_total")
    requests = scrape(metrics_port)["istio_requests_total"]
    # productpage's client side: every series carries Istio's labels.
    out = [s for s in requests if all(s.get(k) == v for k, v in source.items())]
    assert all(s["source_app"] == "productpage" and s["source_version"] == "v1" for s in out)
    assert all(
        s["destination_service_name"] == "reviews" and s["destination_service_namespace"] == "default" for s in out
    )
    assert {s["destination_workload"] for s in out} <= {"reviews-v1", "reviews-v2", "reviews-v3"}
    assert all(s["source_principal"] == "spiffe://cluster.local/ns/default/sa/bookinfo-productpage" for s in out)
    # The reviews sidecars' server side: reporter=destination, summing to the 20 requests, over mTLS.
    inbound = [
        s
        for s in requests
        if s["reporter"] == "destination"
        and s["destination_service"] == REVIEWS
        and s["destination_workload"] in ("reviews-v1", "reviews-v2", "reviews-v3")
    ]
    assert total(inbound) >= 20, inbound
    assert {s["connection_security_policy"] for s in inbound} == {"mutual_tls"}
    assert all(s["source_workload"] == "productpage-v1" for s in inbound)
    assert all(str(s["source_principal"]).endswith("/sa/bookinfo-productpage") for s in inbound)
    assert all(str(s["destination_principal"]).endswith("/sa/bookinfo-reviews") for s in inbound)
    # The gateway reports as source; the duration histogram counts what the counter counts.
    assert {s["destination_workload"] for s in requests if all(s.get(k) == v for k, v in gateway.items())} == {
        "productpage-v1"
    }
    labels = {k: str(v) for k, v in out[0].items() if k != "value"}

    def histograms_agree() -> bool:
        scraped = scrape(metrics_port)
        counter = total(scraped["istio_requests_total"], **labels)
        return all(
            total(scraped.get(name, []), **labels, **extra) == counter
            for name, extra in (
                ("istio_request_duration_milliseconds_count", {}),
                ("istio_request_duration_milliseconds_bucket", {"le": "+Inf"}),
                ("istio_response_bytes_count", {}),
                ("istio_request_bytes_count", {}),
            )
        )

    assert wait_until(histograms_agree, FLUSH_WAIT_S, interval=0.5)


def test_each_pod_serves_its_own_metrics_on_15020(mesh: Mesh) -> None:
    """Istio's agent port: the pod's Envoy metrics under Istio's names, read by anyone who can reach the pod."""
    for _ in range(3):
        assert mesh.get("/productpage").status == 200
    pod = next(p for p in mesh.status()["pods"] if p["deployment"] == "productpage-v1")
    with urllib.request.urlopen(f"http://{pod['ip']}:15020/stats/prometheus", timeout=5) as resp:
        text = resp.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "istio_requests" in families and "envoy_server_live" in families  # Istio's and Envoy's own
    assert "envoy_istiocustom" not in text
    mine = [
        s
        for s in families["istio_requests"].samples
        if s.labels["reporter"] == "destination" and s.labels["destination_workload"] == "productpage-v1"
    ]
    assert mine and {s.labels["source_workload"] for s in mine} == {"istio-ingressgateway"}


# An app with metrics of its own: the path it was asked for becomes a label, so the test sees that
# the annotation's path was used.
APP_METRICS_PY = """
import http.server

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ('# TYPE app_hits_total counter\\napp_hits_total{path="%s"} 42\\n' % self.path).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("", 9100), Handler).serve_forever()
"""


def test_annotated_pods_merge_their_apps_metrics_on_15020(mesh: Mesh, applied: Applied) -> None:
    """Istio's metrics merging: a pod with `prometheus.io/scrape`, `port` and `path` serves its app's
    metrics after its Envoy's on :15020 (one scrape target per pod, as Istio's agent); a pod without
    them serves Envoy's only."""
    applied.docs(
        "app-metrics.yaml",
        deployment(
            "app-metrics",
            command=["python3", "-c", APP_METRICS_PY],
            port=9100,
            annotations={
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9100",
                "prometheus.io/path": "/custom-metrics",
            },
        ),
    )

    def merged(deployment_name: str) -> str:
        pods = [p for p in mesh.status()["pods"] if p["deployment"] == deployment_name and p.get("ip")]
        if not pods:
            return ""
        try:
            with urllib.request.urlopen(f"http://{pods[0]['ip']}:15020/stats/prometheus", timeout=5) as resp:
                return str(resp.read().decode())
        except OSError:
            return ""

    assert wait_until(lambda: "app_hits_total" in merged("app-metrics"), timeout=30, interval=0.5), merged(
        "app-metrics"
    )
    families = {f.name: f for f in text_string_to_metric_families(merged("app-metrics"))}
    [hits] = families["app_hits"].samples
    assert hits.labels == {"path": "/custom-metrics"} and hits.value == 42
    assert "envoy_server_live" in families  # Envoy's own, before the app's
    assert "app_hits" not in merged("productpage-v1")


def test_fault_injected_abort_shows_code_and_flags(mesh: Mesh, metrics_port: int, applied: Applied) -> None:
    applied.docs(
        "details-abort.yaml",
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "details"},
            "spec": {
                "hosts": ["details"],
                "http": [
                    {
                        "fault": {"abort": {"percentage": {"value": 100.0}, "httpStatus": 500}},
                        "route": [{"destination": {"host": "details"}}],
                    }
                ],
            },
        },
    )
    for _ in range(3):
        assert mesh.get("/productpage").status == 200  # productpage shows "details unavailable"
    fault = {
        "reporter": "source",
        "source_workload": "productpage-v1",
        "destination_service": DETAILS,
        "response_code": "500",
        "response_flags": "FI",
    }
    assert wait_until(
        lambda: total(scrape(metrics_port).get("istio_requests_total", []), **fault) >= 3, FLUSH_WAIT_S, interval=0.25
    ), scrape(metrics_port).get("istio_requests_total")


def test_metrics_on_the_api_socket_and_the_cli(mesh: Mesh) -> None:
    out = mesh.cli("metrics", "--filter", "istio_requests").stdout
    assert "# TYPE istio_requests_total counter" in out
    assert 'reporter="destination"' in out
    assert "istio_request_duration_milliseconds" not in out
    everything = mesh.cli("metrics").stdout
    assert "istio_request_duration_milliseconds_bucket" in everything
    # ... and the control plane's own, under istiod's names.
    assert 'pilot_xds_pushes{type="cds"}' in everything and "pilot_proxy_convergence_time_bucket" in everything


def test_telemetry_turns_off_a_workloads_metrics_and_access_log(
    mesh: Mesh, metrics_port: int, applied: Applied
) -> None:
    applied.docs(
        "telemetry-off.yaml",
        {
            "apiVersion": "telemetry.istio.io/v1",
            "kind": "Telemetry",
            "metadata": {"name": "details-off"},
            "spec": {
                "selector": {"matchLabels": {"app": "details"}},
                "accessLogging": [{"disabled": True}],
                "metrics": [{"overrides": [{"disabled": True}]}],
            },
        },
    )
    sent = mesh.cli("proxy-config", "listeners", "deploy/details-v1", "-o", "json").stdout
    assert "envoy.access_loggers.stats" not in sent and "envoy.access_loggers.stdout" not in sent
    assert (
        "envoy.access_loggers.stats" in mesh.cli("proxy-config", "listeners", "deploy/reviews-v1", "-o", "json").stdout
    )
    time.sleep(2)  # connections accepted on the old filter chains drain (Envoy --drain-time-s 1)
    inbound = {"reporter": "destination", "destination_service": DETAILS}
    outbound = {"reporter": "source", "source_workload": "productpage-v1", "destination_service": DETAILS}
    log_before = mesh.cli("logs", "deploy/details-v1", "-c", "istio-proxy").stdout.count("inbound|9080||")
    before = scrape(metrics_port).get("istio_requests_total", [])
    for _ in range(5):
        assert mesh.get("/productpage").status == 200
    # productpage still reports its calls to details (source side) ...
    assert wait_until(
        lambda: (
            total(scrape(metrics_port).get("istio_requests_total", []), **outbound) >= total(before, **outbound) + 5
        ),
        FLUSH_WAIT_S,
        interval=0.25,
    )
    # ... details' own proxy reports nothing and logs nothing (its entries would have arrived by now).
    time.sleep(1.5)
    assert total(scrape(metrics_port)["istio_requests_total"], **inbound) == total(before, **inbound)
    log_after = mesh.cli("logs", "deploy/details-v1", "-c", "istio-proxy").stdout.count("inbound|9080||")
    assert log_after == log_before


# -------------------------------------------------------------------------- Prometheus (up --prometheus)

PROMETHEUS = "http://127.0.0.1:9090"
SCRAPE_WAIT_S = 40.0  # scrape every 5 s; rate() needs two samples of a series

# Queries of Istio's Grafana dashboards (istio-mesh, istio-service, istio-workload and the control
# plane's), their template variables filled in for bookinfo.
# fmt: off
GRAFANA_QUERIES = {
    "mesh: global request volume":
        'round(sum(irate(istio_requests_total{reporter=~"source|waypoint"}[1m])), 0.001)',
    "mesh: global success rate":
        'sum(rate(istio_requests_total{reporter=~"source|waypoint", response_code!~"5.*"}[1m])) '
        '/ sum(rate(istio_requests_total{reporter=~"source|waypoint"}[1m]))',
    "mesh: HTTP workloads":
        'label_join(sum(rate(istio_requests_total{reporter=~"source|waypoint", response_code="200"}[1m])) '
        'by (destination_workload, destination_workload_namespace, destination_service), '
        '"destination_workload_var", ".", "destination_workload", "destination_workload_namespace")',
    "service: client request volume":
        f'round(sum(irate(istio_requests_total{{reporter=~"source|waypoint",destination_service=~"{REVIEWS}"}}[5m])), '
        '0.001)',
    "service: client request duration p50":
        'histogram_quantile(0.50, sum(irate(istio_request_duration_milliseconds_bucket{reporter=~"source|waypoint",'
        f'destination_service=~"{REVIEWS}"}}[1m])) by (le)) / 1000',
    "service: incoming requests by source and response code":
        'round(sum(irate(istio_requests_total{reporter=~"destination|waypoint",connection_security_policy='
        f'"mutual_tls",destination_service=~"{REVIEWS}"}}[5m])) by (source_workload, source_workload_namespace, '
        'response_code), 0.001)',
    "workload: incoming request volume":
        'round(sum(irate(istio_requests_total{reporter=~"destination|waypoint",destination_workload_namespace=~'
        '"default",destination_workload=~"productpage-v1"}[5m])), 0.001)',
    "workload: request size p50":
        'histogram_quantile(0.50, sum(irate(istio_request_bytes_bucket{reporter=~"destination|waypoint",'
        'destination_workload=~"productpage-v1", destination_workload_namespace=~"default"}[1m])) by (le))',
    "workload: outgoing requests by destination":
        'round(sum(irate(istio_requests_total{reporter=~"source|waypoint", source_workload_namespace=~"default", '
        'source_workload=~"productpage-v1"}[5m])) by (destination_service, response_code), 0.001)',
    "control plane: xDS pushes":
        'sum(irate(pilot_xds_pushes[1m])) by (type)',
    "control plane: connected proxies": 'sum(pilot_xds)',
}
# fmt: on


def promql(query: str) -> list[dict[str, Any]]:
    data = urllib.parse.urlencode({"query": query}).encode()
    with urllib.request.urlopen(f"{PROMETHEUS}/api/v1/query", data=data, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_prometheus_sees_request_rates_by_workload_and_grafanas_queries_answer(mesh: Mesh) -> None:
    # Steady traffic for a while: rate() needs two scrapes of each series.
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        assert mesh.get("/productpage").status == 200
        time.sleep(0.2)

    def rates() -> dict[tuple[str, str], float]:
        rows = promql(
            'sum by (source_workload, destination_workload) (rate(istio_requests_total{reporter="source"}[1m]))'
        )
        return {
            (
                str(r["metric"].get("source_workload")),
                str(r["metric"].get("destination_workload")),
            ): float(r["value"][1])
            for r in rows
        }

    assert wait_until(
        lambda: (
            rates().get(("istio-ingressgateway", "productpage-v1"), 0) > 0
            and any(d.startswith("reviews-") and v > 0 for (s, d), v in rates().items() if s == "productpage-v1")
        ),
        SCRAPE_WAIT_S,
        interval=2,
    ), rates()
    # The same question through the CLI (PromQL via the control plane).
    table = mesh.cli("metrics", "--requests").stdout
    assert "istio-ingressgateway.istio-system" in table and "productpage-v1.default" in table
    empty = [name for name, query in GRAFANA_QUERIES.items() if not promql(query)]
    assert empty == [], f"Istio Grafana dashboard queries without data: {empty}"
    # Prometheus found every pod with a proxy by file service discovery, and scrapes them all.
    with urllib.request.urlopen(f"{PROMETHEUS}/api/v1/targets", timeout=10) as resp:
        targets = json.loads(resp.read())["data"]["activeTargets"]
    pods = {t["labels"]["pod"] for t in targets if t["labels"]["job"] == "kubernetes-pods" and t["health"] == "up"}
    assert {p["name"] for p in mesh.status()["pods"] if p["deployment"] == "productpage-v1"} <= pods
    assert any(t["labels"]["job"] == "pilot" and t["health"] == "up" for t in targets)


def _spans(mesh: Mesh, trace_id: str) -> list[dict[str, Any]]:
    proc = mesh.cli("traces", "-o", "json", "--trace", trace_id, check=False)
    found: list[dict[str, Any]] = json.loads(proc.stdout) if proc.returncode == 0 else []
    return found[0]["spans"] if found else []


def test_spans_are_reported_once_a_telemetry_turns_tracing_on(mesh: Mesh, applied: Applied) -> None:
    """Istio's default since 1.22 (this mesh has no tracing Telemetry): the proxies sample but have no
    tracer, so even a request the caller marks sampled (`x-b3-sampled: 1`) leaves no span. A
    Telemetry naming the built-in collector turns spans on for its namespace."""

    def sampled_request() -> str:
        trace_id = secrets.token_hex(16)
        b3 = {"x-b3-traceid": trace_id, "x-b3-spanid": secrets.token_hex(8), "x-b3-sampled": "1"}
        assert mesh.get("/productpage", headers=b3).status == 200
        return trace_id

    quiet = sampled_request()
    time.sleep(2.5)  # the proxies flush spans every second
    assert _spans(mesh, quiet) == []
    applied.docs(
        "tracing-on.yaml",
        {
            "apiVersion": "telemetry.istio.io/v1",
            "kind": "Telemetry",
            "metadata": {"name": "tracing-on", "namespace": "default"},
            "spec": {"tracing": [{"providers": [{"name": "zipkin"}]}]},
        },
    )
    time.sleep(2.5)  # connections on the old filter chains drain (--drain-time-s 1)
    traced = sampled_request()
    assert wait_until(lambda: bool(_spans(mesh, traced)), 8.0, interval=0.5)
    services = {str(s.get("localEndpoint", {}).get("serviceName")) for s in _spans(mesh, traced)}
    assert "productpage.default" in services and "istio-ingressgateway.istio-system" not in services
