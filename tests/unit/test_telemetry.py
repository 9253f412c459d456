"""Access log entries -> Istio's standard metrics: StreamAccessLogsMessage protos go through the
access log servicer on a real grpc.aio server (a unix socket, next to ADS as in the control plane),
and the labels and values land in the metrics registry as Istio would label them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.data.accesslog.v3 import accesslog_pb2 as data_pb2
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from google.protobuf import json_format, struct_pb2, wrappers_pb2
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gossamer.ir.types import ProxyConfig
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import MeshService, ServicePort, Workload
from gossamer.resources import not_enforced_fields, parse_documents
from gossamer.telemetry import AccessLogServicer, MeshMetrics
from gossamer.translate import translate_proxy
from gossamer.xds.build import build_resources
from gossamer.xds.cache import ConfigCache
from gossamer.xds.server import AdsServer, serve
from gossamer.xds.types import LISTENER
from tests.support.offline import proxy_for, snapshot_from_yaml

PRODUCTPAGE_IP = "10.244.0.5"
REVIEWS_IP = "10.244.0.6"
REVIEWS_PRINCIPAL = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
PRODUCTPAGE_PRINCIPAL = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
REVIEWS_HOST = "reviews.default.svc.cluster.local"

SNAPSHOT = MeshSnapshot(
    version=1,
    services=(MeshService("reviews", "default", "10.96.0.20", (ServicePort("http", 9080, 9080),),
                          (("app", "reviews"),)),
              MeshService("productpage", "default", "10.96.0.21", (ServicePort("http", 9080, 9080),),
                          (("app", "productpage"),))),
    workloads=(
        Workload("productpage-v1-abc", "default", PRODUCTPAGE_IP, (("app", "productpage"), ("version", "v1")),
                 "bookinfo-productpage", True, "productpage-v1"),
        Workload("reviews-v1-xyz", "default", REVIEWS_IP, (("app", "reviews"), ("version", "v1")),
                 "bookinfo-reviews", True, "reviews-v1"),
    ),
)


def node(workload: str, app: str, version: str, sa: str, ip: str) -> base_pb2.Node:
    meta = struct_pb2.Struct()
    json_format.ParseDict({"NAMESPACE": "default", "LABELS": {"app": app, "version": version},
                           "SERVICE_ACCOUNT": sa, "WORKLOAD_NAME": workload, "CLUSTER_ID": "Kubernetes",
                           "INSTANCE_IPS": ip}, meta)
    return base_pb2.Node(id=f"sidecar~{ip}~{workload}-x.default~default.svc.cluster.local", metadata=meta)


PRODUCTPAGE = node("productpage-v1", "productpage", "v1", "bookinfo-productpage", PRODUCTPAGE_IP)
REVIEWS = node("reviews-v1", "reviews", "v1", "bookinfo-reviews", REVIEWS_IP)


def addr(ip: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=ip, port_value=port))


def http_entry(*, cluster: str, upstream: str = "", downstream: str = PRODUCTPAGE_IP, code: int = 200,
               authority: str = "reviews:9080", ms: int = 12, peer_san: str = "", local_san: str = "",
               fault: bool = False, grpc_status: str | None = None) -> data_pb2.HTTPAccessLogEntry:
    common = data_pb2.AccessLogCommon(
        downstream_remote_address=addr(downstream, 40000),
        downstream_local_address=addr(REVIEWS_IP, 9080),
        upstream_cluster=cluster,
        response_flags=data_pb2.ResponseFlags(fault_injected=fault),
    )
    common.duration.FromMilliseconds(ms)
    if upstream:
        common.upstream_remote_address.CopyFrom(addr(upstream, 9080))
    if peer_san or local_san:
        tls = common.tls_properties
        if peer_san:
            tls.peer_certificate_properties.subject_alt_name.add(uri=peer_san)
        if local_san:
            tls.local_certificate_properties.subject_alt_name.add(uri=local_san)
    entry = data_pb2.HTTPAccessLogEntry(
        common_properties=common,
        protocol_version=data_pb2.HTTPAccessLogEntry.HTTP11,
        request=data_pb2.HTTPRequestProperties(request_method=base_pb2.GET, authority=authority, path="/reviews/0",
                                               request_headers_bytes=100, request_body_bytes=0),
        response=data_pb2.HTTPResponseProperties(response_code=wrappers_pb2.UInt32Value(value=code),
                                                 response_headers_bytes=80, response_body_bytes=300),
    )
    if grpc_status is not None:
        entry.request.request_headers["content-type"] = "application/grpc"
        entry.response.response_trailers["grpc-status"] = grpc_status
    return entry


def tcp_entry(kind: int, *, upstream: str = REVIEWS_IP, sent: int = 0, received: int = 0
              ) -> data_pb2.TCPAccessLogEntry:
    return data_pb2.TCPAccessLogEntry(
        common_properties=data_pb2.AccessLogCommon(
            downstream_remote_address=addr(PRODUCTPAGE_IP, 40001), upstream_remote_address=addr(upstream, 3306),
            upstream_cluster="outbound|3306||mysql.default.svc.cluster.local", access_log_type=kind),  # type: ignore[arg-type]
        connection_properties=data_pb2.ConnectionProperties(sent_bytes=sent, received_bytes=received))


def http_message(reporter: base_pb2.Node | None, log_name: str, *entries: data_pb2.HTTPAccessLogEntry
                 ) -> als_pb2.StreamAccessLogsMessage:
    msg = als_pb2.StreamAccessLogsMessage()
    if reporter is not None:
        msg.identifier.node.CopyFrom(reporter)
        msg.identifier.log_name = log_name
    msg.http_logs.log_entry.extend(entries)
    return msg


def send(socket: Path, *messages: als_pb2.StreamAccessLogsMessage) -> None:
    async def run() -> None:
        async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
            stub = als_pb2_grpc.AccessLogServiceStub(channel)
            await stub.StreamAccessLogs(iter(messages))

    asyncio.run(run())


@pytest.fixture()
def als(tmp_path: Path) -> Iterator[tuple[MeshMetrics, Path]]:
    """A real grpc.aio server (ADS and the access log service, as the control plane runs them) in a
    thread of its own with its own loop; yields the metrics and the socket."""
    import threading

    metrics = MeshMetrics(lambda: SNAPSHOT)
    socket = tmp_path / "xds.sock"
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()

        async def group(_node: base_pb2.Node) -> str:
            return "g"

        # Plaintext: this tests the metrics, not the identity check (tests/unit/test_xds_identity.py).
        server = await serve(AdsServer(ConfigCache(), group), f"unix:{socket}",
                             others=[AccessLogServicer(metrics, authenticate=False)])
        started.set()
        await stop.wait()
        await server.stop(grace=0.2)

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()))
    thread.start()
    assert started.wait(10)
    try:
        yield metrics, socket
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def samples(metrics: MeshMetrics, name: str) -> list[dict[str, str | float]]:
    """Samples named NAME, as a Prometheus scrape parses them (labels plus "value")."""
    out: list[dict[str, str | float]] = []
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for s in family.samples:
            if s.name == name:
                out.append({**s.labels, "value": s.value})
    return out


def test_outbound_entry_is_a_source_report_with_istio_labels(als: tuple[MeshMetrics, Path]) -> None:
    metrics, socket = als
    cluster = f"outbound|9080|v1|{REVIEWS_HOST}"
    send(socket, http_message(PRODUCTPAGE, "outbound", *[http_entry(cluster=cluster, upstream=REVIEWS_IP)] * 3))
    [s] = samples(metrics, "istio_requests_total")
    assert s == {
        "reporter": "source",
        "source_workload": "productpage-v1", "source_workload_namespace": "default",
        "source_principal": PRODUCTPAGE_PRINCIPAL, "source_app": "productpage", "source_version": "v1",
        "source_cluster": "Kubernetes",
        "destination_workload": "reviews-v1", "destination_workload_namespace": "default",
        "destination_principal": REVIEWS_PRINCIPAL, "destination_app": "reviews", "destination_version": "v1",
        "destination_cluster": "Kubernetes",
        "destination_service": REVIEWS_HOST, "destination_service_name": "reviews",
        "destination_service_namespace": "default",
        "request_protocol": "http", "response_code": "200", "grpc_response_status": "", "response_flags": "-",
        "connection_security_policy": "unknown", "value": 3.0,
    }
    [count] = samples(metrics, "istio_request_duration_milliseconds_count")
    assert count["value"] == 3.0
    [total] = samples(metrics, "istio_request_duration_milliseconds_sum")
    assert total["value"] == pytest.approx(36.0)
    buckets = {b["le"]: b["value"] for b in samples(metrics, "istio_request_duration_milliseconds_bucket")}
    assert buckets["10.0"] == 0.0 and buckets["25.0"] == 3.0 and buckets["+Inf"] == 3.0
    [resp] = samples(metrics, "istio_response_bytes_sum")
    assert resp["value"] == 3 * 380.0
    [req] = samples(metrics, "istio_request_bytes_count")
    assert req["value"] == 3.0


def test_inbound_entry_is_a_destination_report_with_mtls_peer(als: tuple[MeshMetrics, Path]) -> None:
    metrics, socket = als
    entry = http_entry(cluster="inbound|9080||", downstream=PRODUCTPAGE_IP, upstream="127.0.0.6",
                       peer_san=PRODUCTPAGE_PRINCIPAL, local_san=REVIEWS_PRINCIPAL)
    send(socket, http_message(REVIEWS, "inbound", entry))
    [s] = samples(metrics, "istio_requests_total")
    assert s["reporter"] == "destination"
    assert (s["source_workload"], s["source_app"], s["source_principal"]) == (
        "productpage-v1", "productpage", PRODUCTPAGE_PRINCIPAL)
    assert (s["destination_workload"], s["destination_version"], s["destination_principal"]) == (
        "reviews-v1", "v1", REVIEWS_PRINCIPAL)
    assert (s["destination_service"], s["destination_service_name"]) == (REVIEWS_HOST, "reviews")
    assert s["connection_security_policy"] == "mutual_tls"


def test_inbound_plaintext_has_policy_none_and_service_from_the_workload(als: tuple[MeshMetrics, Path]) -> None:
    metrics, socket = als
    send(socket, http_message(REVIEWS, "inbound", http_entry(cluster="inbound|9080||", authority="10.244.0.6:9080")))
    [s] = samples(metrics, "istio_requests_total")
    assert s["connection_security_policy"] == "none"
    assert s["source_principal"] == "unknown" and s["destination_principal"] == "unknown"
    assert s["source_workload"] == "productpage-v1"  # from the downstream address
    assert s["destination_service"] == REVIEWS_HOST  # the Service selecting reviews on 9080


def test_fault_injected_abort(als: tuple[MeshMetrics, Path]) -> None:
    metrics, socket = als
    send(socket, http_message(PRODUCTPAGE, "outbound",
                              http_entry(cluster=f"outbound|9080||{REVIEWS_HOST}", code=500, fault=True)))
    [s] = samples(metrics, "istio_requests_total")
    assert (s["response_code"], s["response_flags"]) == ("500", "FI")
    assert s["destination_workload"] == "unknown"  # no upstream host: the fault answered
    assert s["destination_service"] == REVIEWS_HOST


def test_grpc_protocol_and_status(als: tuple[MeshMetrics, Path]) -> None:
    metrics, socket = als
    send(socket, http_message(PRODUCTPAGE, "outbound",
                              http_entry(cluster=f"outbound|9080||{REVIEWS_HOST}", upstream=REVIEWS_IP,
                                         grpc_status="14")))
    [s] = samples(metrics, "istio_requests_total")
    assert (s["request_protocol"], s["grpc_response_status"]) == ("grpc", "14")


def test_unknown_everything(als: tuple[MeshMetrics, Path]) -> None:
    metrics, socket = als
    send(socket, http_message(PRODUCTPAGE, "gateway",
                              http_entry(cluster="outbound|80||example.com", upstream="192.0.2.1")))
    [s] = samples(metrics, "istio_requests_total")
    assert s["reporter"] == "source"  # gateways report as source
    assert s["destination_workload"] == "unknown" and s["destination_app"] == "unknown"
    assert (s["destination_service"], s["destination_service_name"], s["destination_service_namespace"]) == (
        "example.com", "example.com", "unknown")


def test_identifier_only_on_first_message_and_entries_before_it_are_dropped(als: tuple[MeshMetrics, Path]) -> None:
    metrics, socket = als
    entry = http_entry(cluster=f"outbound|9080||{REVIEWS_HOST}", upstream=REVIEWS_IP)
    send(socket, http_message(None, "", entry), http_message(PRODUCTPAGE, "outbound", entry),
         http_message(None, "", entry, entry))
    [s] = samples(metrics, "istio_requests_total")
    assert s["value"] == 3.0


def test_tcp_connections_and_bytes(als: tuple[MeshMetrics, Path]) -> None:
    metrics, socket = als
    msg = als_pb2.StreamAccessLogsMessage()
    msg.identifier.node.CopyFrom(PRODUCTPAGE)
    msg.identifier.log_name = "outbound"
    msg.tcp_logs.log_entry.extend([
        tcp_entry(data_pb2.AccessLogType.TcpUpstreamConnected),
        tcp_entry(data_pb2.AccessLogType.TcpUpstreamConnected),
        tcp_entry(data_pb2.AccessLogType.TcpConnectionEnd, sent=500, received=40),
    ])
    send(socket, msg)
    [opened] = samples(metrics, "istio_tcp_connections_opened_total")
    [closed] = samples(metrics, "istio_tcp_connections_closed_total")
    assert (opened["value"], closed["value"]) == (2.0, 1.0)
    assert opened["request_protocol"] == "tcp" and "response_code" not in opened
    assert opened["destination_service"] == "mysql.default.svc.cluster.local"
    assert opened["destination_workload"] == "reviews-v1"
    assert samples(metrics, "istio_tcp_sent_bytes_total")[0]["value"] == 500.0
    assert samples(metrics, "istio_tcp_received_bytes_total")[0]["value"] == 40.0


# ---------------------------------------------------------------------------------- Telemetry resource

BOOKINFO = (Path(__file__).resolve().parents[2] / "samples/bookinfo/bookinfo.yaml").read_text()


def _loggers(config: ProxyConfig) -> set[str]:
    """Names of the access loggers in every HCM and TCP proxy of the built listeners."""
    from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
    from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

    names: set[str] = set()
    for listener in build_resources(config)[LISTENER].values():
        for chain in [*listener.filter_chains, listener.default_filter_chain]:  # type: ignore[attr-defined]
            for f in chain.filters:
                msg: Any = hcm.HttpConnectionManager() if "http_connection_manager" in f.name else (
                    tcp_proxy_pb2.TcpProxy() if "tcp_proxy" in f.name else None)
                if msg is not None:
                    f.typed_config.Unpack(msg)
                    names |= {a.name for a in msg.access_log}
    return names


def _telemetry(namespace: str, spec: dict[str, Any], name: str = "t") -> str:
    return yaml.safe_dump({"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
                           "metadata": {"name": name, "namespace": namespace}, "spec": spec})


ALL = {"envoy.access_loggers.stdout", "envoy.access_loggers.http_grpc", "envoy.access_loggers.tcp_grpc"}
LOGS_OFF = {"accessLogging": [{"disabled": True}]}
METRICS_OFF = {"metrics": [{"providers": [{"name": "prometheus"}], "overrides": [{"disabled": True}]}]}


@pytest.mark.parametrize(("extra", "reviews", "ratings"), [
    ([], ALL, ALL),
    ([_telemetry("default", LOGS_OFF)], ALL - {"envoy.access_loggers.stdout"},
     ALL - {"envoy.access_loggers.stdout"}),
    ([_telemetry("default", {**METRICS_OFF, "selector": {"matchLabels": {"app": "reviews"}}})],
     {"envoy.access_loggers.stdout"}, ALL),
    # The most specific decides: the mesh turns logs off, reviews' own Telemetry turns them back on.
    ([_telemetry("istio-system", LOGS_OFF),
      _telemetry("default", {"selector": {"matchLabels": {"app": "reviews"}}, "accessLogging": [{}]}, "r")],
     ALL, ALL - {"envoy.access_loggers.stdout"}),
], ids=["default", "namespace-logs-off", "workload-metrics-off", "workload-overrides-mesh"])
def test_telemetry_turns_access_logs_and_metrics_off(extra: list[str], reviews: set[str],
                                                     ratings: set[str]) -> None:
    snapshot = snapshot_from_yaml("\n---\n".join([BOOKINFO, *extra]))
    assert _loggers(translate_proxy(snapshot, proxy_for(snapshot, "reviews-v1"))) == reviews
    assert _loggers(translate_proxy(snapshot, proxy_for(snapshot, "ratings-v1"))) == ratings


def test_telemetry_fields_not_enforced_are_reported() -> None:
    text = _telemetry("default", {
        "tracing": [{"randomSamplingPercentage": 10, "useRequestIdForTraceSampling": False,
                     "providers": [{"name": "otel"}]}, {"providers": [{"name": "zipkin"}]}],
        "accessLogging": [{"providers": [{"name": "otel"}], "filter": {"expression": "response.code >= 400"}}],
        "metrics": [{"overrides": [{"match": {"metric": "REQUEST_COUNT"}, "disabled": True},
                                   {"disabled": True, "tagOverrides": {"x": {"value": "y"}}}]}],
    })
    [resource], _ = parse_documents(text, "t.yaml")
    assert not_enforced_fields(resource) == [
        "spec.accessLogging[0].filter", "spec.accessLogging[0].providers",
        "spec.metrics[0].overrides[0].match", "spec.metrics[0].overrides[1].tagOverrides",
        "spec.tracing[0].useRequestIdForTraceSampling", "spec.tracing[0].providers"]
    [ok], _ = parse_documents(_telemetry("default", {**LOGS_OFF, **METRICS_OFF}), "t.yaml")
    assert not_enforced_fields(ok) == []
