"""Distributed tracing: the Zipkin collector (JSON v2 parsing, grouping by trace, bounds, the unix
socket Envoy posts to), Telemetry `tracing` -> the HTTP connection managers' tracing, and the
bootstrap's `zipkin` cluster."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from envoy.config.trace.v3 import zipkin_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from gossamer.agent.bootstrap import build_bootstrap
from gossamer.cli.traces import format_trace
from gossamer.ir.types import Tracing, TracingTag
from gossamer.resources import not_enforced_fields, parse_documents
from gossamer.telemetry.tracing import SpanError, SpanStore, ZipkinCollector, parse_span, parse_spans, span_tree
from gossamer.translate import translate_proxy
from gossamer.xds.build import build_resources
from gossamer.xds.types import LISTENER
from tests.support.offline import proxy_for, snapshot_from_yaml

TRACE = "463ac35c9f6413ad48485a3953bb6124"


def span(
    span_id: str,
    parent: str | None = None,
    *,
    trace: str = TRACE,
    service: str = "productpage.default",
    kind: str = "SERVER",
    ts: int = 1_000,
    duration: int = 500,
    **tags: str,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": trace,
        "id": span_id,
        "name": f"op-{span_id[-2:]}",
        "kind": kind,
        "timestamp": ts,
        "duration": duration,
        "localEndpoint": {"serviceName": service, "ipv4": "10.244.0.5"},
        "tags": tags,
    }
    if parent:
        out["parentId"] = parent
    return out


# -- JSON v2 parsing ------------------------------------------------------------------
def test_parse_span_normalizes_ids_numbers_and_tags() -> None:
    out = parse_span(
        {
            "traceId": TRACE.upper(),
            "id": "ABC",
            "parentId": "00000000000000ff",
            "kind": "CLIENT",
            "name": "reviews.default.svc.cluster.local:9080/*",
            "timestamp": "1700000000000000",
            "duration": 1234,
            "localEndpoint": {"serviceName": "productpage.default", "port": 0},
            "tags": {"http.status_code": 200, "upstream_cluster": "outbound|9080||reviews"},
        }
    )
    assert out["traceId"] == TRACE and out["id"] == "0000000000000abc" and out["parentId"] == "00000000000000ff"
    assert out["timestamp"] == 1_700_000_000_000_000 and out["duration"] == 1234
    assert out["tags"] == {"http.status_code": "200", "upstream_cluster": "outbound|9080||reviews"}
    assert out["localEndpoint"] == {"serviceName": "productpage.default", "port": 0}
    # 64-bit trace ids are valid too; a span naming itself as parent is a root.
    assert "parentId" not in parse_span(
        {"traceId": "48485a3953bb6124", "id": "48485a3953bb6124", "parentId": "48485a3953bb6124"}
    )


@pytest.mark.parametrize(
    "raw",
    [
        {"id": "0000000000000001"},  # no trace id
        {"traceId": "xyz", "id": "0000000000000001"},
        {"traceId": TRACE + "00", "id": "0000000000000001"},  # 144 bits
        {"traceId": TRACE, "id": "00000000000000001"},  # 68 bits
        {"traceId": TRACE, "id": "0000000000000001", "kind": "INTERNAL"},
        {"traceId": TRACE, "id": "0000000000000001", "timestamp": "soon"},
        {"traceId": TRACE, "id": "0000000000000001", "duration": -1},
        {"traceId": TRACE, "id": "0000000000000001", "tags": ["a"]},
        "a span",
    ],
)
def test_parse_span_rejects(raw: Any) -> None:
    with pytest.raises(SpanError):
        parse_span(raw)


def test_parse_spans_keeps_the_valid_ones() -> None:
    spans, errors = parse_spans([span("0000000000000001"), {"traceId": "nope"}, span("0000000000000002")])
    assert [s["id"] for s in spans] == ["0000000000000001", "0000000000000002"]
    assert len(errors) == 1 and errors[0].startswith("span 1:")
    with pytest.raises(SpanError):
        parse_spans({"traceId": TRACE})


# -- the store ------------------------------------------------------------------------
def test_store_groups_by_trace_and_reports_recent_first() -> None:
    store = SpanStore()
    other = "0" * 16 + "1" * 16
    store.add(
        parse_spans(
            [
                span("00000000000000a1", ts=1_000, service="istio-ingressgateway.istio-system"),
                span("00000000000000a2", "00000000000000a1", ts=1_100, duration=300),
                span("00000000000000b1", trace=other, ts=5_000, service="ratings.default"),
            ]
        )[0]
    )
    assert len(store) == 3
    traces = store.traces()
    assert [t["traceId"] for t in traces] == [other, TRACE]  # most recent first
    first = traces[1]
    assert first["services"] == ["istio-ingressgateway.istio-system", "productpage.default"]
    assert first["timestamp"] == 1_000 and first["duration"] == 500 and first["root"] == "op-a1"
    assert [s["id"] for s in first["spans"]] == ["00000000000000a1", "00000000000000a2"]
    assert [t["traceId"] for t in store.traces(service="productpage")] == [TRACE]
    assert [t["traceId"] for t in store.traces(service="ratings.default")] == [other]
    assert store.traces(service="ratings.istio-system") == []
    assert len(store.traces(limit=1)) == 1
    assert [s["id"] for s in store.trace(TRACE.upper())] == ["00000000000000a1", "00000000000000a2"]
    assert store.trace("0" * 32) == []


def test_store_is_bounded_and_drops_the_oldest_spans() -> None:
    store = SpanStore(max_spans=3)
    traces = [f"{i:032x}" for i in range(1, 4)]
    store.add([parse_span(span(f"{i:016x}", trace=traces[0])) for i in range(1, 3)])  # trace 1: 2 spans
    store.add([parse_span(span("0000000000000003", trace=traces[1]))])
    assert len(store) == 3
    store.add(
        [parse_span(span("0000000000000004", trace=traces[2])), parse_span(span("0000000000000005", trace=traces[2]))]
    )
    assert len(store) == 3
    # Trace 1 lost both its spans (and is gone); traces 2 and 3 remain.
    assert {t["traceId"] for t in store.traces()} == {traces[1], traces[2]}
    assert store.trace(traces[0]) == []
    # The same span reported again replaces the first report and takes no room.
    store.add([parse_span(span("0000000000000005", trace=traces[2], duration=999))])
    assert len(store) == 3 and store.trace(traces[2])[-1]["duration"] == 999
    # Client and server spans sharing an id (Zipkin's shared span context) are two spans.
    store.add([parse_span(span("0000000000000005", trace=traces[2], kind="CLIENT", service="details.default"))])
    assert len(store) == 3 and len(store.trace(traces[2])) == 3


def test_span_tree_nests_children_under_parents() -> None:
    spans = [
        parse_span(s)
        for s in (
            span("0000000000000001", ts=1),
            span("0000000000000003", "0000000000000002", ts=3),
            span("0000000000000002", "0000000000000001", ts=2, kind="CLIENT"),
            span("0000000000000004", "0000000000000001", ts=4, kind="CLIENT"),
            span("0000000000000009", "00000000000000ff", ts=0),  # parent never reported: a root
        )
    ]
    assert [(d, s["id"][-1]) for d, s in span_tree(spans)] == [(0, "9"), (0, "1"), (1, "2"), (2, "3"), (1, "4")]


def test_format_trace_shows_the_tree_with_codes_and_upstream_clusters() -> None:
    store = SpanStore()
    store.add(
        parse_spans(
            [
                span(
                    "0000000000000001",
                    ts=1_000,
                    duration=12_000,
                    service="istio-ingressgateway.istio-system",
                    **{
                        "http.status_code": "200",
                        "upstream_cluster": "outbound|9080||productpage.default.svc.cluster.local",
                    },
                ),
                span(
                    "0000000000000002",
                    "0000000000000001",
                    ts=2_000,
                    duration=9_000,
                    **{"http.status_code": "503", "response_flags": "UF"},
                ),
            ]
        )[0]
    )
    lines = format_trace(store.traces()[0])
    assert lines[0].startswith(f"trace {TRACE}") and "2 spans, 2 services" in lines[0]
    assert lines[1] == (
        "  istio-ingressgateway.istio-system  server  op-01  12.0 ms  200  "
        "-> outbound|9080||productpage.default.svc.cluster.local"
    )
    assert lines[2] == "    productpage.default  server  op-02  9.0 ms  503  UF"


# -- the collector on its unix socket -------------------------------------------------
def test_collector_accepts_zipkin_v2_posts_on_a_unix_socket(tmp_path: Path) -> None:
    async def run() -> None:
        store = SpanStore()
        collector = ZipkinCollector(store)
        sock = tmp_path / "zipkin.sock"
        await collector.start(sock, writer_gid=4242)
        try:
            assert sock.stat().st_mode & 0o777 == 0o660  # root and the proxies' group only
            if os.geteuid() == 0:
                assert sock.stat().st_gid == 4242
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as session:
                body = json.dumps([span("0000000000000001"), span("0000000000000002", "0000000000000001")])
                async with session.post(
                    "http://zipkin/api/v2/spans", data=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    assert resp.status == 202
                async with session.post("http://zipkin/api/v2/spans", data=b"{not json") as resp:
                    assert resp.status == 400
                async with session.post("http://zipkin/api/v2/spans", data=b'{"traceId": "x"}') as resp:
                    assert resp.status == 400
        finally:
            await collector.stop()
        assert len(store) == 2 and store.traces()[0]["traceId"] == TRACE

    asyncio.run(run())


# -- Telemetry -> HCM tracing ---------------------------------------------------------
BOOKINFO = (Path(__file__).resolve().parents[2] / "samples/bookinfo/bookinfo.yaml").read_text()
GATEWAY = (Path(__file__).resolve().parents[2] / "samples/bookinfo/bookinfo-gateway.yaml").read_text()


def _telemetry(namespace: str, spec: dict[str, Any], name: str = "t") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "telemetry.istio.io/v1",
            "kind": "Telemetry",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def _hcm_tracing(
    extra: list[str], deployment: str, namespace: str = "default"
) -> dict[str, hcm_pb2.HttpConnectionManager.Tracing | None]:
    """listener name -> its HCMs' tracing (None: no tracing), all HCMs of a listener alike."""
    snapshot = snapshot_from_yaml("\n---\n".join([BOOKINFO, GATEWAY, *extra]))
    config = translate_proxy(snapshot, proxy_for(snapshot, deployment, namespace))
    out: dict[str, hcm_pb2.HttpConnectionManager.Tracing | None] = {}
    for name, listener in build_resources(config)[LISTENER].items():
        found = []
        for chain in [*listener.filter_chains, listener.default_filter_chain]:
            for f in chain.filters:
                if f.name == "envoy.filters.network.http_connection_manager":
                    hcm = hcm_pb2.HttpConnectionManager()
                    f.typed_config.Unpack(hcm)
                    found.append(hcm.tracing if hcm.HasField("tracing") else None)
        if found:
            assert all(t == found[0] for t in found), name
            out[name] = found[0]
    return out


def _sampling(extra: list[str], deployment: str, namespace: str = "default") -> dict[str, float | None]:
    return {
        name: (t.random_sampling.value if t is not None else None)
        for name, t in _hcm_tracing(extra, deployment, namespace).items()
    }


def test_by_default_no_hcm_traces() -> None:
    """Istio since 1.22: no tracing backend until a Telemetry or defaultProviders.tracing names one:
    no spans, no B3 headers (Istio leaves Envoy its null tracer; nothing of it reaches an app)."""
    assert _hcm_tracing([], "reviews-v1") == {"0.0.0.0_80": None, "0.0.0.0_9080": None, "virtualInbound": None}
    assert _sampling([], "istio-ingressgateway", "istio-system") == {"0.0.0.0_8080": None}


def test_default_providers_turn_spans_on_without_a_telemetry() -> None:
    mesh = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "istio", "namespace": "istio-system"},
            "data": {"mesh": yaml.safe_dump({"defaultProviders": {"tracing": ["zipkin"]}})},
        }
    )
    tracing = _hcm_tracing([mesh], "reviews-v1")
    assert {t.provider.name for t in tracing.values() if t is not None} == {"envoy.tracers.zipkin"}


def test_a_telemetry_traces_every_hcm_to_the_zipkin_collector_at_istio_default_sampling() -> None:
    mesh = _telemetry("istio-system", {"tracing": [{"providers": [{"name": "zipkin"}]}]}, "mesh-default")
    tracing = _hcm_tracing([mesh], "reviews-v1")
    assert set(tracing) == {"0.0.0.0_80", "0.0.0.0_9080", "virtualInbound"}  # 80: the ingress gateway's
    for t in tracing.values():
        assert t is not None
        assert (t.random_sampling.value, t.client_sampling.value, t.overall_sampling.value) == (1.0, 100.0, 100.0)
        assert t.provider.name == "envoy.tracers.zipkin"
        assert not t.HasField("spawn_upstream_span")  # as Istio: not for sidecars
        zipkin = zipkin_pb2.ZipkinConfig()
        t.provider.typed_config.Unpack(zipkin)
        assert zipkin.collector_cluster == "zipkin" and zipkin.collector_endpoint == "/api/v2/spans"
        assert zipkin.collector_endpoint_version == zipkin_pb2.ZipkinConfig.HTTP_JSON
        assert zipkin.trace_id_128bit and zipkin.HasField("shared_span_context")
        assert not zipkin.shared_span_context.value
    gateway = _sampling([mesh], "istio-ingressgateway", "istio-system")
    assert gateway == {"0.0.0.0_8080": 1.0}


def test_telemetry_sampling_levels_and_sides() -> None:
    mesh = _telemetry("istio-system", {"tracing": [{"randomSamplingPercentage": 100}]}, "mesh-default")
    assert set(_sampling([mesh], "reviews-v1").values()) == {100.0}
    assert set(_sampling([mesh], "istio-ingressgateway", "istio-system").values()) == {100.0}
    # The namespace's Telemetry overrides the mesh's; a workload's overrides both.
    ns = _telemetry("default", {"tracing": [{"randomSamplingPercentage": 10}]}, "ns")
    workload = _telemetry(
        "default",
        {"selector": {"matchLabels": {"app": "reviews"}}, "tracing": [{"randomSamplingPercentage": 50.5}]},
        "w",
    )
    assert set(_sampling([mesh, ns, workload], "reviews-v1").values()) == {50.5}
    assert set(_sampling([mesh, ns, workload], "ratings-v1").values()) == {10.0}
    # match.mode: SERVER is the inbound side only, CLIENT the outbound (and gateway) side.
    server = _telemetry("default", {"tracing": [{"match": {"mode": "SERVER"}, "randomSamplingPercentage": 0}]})
    assert _sampling([mesh, server], "reviews-v1") == {
        "0.0.0.0_80": 100.0,
        "0.0.0.0_9080": 100.0,
        "virtualInbound": 0.0,
    }


def test_disable_span_reporting_turns_tracing_off() -> None:
    off = _telemetry(
        "default", {"selector": {"matchLabels": {"app": "reviews"}}, "tracing": [{"disableSpanReporting": True}]}
    )
    mesh_on = _telemetry("istio-system", {"tracing": [{"providers": [{"name": "zipkin"}]}]}, "mesh-default")
    assert set(_sampling([mesh_on, off], "reviews-v1").values()) == {None}
    assert set(_sampling([mesh_on, off], "ratings-v1").values()) == {1.0}
    # Off for the mesh, back on for one workload.
    mesh_off = _telemetry("istio-system", {"tracing": [{"disableSpanReporting": True}]}, "m")
    on = _telemetry(
        "default",
        {
            "selector": {"matchLabels": {"app": "ratings"}},
            "tracing": [{"disableSpanReporting": False, "randomSamplingPercentage": 5}],
        },
    )
    assert set(_sampling([mesh_off, on], "reviews-v1").values()) == {None}
    assert set(_sampling([mesh_off, on], "ratings-v1").values()) == {5.0}
    assert set(_sampling([mesh_off], "istio-ingressgateway", "istio-system").values()) == {None}


def test_custom_tags_literal_header_environment() -> None:
    tags = _telemetry(
        "default",
        {
            "tracing": [
                {
                    "customTags": {
                        "team": {"literal": {"value": "books"}},
                        "user": {"header": {"name": "end-user", "defaultValue": "anonymous"}},
                        "pod": {"environment": {"name": "POD_NAME"}},
                        "odd": {"metadata": {}},  # not a kind Istio's Telemetry has: skipped
                    }
                }
            ]
        },
    )
    t = _hcm_tracing([tags], "reviews-v1")["0.0.0.0_9080"]
    assert t is not None
    by_name = {c.tag: c for c in t.custom_tags}
    assert list(by_name) == ["pod", "team", "user"]  # sorted, like Istio
    assert by_name["team"].literal.value == "books"
    assert (by_name["user"].request_header.name, by_name["user"].request_header.default_value) == (
        "end-user",
        "anonymous",
    )
    assert by_name["pod"].environment.name == "POD_NAME"
    # A more specific level's customTags replace the whole set.
    workload = _telemetry(
        "default",
        {
            "selector": {"matchLabels": {"app": "reviews"}},
            "tracing": [{"customTags": {"x": {"literal": {"value": "1"}}}}],
        },
        "w",
    )
    t = _hcm_tracing([tags, workload], "reviews-v1")["virtualInbound"]
    assert t is not None and [c.tag for c in t.custom_tags] == ["x"]


def test_tracing_fields_are_enforced_and_validated() -> None:
    [res], _ = parse_documents(
        _telemetry(
            "istio-system",
            {
                "tracing": [
                    {
                        "providers": [{"name": "zipkin"}],
                        "randomSamplingPercentage": 100,
                        "disableSpanReporting": False,
                        "customTags": {"a": {"literal": {"value": "b"}}},
                        "match": {"mode": "CLIENT_AND_SERVER"},
                    }
                ]
            },
        ),
        "t.yaml",
    )
    assert not_enforced_fields(res) == []
    _, issues = parse_documents(_telemetry("default", {"tracing": [{"randomSamplingPercentage": 150}]}), "t.yaml")
    assert [i.level for i in issues] == ["error"] and "randomSamplingPercentage" in str(issues[0])


def test_ir_tracing_is_what_the_builder_reads() -> None:
    from gossamer.xds.build.tracing import hcm_tracing

    out = hcm_tracing(Tracing(sampling=25.0, tags=(TracingTag("t", "header", "x-h", "d"),), spawn_upstream_span=True))
    assert out.random_sampling.value == 25.0 and out.spawn_upstream_span.value
    assert out.custom_tags[0].request_header.name == "x-h"


# -- the bootstrap ---------------------------------------------------------------------
def test_bootstrap_zipkin_cluster_only_when_given(tmp_path: Path) -> None:
    common: dict[str, Any] = {
        "node_id": "sidecar~10.244.0.5~p.default~default.svc.cluster.local",
        "cluster": "p.default",
        "metadata": {},
        "xds_socket": tmp_path / "xds.sock",
        "admin_socket": tmp_path / "admin.sock",
    }
    plain = build_bootstrap(**common)
    assert "zipkin" not in {c["name"] for c in plain["static_resources"]["clusters"]}
    assert "tracing.zipkin.flush_interval_ms" not in str(plain.get("layered_runtime"))
    out = build_bootstrap(**common, zipkin_socket=tmp_path / "zipkin.sock")
    [zipkin] = [c for c in out["static_resources"]["clusters"] if c["name"] == "zipkin"]
    assert zipkin["type"] == "STATIC"
    endpoint = zipkin["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"] == {"pipe": {"path": str(tmp_path / "zipkin.sock")}}
    static = out["layered_runtime"]["layers"][0]["static_layer"]
    assert static["tracing.zipkin.flush_interval_ms"] == 1000
    assert static["tracing.zipkin.min_flush_spans"] == 100
