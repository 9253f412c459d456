"""Istio's standard metrics with live traffic: bookinfo behind the ingress gateway, every sidecar
streaming access log entries to the control plane, Prometheus' view of them on
`up --metrics-port` (loopback), the REST socket and `gossamer metrics`.

One mesh for the module (its own run dir, ingress port and metrics port)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.mesh import REPO, Applied, Mesh, applying, free_port, own_mesh, wait_until

pytestmark = pytest.mark.e2e

RUN_DIR = Path("/run/gsm-e2e-tel")
REVIEWS = "reviews.default.svc.cluster.local"
DETAILS = "details.default.svc.cluster.local"
FLUSH_WAIT_S = 5.0  # entries are flushed every second

Sample = dict[str, str | float]


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, metrics_port: int) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("telemetry")
    with own_mesh(RUN_DIR, tmp / "state", REPO / "samples/bookinfo",
                  up_args=("--metrics-port", str(metrics_port))) as m:
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
    source = {"reporter": "source", "source_workload": "productpage-v1", "destination_service": REVIEWS,
              "response_code": "200"}
    gateway = {"reporter": "source", "source_workload": "istio-ingressgateway",
               "destination_service": "productpage.default.svc.cluster.local", "response_code": "200"}
    destination = {"reporter": "destination", "destination_service": REVIEWS}
    for _ in range(20):
        assert mesh.get("/productpage").status == 200

    def counted() -> bool:
        requests = scrape(metrics_port).get("istio_requests_total", [])
        return all(total(requests, **labels) >= 20 for labels in (source, gateway, destination))

    assert wait_until(counted, FLUSH_WAIT_S, interval=0.25), scrape(metrics_port).get("istio_requests_total")
    scraped = scrape(metrics_port)
    requests = scraped["istio_requests_total"]
    # productpage's client side: every series carries Istio's labels.
    out = [s for s in requests if all(s.get(k) == v for k, v in source.items())]
    assert all(s["source_app"] == "productpage" and s["source_version"] == "v1" for s in out)
    assert all(s["destination_service_name"] == "reviews" and s["destination_service_namespace"] == "default"
               for s in out)
    assert {s["destination_workload"] for s in out} <= {"reviews-v1", "reviews-v2", "reviews-v3"}
    assert all(s["source_principal"] == "spiffe://cluster.local/ns/default/sa/bookinfo-productpage" for s in out)
    # The reviews sidecars' server side: reporter=destination, summing to the 20 requests, over mTLS.
    inbound = [s for s in requests if s["reporter"] == "destination" and s["destination_service"] == REVIEWS
               and s["destination_workload"] in ("reviews-v1", "reviews-v2", "reviews-v3")]
    assert total(inbound) >= 20, inbound
    assert {s["connection_security_policy"] for s in inbound} == {"mutual_tls"}
    assert all(s["source_workload"] == "productpage-v1" for s in inbound)
    assert all(str(s["source_principal"]).endswith("/sa/bookinfo-productpage") for s in inbound)
    assert all(str(s["destination_principal"]).endswith("/sa/bookinfo-reviews") for s in inbound)
    # The gateway reports as source; the duration histogram counts what the counter counts.
    assert {s["destination_workload"] for s in requests if all(s.get(k) == v for k, v in gateway.items())} \
        == {"productpage-v1"}
    labels = {k: v for k, v in out[0].items() if k != "value"}
    counter = total(requests, **labels)
    assert total(scraped["istio_request_duration_milliseconds_count"], **labels) == counter
    assert total(scraped["istio_request_duration_milliseconds_bucket"], le="+Inf", **labels) == counter
    assert total(scraped["istio_response_bytes_count"], **labels) == counter


def test_fault_injected_abort_shows_code_and_flags(mesh: Mesh, metrics_port: int, applied: Applied) -> None:
    applied.docs("details-abort.yaml", {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "details"},
        "spec": {"hosts": ["details"], "http": [{
            "fault": {"abort": {"percentage": {"value": 100.0}, "httpStatus": 500}},
            "route": [{"destination": {"host": "details"}}]}]}})
    for _ in range(3):
        assert mesh.get("/productpage").status == 200  # productpage shows "details unavailable"
    fault = {"reporter": "source", "source_workload": "productpage-v1", "destination_service": DETAILS,
             "response_code": "500", "response_flags": "FI"}
    assert wait_until(lambda: total(scrape(metrics_port).get("istio_requests_total", []), **fault) >= 3,
                      FLUSH_WAIT_S, interval=0.25), scrape(metrics_port).get("istio_requests_total")


def test_metrics_on_the_api_socket_and_the_cli(mesh: Mesh) -> None:
    out = mesh.cli("metrics", "--filter", "istio_requests").stdout
    assert "# TYPE istio_requests_total counter" in out
    assert 'reporter="destination"' in out
    assert "istio_request_duration_milliseconds" not in out
    everything = mesh.cli("metrics").stdout
    assert "istio_request_duration_milliseconds_bucket" in everything
    assert "istio_tcp_connections_opened_total" in everything


def test_telemetry_turns_off_a_workloads_metrics_and_access_log(mesh: Mesh, metrics_port: int,
                                                                applied: Applied) -> None:
    applied.docs("telemetry-off.yaml", {
        "apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry", "metadata": {"name": "details-off"},
        "spec": {"selector": {"matchLabels": {"app": "details"}}, "accessLogging": [{"disabled": True}],
                 "metrics": [{"overrides": [{"disabled": True}]}]}})
    sent = mesh.cli("proxy-config", "listeners", "deploy/details-v1", "-o", "json").stdout
    assert "envoy.access_loggers.http_grpc" not in sent and "envoy.access_loggers.stdout" not in sent
    assert "envoy.access_loggers.http_grpc" in mesh.cli("proxy-config", "listeners", "deploy/reviews-v1",
                                                        "-o", "json").stdout
    time.sleep(2)  # connections accepted on the old filter chains drain (Envoy --drain-time-s 1)
    inbound = {"reporter": "destination", "destination_service": DETAILS}
    outbound = {"reporter": "source", "source_workload": "productpage-v1", "destination_service": DETAILS}
    log_before = mesh.cli("logs", "deploy/details-v1", "-c", "istio-proxy").stdout.count("inbound|9080||")
    before = scrape(metrics_port).get("istio_requests_total", [])
    for _ in range(5):
        assert mesh.get("/productpage").status == 200
    # productpage still reports its calls to details (source side) ...
    assert wait_until(lambda: total(scrape(metrics_port).get("istio_requests_total", []), **outbound)
                      >= total(before, **outbound) + 5, FLUSH_WAIT_S, interval=0.25)
    # ... details' own proxy reports nothing and logs nothing (its entries would have arrived by now).
    time.sleep(1.5)
    assert total(scrape(metrics_port)["istio_requests_total"], **inbound) == total(before, **inbound)
    log_after = mesh.cli("logs", "deploy/details-v1", "-c", "istio-proxy").stdout.count("inbound|9080||")
    assert log_after == log_before
