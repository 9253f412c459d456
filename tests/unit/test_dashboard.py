"""The dashboard's aggregation: graph edges and rates from Istio's request counters, the workloads
and config views, and the loopback-only web app."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gossamer.analyze.live import mesh_messages
from gossamer.dashboard.app import dashboard_app
from gossamer.dashboard.graph import (
    Counts,
    RateWindow,
    Sample,
    ServiceInfo,
    WorkloadInfo,
    build_graph,
    edge_counters,
    layout,
    request_samples,
    request_samples_from_text,
)
from gossamer.dashboard.views import config_view, workloads_view
from gossamer.resources.loader import parse_documents
from gossamer.runtime.types import PodStatus
from gossamer.store import StoredObject
from gossamer.telemetry.peer import HTTP_LABELS as LABELS
from gossamer.telemetry.scrape import merge_expositions
from gossamer.xds.proxy_status import ProxyStatus, ProxyTypeStatus
from gossamer.xds.types import CLUSTER, LISTENER

REVIEWS = "reviews.default.svc.cluster.local"
PRODUCTPAGE = "productpage.default.svc.cluster.local"


def _labels(
    reporter: str, source: str, service: str, dest: str, code: str = "200", source_ns: str = "default"
) -> dict[str, str]:
    out = dict.fromkeys(LABELS, "unknown")
    out.update(
        reporter=reporter,
        source_workload=source,
        source_workload_namespace=source_ns,
        destination_service=service,
        destination_workload=dest,
        destination_workload_namespace="default",
        response_code=code,
    )
    return out


def bookinfo_registry(ok: int = 20, failed: int = 0) -> CollectorRegistry:
    """productpage-v1 -> reviews (seen by both proxies) and the gateway -> productpage."""
    registry = CollectorRegistry()
    requests = Counter("istio_requests", "Requests", LABELS, registry=registry)
    for reporter in ("source", "destination"):
        requests.labels(**_labels(reporter, "productpage-v1", REVIEWS, "reviews-v1")).inc(ok // 2)
        requests.labels(**_labels(reporter, "productpage-v1", REVIEWS, "reviews-v2")).inc(ok - ok // 2)
        if failed:
            requests.labels(**_labels(reporter, "productpage-v1", REVIEWS, "reviews-v2", "503")).inc(failed)
        requests.labels(
            **_labels(reporter, "istio-ingressgateway", PRODUCTPAGE, "productpage-v1", source_ns="istio-system")
        ).inc(ok)
    return registry


SERVICES = [
    ServiceInfo(PRODUCTPAGE, "productpage", "default", (("app", "productpage"),)),
    ServiceInfo(REVIEWS, "reviews", "default", (("app", "reviews"),)),
    ServiceInfo("ratings.default.svc.cluster.local", "ratings", "default", (("app", "ratings"),)),
]
WORKLOADS = [
    WorkloadInfo("istio-ingressgateway", "istio-system", (("app", "istio-ingressgateway"),), 1, 1, True),
    WorkloadInfo("productpage-v1", "default", (("app", "productpage"), ("version", "v1")), 1, 1, True),
    WorkloadInfo("reviews-v1", "default", (("app", "reviews"), ("version", "v1")), 1, 1, True),
    WorkloadInfo("reviews-v2", "default", (("app", "reviews"), ("version", "v2")), 1, 0, True),
    WorkloadInfo("ratings-v1", "default", (("app", "ratings"), ("version", "v1")), 1, 1, True),
]


def _edge(graph: dict[str, Any], source: str, target: str) -> dict[str, Any]:
    return next(e for e in graph["edges"] if e["source"] == source and e["target"] == target)


def test_edges_from_the_registry_prefer_the_clients_view_and_count_once() -> None:
    counters = edge_counters(request_samples(bookinfo_registry(ok=20, failed=4)))
    calls = counters[("source", "calls", "wl:default/productpage-v1", f"svc:{REVIEWS}")]
    assert calls == Counts(requests=24, errors=4, client_errors=0)
    assert counters[("destination", "serves", f"svc:{REVIEWS}", "wl:default/reviews-v2")].requests == 14
    window = RateWindow(window=30)
    window.observe({}, now=0.0)
    window.observe(counters, now=4.0)
    graph = build_graph(SERVICES, WORKLOADS, window.latest(), window.rates())
    edge = _edge(graph, "wl:default/productpage-v1", f"svc:{REVIEWS}")
    assert edge["reporter"] == "source" and edge["requests"] == 24  # not 48: each request once
    assert edge["rps"] == 6.0 and edge["errorRps"] == 1.0 and edge["errorRatio"] == round(4 / 24, 4)
    serves = _edge(graph, f"svc:{REVIEWS}", "wl:default/reviews-v1")
    assert serves["type"] == "serves" and serves["reporter"] == "destination" and serves["rps"] == 2.5


def test_edges_from_metrics_text_match_the_registry() -> None:
    registry = bookinfo_registry(ok=10, failed=2)
    text = generate_latest(registry).decode()
    assert edge_counters(request_samples_from_text(text)) == edge_counters(request_samples(registry))


def test_request_counters_read_from_text_among_histograms() -> None:
    """A proxy's text holds the duration histogram's buckets too (most of it): the counters read the same."""
    registry = bookinfo_registry(ok=6, failed=1)
    duration = Histogram("istio_request_duration_milliseconds", "Duration", LABELS, registry=registry)
    duration.labels(**_labels("source", "productpage-v1", REVIEWS, "reviews-v1")).observe(12.0)
    text = generate_latest(registry).decode()
    assert "istio_request_duration_milliseconds_bucket" in text

    def series(samples: list[Sample]) -> set[tuple[frozenset[tuple[str, str]], float]]:
        return {(frozenset(s.labels.items()), s.value) for s in samples}

    samples = request_samples_from_text(text)
    assert len(samples) == 8 and series(samples) == series(request_samples(registry))


def test_edges_from_several_pods_metrics_summed() -> None:
    """Two replicas report the same series: the mesh view (what the control plane's scrape serves) sums them."""
    one = generate_latest(bookinfo_registry(ok=10)).decode()
    two = generate_latest(bookinfo_registry(ok=4)).decode()
    counters = edge_counters(request_samples_from_text(merge_expositions([one, two])))
    assert counters[("source", "calls", "wl:default/productpage-v1", f"svc:{REVIEWS}")].requests == 14


def test_rates_over_the_window_and_counter_history() -> None:
    window = RateWindow(window=10)
    key = ("source", "calls", "wl:a/a", "svc:b")
    assert window.rates() == {}
    window.observe({key: Counts(0, 0, 0)}, now=0.0)
    window.observe({key: Counts(10, 0, 0)}, now=5.0)
    assert window.rates()[key].requests == 2.0
    window.observe({key: Counts(10, 0, 0)}, now=12.0)
    window.observe({key: Counts(10, 0, 0)}, now=30.0)  # idle for a whole window: rate drops to 0
    assert window.rates()[key].requests == 0.0
    assert window.latest()[key].requests == 10


def test_graph_layers_left_to_right_and_selection_edges_without_traffic() -> None:
    counters = edge_counters(request_samples(bookinfo_registry()))
    graph = build_graph(SERVICES, WORKLOADS, counters, {})
    layer = {n["id"]: n["layer"] for n in graph["nodes"]}
    chain = [
        "wl:istio-system/istio-ingressgateway",
        f"svc:{PRODUCTPAGE}",
        "wl:default/productpage-v1",
        f"svc:{REVIEWS}",
        "wl:default/reviews-v1",
    ]
    assert [layer[n] for n in chain] == [0, 1, 2, 3, 4]
    # ratings has no traffic: its service still shows, joined to its workload by a "selects" edge.
    selects = _edge(graph, "svc:ratings.default.svc.cluster.local", "wl:default/ratings-v1")
    assert selects["type"] == "selects" and selects["rps"] == 0
    assert not [e for e in graph["edges"] if e["type"] == "selects" and e["target"] == "wl:default/reviews-v1"]
    assert next(n for n in graph["nodes"] if n["id"] == "wl:default/reviews-v2")["ready"] == 0
    # Each layer's nodes have distinct orders.
    seen = [(n["layer"], n["order"]) for n in graph["nodes"]]
    assert len(seen) == len(set(seen))


def test_graph_nodes_seen_only_in_metrics_and_cycles() -> None:
    counters = {("source", "calls", "wl:default/a", "svc:httpbin.org"): Counts(1, 0, 0)}
    graph = build_graph([], [], counters, {})
    external = next(n for n in graph["nodes"] if n["id"] == "svc:httpbin.org")
    assert external["type"] == "service" and external["name"] == "httpbin"
    nodes: dict[str, dict[str, Any]] = {n: {"id": n, "name": n} for n in ("a", "b", "c")}
    layout(nodes, [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}, {"source": "c", "target": "a"}])
    assert sorted(n["layer"] for n in nodes.values()) == [0, 1, 2]


def _pod(name: str, *, ready: bool = True, restarts: int = 0, sidecar: bool = True) -> PodStatus:
    return PodStatus(
        name=name,
        namespace="default",
        deployment=name.rsplit("-", 1)[0],
        ip="10.244.0.9",
        labels=(("app", "x"),),
        service_account="default",
        has_sidecar=sidecar,
        proxy_type="sidecar",
        phase="Running",
        app_ready=ready,
        proxy_ready=True,
        restarts=restarts,
    )


def test_workloads_view_highlights_nacks() -> None:
    pods = [_pod("reviews-v1-abc"), _pod("ratings-v1-def", ready=False, restarts=2)]
    nacked = ProxyStatus(
        node_id="sidecar~10.244.0.9~reviews-v1-abc.default~default.svc.cluster.local",
        group="g1",
        metadata={},
        connected_at=0.0,
        types={
            CLUSTER: ProxyTypeStatus(
                CLUSTER, sent_version="2", acked_version="1", nacked_version="2", error="bad cluster x"
            ),
            LISTENER: ProxyTypeStatus(LISTENER, sent_version="1"),
        },
    )
    view = workloads_view(pods, [nacked], lambda pod: f"gsm-{pod.name}")
    ratings = next(p for p in view["pods"] if p["name"] == "ratings-v1-def")
    assert ratings["ready"] is False and ratings["restarts"] == 2 and ratings["containersReady"] == "1/2"
    assert ratings["netns"] == "gsm-ratings-v1-def"
    proxy = view["proxies"][0]
    assert proxy["pod"] == "reviews-v1-abc" and list(proxy["types"]) == ["cds", "lds"]
    assert proxy["types"]["cds"] == {"state": "NACKED", "sent": "2", "acked": "1", "error": "bad cluster x"}
    assert proxy["types"]["lds"]["state"] == "STALE"
    assert proxy["state"] == "NACKED" and proxy["nacks"] == ["CDS: bad cluster x"]
    assert view["summary"] == {"pods": 2, "ready": 1, "restarts": 2, "proxies": 1, "synced": 0, "nacked": 1}


CONFIG = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
        subset: v9
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
---
apiVersion: v1
kind: Service
metadata:
  name: reviews
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
"""


def test_config_view_shows_sources_and_warnings() -> None:
    parsed, issues = parse_documents(CONFIG, "rules.yaml")
    assert not issues
    stored = [
        StoredObject(
            r.kind, r.metadata.namespace or "default", r.metadata.name, i + 1, 1, i, r.raw, r.source_file, r.source_line
        )
        for i, r in enumerate(parsed)
    ]
    view = config_view(stored, parsed, mesh_messages(parsed, pods=[]))
    vs, dr = view["items"]
    assert (vs["kind"], vs["source"], vs["hosts"]) == ("VirtualService", "rules.yaml:1", ["reviews"])
    (warning,) = vs["warnings"]
    assert (warning["line"], warning["field"], warning["code"]) == (
        11,
        "spec.http[0].route[0].destination.subset",
        "IST0101",
    )
    assert "'reviews+v9'" in warning["message"]
    assert warning["text"].startswith("rules.yaml:11: Error [IST0101] (VirtualService default/reviews)")
    assert (dr["kind"], dr["source"], dr["summary"]) == ("DestinationRule", "rules.yaml:13", "subsets v1")
    assert [w["code"] for w in dr["warnings"]] == ["IST0173"]  # no pod runs: subset v1 selects none
    assert view["warnings"] == 2


async def _no_metrics() -> str:
    return ""


async def test_app_serves_the_page_on_loopback_names_only() -> None:
    api = SimpleNamespace(control_plane=SimpleNamespace(metrics_text=_no_metrics))
    async with TestClient(TestServer(dashboard_app(api))) as client:  # type: ignore[arg-type]
        page = await client.get("/", headers={"Host": "127.0.0.1:20001"})
        assert page.status == 200 and 'id="app"' in await page.text()
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        js = await client.get("/static/dashboard.js", headers={"Host": "localhost:20001"})
        assert js.status == 200 and "http://" not in (await js.text()).replace("http://www.w3.org/2000/svg", "")
        rebound = await client.get("/api/overview", headers={"Host": "evil.example:20001"})
        assert rebound.status == 403
        form = await client.post("/api/explain", data="ref=x", headers={"Host": "127.0.0.1:20001"})
        assert form.status == 415
