"""Istio's standard metrics computed inside Envoy: what the built config asks Envoy to count and
with which labels (the stats access logger's tags), where those labels come from (endpoint and
cluster metadata, the peer headers and the proxy's environment), and the per-scrape side: the
pods' expositions renamed and summed, the app's scrape annotations. The e2e tests run it in Envoy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.filters.http.set_filter_state.v3 import set_filter_state_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import json_format
from xds.type.v3 import typed_struct_pb2

from gossamer.debug.simulate import Request, simulate
from gossamer.ir.types import ProxyConfig
from gossamer.resources import not_enforced_fields, parse_documents
from gossamer.telemetry.merge import AppScrape, app_scrape
from gossamer.telemetry.peer import (
    CLIENT_TAIL,
    DESTINATION_GROUP,
    GROUP_SEPARATOR,
    HTTP_LABELS,
    LOCAL_SOURCE,
    PACKED_TAG,
    PEER_HEADER,
    SEPARATOR,
    SERVICE_GROUP,
    packed_slots,
    peer_values,
    proxy_env,
    unpack_labels,
)
from gossamer.telemetry.scrape import istio_names, merge_expositions
from gossamer.translate import translate_proxy
from gossamer.translate.clusters import translate_endpoints
from gossamer.xds.build import build_resources
from gossamer.xds.build.clusters import build_endpoints
from gossamer.xds.build.telemetry import guard_peer_header, peer_metadata_filters
from gossamer.xds.types import CLUSTER, LISTENER, ROUTE
from tests.support.offline import proxy_for, snapshot_from_yaml

BOOKINFO = (Path(__file__).resolve().parents[2] / "samples/bookinfo/bookinfo.yaml").read_text()
REVIEWS = "reviews.default.svc.cluster.local"


def _hcms(listener: listener_pb2.Listener) -> list[tuple[str, hcm_pb2.HttpConnectionManager]]:
    out = []
    for chain in [*listener.filter_chains, listener.default_filter_chain]:
        for f in chain.filters:
            if "http_connection_manager" in f.name:
                hcm = hcm_pb2.HttpConnectionManager()
                f.typed_config.Unpack(hcm)
                out.append((chain.name, hcm))
    return out


def _stats_tags(hcm: hcm_pb2.HttpConnectionManager) -> list[dict[str, str]]:
    """Per stats logger: label -> format of its istio_requests_total (unpacked from its one tag)."""
    out = []
    for log in hcm.access_log:
        if log.name != "envoy.access_loggers.stats":
            continue
        typed = typed_struct_pb2.TypedStruct()
        log.typed_config.Unpack(typed)
        config = json_format.MessageToDict(typed.value)
        stats = [c["stat"] for c in config["counters"]] + [h["stat"] for h in config["histograms"]]
        # Every stat of a request carries the same single tag.
        assert len({json.dumps(s["tags"]) for s in stats}) == 1
        [counter] = [s for s in stats if s["name"] == "istio_requests_total"]
        [tag] = counter["tags"]
        assert tag["name"] == PACKED_TAG
        # The last slot (the source's principal) and the source's side: "source".
        slots = packed_slots("istio_requests_total")[:-1]
        formats = tag["value_format"].split(SEPARATOR, len(slots))
        out.append(dict(zip([*slots, "source"], formats, strict=True)))
    return out


@pytest.fixture(scope="module")
def bookinfo() -> Any:
    return snapshot_from_yaml(BOOKINFO)


def _built(snapshot: Any, deployment: str, **kw: Any) -> dict[str, dict[str, Any]]:
    return build_resources(translate_proxy(snapshot, proxy_for(snapshot, deployment, **kw)))


# The client's side in the peer header: one of the proxy's variables (`proxy_env`).
LOCAL_SIDE = "%ENVIRONMENT(GOSSAMER_PEER_METADATA)%"


def test_outbound_requests_are_counted_by_envoy_with_istios_labels(bookinfo: Any) -> None:
    listener = _built(bookinfo, "productpage-v1")[LISTENER]["0.0.0.0_9080"]
    [(_, hcm)] = _hcms(listener)
    http, grpc = _stats_tags(hcm)
    assert http["reporter"] == "source" and http["request_protocol"] == "http" and grpc["request_protocol"] == "grpc"
    # The reporting side left out (the pod's :15020 adds its own), the destination from the upstream host.
    assert http["source"] == LOCAL_SOURCE == "|"
    # The destination's six labels in one endpoint metadata value, its service's three in one cluster
    # metadata value (the destination's after them for passthrough): one lookup each.
    assert http["destination"] == "%UPSTREAM_METADATA(istio:peer)%"
    assert http["service"] == "%CLUSTER_METADATA(istio:service)%"
    assert http["response_code"] == "%RESPONSE_CODE%" and http["response_flags"] == "%RESPONSE_FLAGS%"
    # No Python anywhere: no gRPC access log stream to the control plane.
    assert all(a.name in ("envoy.access_loggers.stdout", "envoy.access_loggers.stats") for a in hcm.access_log)


def test_inbound_labels_the_source_from_its_certificate_and_peer_headers(bookinfo: Any) -> None:
    built = _built(bookinfo, "reviews-v1", has_sds=True)
    listener = built[LISTENER]["virtualInbound"]
    chains = dict(_hcms(listener))
    mtls, plain = _stats_tags(chains["0.0.0.0_9080_mtls"])[0], _stats_tags(chains["0.0.0.0_9080"])[0]
    assert mtls["reporter"] == "destination"
    # An inbound chain routes to one cluster: its service is literal in the tag (no lookup per request),
    # the very value the cluster's metadata holds, and so are the gRPC logger's and the TCP chains'.
    inbound = json_format.MessageToDict(built[CLUSTER]["inbound|9080||"].metadata)["filterMetadata"]["istio"]
    assert mtls["service"] == plain["service"] == inbound["service"] == f"{REVIEWS};reviews;default"
    assert _stats_tags(chains["0.0.0.0_9080"])[1]["service"] == inbound["service"]
    # Envoy formats a gRPC status for gRPC requests only: the http logger's slot is empty.
    assert plain["grpc_response_status"] == ""
    assert _stats_tags(chains["0.0.0.0_9080"])[1]["grpc_response_status"] == "%GRPC_STATUS_NUMBER%"
    # The source's principal from the client certificate, the rest of its side from the peer header.
    peer = "%FILTER_STATE(gossamer.peer_metadata:PLAIN)%"
    assert (mtls["source"], mtls["connection_security_policy"]) == (f"%DOWNSTREAM_PEER_URI_SAN%|{peer}", "mutual_tls")
    assert (plain["source"], plain["connection_security_policy"]) == (f"unknown|{peer}", "none")
    # The destination is the reporting pod: left out, its :15020 adds it (the principal its certificate's
    # on mTLS chains: test_the_pods_own_side_is_added_when_unpacked).
    assert mtls["destination"] == plain["destination"] == ""
    # The peer header is read first (into filter state, nothing when absent) and removed by the route: the
    # app never sees it. Nothing but the router follows (fault and CORS wait for a route): no removal filter.
    hcm = chains["0.0.0.0_9080"]
    first = hcm.http_filters[0]
    assert first.name == "gossamer.peer_metadata"
    config = set_filter_state_pb2.Config()
    first.typed_config.Unpack(config)
    [state] = config.on_request_headers
    assert (state.object_key, state.format_string.text_format_source.inline_string, state.skip_if_empty) == (
        "gossamer.peer_metadata",
        f"%REQ({PEER_HEADER})%",
        True,
    )
    enabled = [f.name for f in hcm.http_filters if not f.disabled]
    assert enabled == ["gossamer.peer_metadata", "envoy.filters.http.router"]
    [vhost] = hcm.route_config.virtual_hosts
    assert list(vhost.request_headers_to_remove) == [PEER_HEADER]


def test_the_peer_header_is_removed_before_any_filter_that_could_decide_on_it() -> None:
    """As Istio's peer metadata filter does: a filter after the reader (here an EnvoyFilter's, inserted
    before the router) gets the removal ahead of it; the router alone does not need it."""
    hcm = hcm_pb2.HttpConnectionManager(http_filters=peer_metadata_filters())
    hcm.http_filters.add(name="envoy.filters.http.fault", disabled=True)
    hcm.http_filters.add(name="envoy.filters.http.router")
    guard_peer_header(hcm.http_filters)
    assert "gossamer.peer_metadata_removal" not in [f.name for f in hcm.http_filters]
    hcm.http_filters.insert(2, hcm_pb2.HttpFilter(name="envoy.filters.http.lua"))
    guard_peer_header(hcm.http_filters)
    guard_peer_header(hcm.http_filters)  # once
    assert [f.name for f in hcm.http_filters] == [
        "gossamer.peer_metadata",
        "gossamer.peer_metadata_removal",
        "envoy.filters.http.fault",
        "envoy.filters.http.lua",
        "envoy.filters.http.router",
    ]
    removal = header_mutation_pb2.HeaderMutation()
    hcm.http_filters[1].typed_config.Unpack(removal)
    assert [m.remove for m in removal.mutations.request_mutations] == [PEER_HEADER]


def test_mesh_virtual_hosts_send_the_peer_headers_and_passthrough_does_not(bookinfo: Any) -> None:
    # Set once per route table (not per virtual host: a change resends the table to every proxy), taken
    # off again by the passthrough virtual hosts; what Envoy then adds per request is what simulate says.
    resources = _built(bookinfo, "productpage-v1")
    to_reviews = simulate(resources, Request(host="reviews:9080", port=9080))
    sent = dict(to_reviews.request_headers_to_add)
    assert to_reviews.virtual_host == "reviews.default.svc.cluster.local:9080"
    assert sent["x-istio-peer-metadata"] == LOCAL_SIDE
    outside = simulate(resources, Request(host="example.com:9080", port=9080))
    assert outside.virtual_host == "allow_any"
    assert not any(k.startswith("x-istio-peer") for k, _ in outside.request_headers_to_add)
    vhosts = {v.name: v for v in resources[ROUTE]["9080"].virtual_hosts}
    assert not any(
        h.header.key.startswith("x-istio-peer")
        for h in vhosts["reviews.default.svc.cluster.local:9080"].request_headers_to_add
    )


def test_endpoints_and_clusters_carry_the_destination_labels(bookinfo: Any) -> None:
    sets = {s.cluster: s for s in translate_endpoints(bookinfo, "default")}
    assignment = build_endpoints(sets[f"outbound|9080||{REVIEWS}"])
    metas = [
        dict(
            zip(
                DESTINATION_GROUP,
                json_format.MessageToDict(e.metadata)["filterMetadata"]["istio"]["peer"].split(GROUP_SEPARATOR),
                strict=True,
            )
        )
        for loc in assignment.endpoints
        for e in loc.lb_endpoints
    ]
    assert {m["destination_workload"] for m in metas} == {"reviews-v1", "reviews-v2", "reviews-v3"}
    assert {m["destination_principal"] for m in metas} == {"spiffe://cluster.local/ns/default/sa/bookinfo-reviews"}
    assert {(m["destination_app"], m["destination_workload_namespace"], m["destination_cluster"]) for m in metas} == {
        ("reviews", "default", "Kubernetes")
    }
    clusters = _built(bookinfo, "productpage-v1")[CLUSTER]
    service = json_format.MessageToDict(clusters[f"outbound|9080||{REVIEWS}"].metadata)["filterMetadata"]["istio"]
    assert service == {"service": f"{REVIEWS};reviews;default"}
    # A passthrough cluster's hosts carry no metadata: the destination's labels (unknown) follow its
    # service's in the one value, standing in for the empty endpoint lookup.
    passthrough = json_format.MessageToDict(clusters["PassthroughCluster"].metadata)["filterMetadata"]["istio"]
    assert passthrough == {"service": ";".join(["unknown", "PassthroughCluster", *["unknown"] * 7])}
    tag = SEPARATOR.join(["source", "tcp", "unknown", "-", "", passthrough["service"], "spiffe://x", "a|b|c|d|e"])
    labels = unpack_labels("istio_tcp_connections_opened_total", tag)
    assert labels is not None
    assert [labels[k] for k in DESTINATION_GROUP] == ["unknown"] * 6
    assert (labels["destination_service"], labels["destination_service_name"]) == ("unknown", "PassthroughCluster")
    # An EDS cluster without a healthy host (or a fault abort): its service, no destination workload.
    labels = unpack_labels("istio_tcp_connections_opened_total", tag.replace(passthrough["service"], f"{REVIEWS};r;d"))
    assert labels is not None and labels["destination_service"] == REVIEWS
    assert [labels[k] for k in DESTINATION_GROUP] == [""] * 6


def test_proxy_environment_names_the_proxys_own_side() -> None:
    env = proxy_env(
        workload="reviews-v1", namespace="default", service_account="bookinfo-reviews", labels={"app": "reviews"}
    )
    assert env["GOSSAMER_WORKLOAD_NAME"] == "reviews-v1" and env["GOSSAMER_VERSION"] == "unknown"
    assert env["GOSSAMER_PRINCIPAL"] == "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
    # The same, joined as the packed tag and the peer header hold them.
    assert env["GOSSAMER_PEER_METADATA"] == "reviews-v1|default|reviews|unknown|Kubernetes"


def test_the_pods_own_side_is_added_when_unpacked() -> None:
    """A proxy's stats leave out its own side (the same for every request): its pod's :15020 adds it.
    A client-side report's source is the pod; a server-side report's destination is, with the pod's
    principal on mTLS (its certificate's, as Istio's) and unknown on plaintext."""
    local = peer_values(
        workload="reviews-v1", namespace="default", service_account="bookinfo-reviews", labels={"app": "reviews"}
    )
    service = f"{REVIEWS};reviews;default"
    sent = SEPARATOR.join(["source", "http", "unknown", "-", "ratings-v1;default;spiffe://r;ratings;v1;K", service])
    labels = unpack_labels("istio_requests_total", f"{sent}|200||{LOCAL_SOURCE}", local)
    assert labels is not None
    assert [labels[f"source_{k}"] for k in ("workload", "workload_namespace", "principal", "app", "version")] == [
        "reviews-v1",
        "default",
        "spiffe://cluster.local/ns/default/sa/bookinfo-reviews",
        "reviews",
        "unknown",
    ]
    assert labels["source_cluster"] == "Kubernetes" and labels["destination_workload"] == "ratings-v1"
    for policy, principal in (("mutual_tls", local["principal"]), ("none", "unknown")):
        received = SEPARATOR.join(["destination", "http", policy, "-", "", service, "200", "", "spiffe://p"])
        labels = unpack_labels("istio_requests_total", f"{received}|productpage-v1|default|productpage|v1|K", local)
        assert labels is not None
        assert (labels["destination_workload"], labels["destination_principal"]) == ("reviews-v1", principal)
        assert (labels["destination_app"], labels["destination_cluster"]) == ("reviews", "Kubernetes")
        assert (labels["source_workload"], labels["source_principal"]) == ("productpage-v1", "spiffe://p")
    # A hostless client-side request (fault abort): its destination stays empty, the source is the pod.
    labels = unpack_labels(
        "istio_tcp_connections_opened_total", f"source|tcp|unknown|FI||{service}|{LOCAL_SOURCE}", local
    )
    assert labels is not None and labels["destination_workload"] == "" and labels["source_workload"] == "reviews-v1"


# One request's labels, packed as Envoy formats them (slots, the groups joined, the client's side last):
# built from the labels so the test reads as Istio's.
SOURCE_LABELS = {
    "reporter": "destination",
    "source_workload": "a b",
    "source_workload_namespace": "default",
    "source_principal": "spiffe://cluster.local/ns/default/sa/a",
    "source_app": "a",
    "source_version": "v1",
    "source_cluster": "Kubernetes",
    "destination_workload": "reviews-v1",
    "destination_workload_namespace": "default",
    "destination_principal": "spiffe://cluster.local/ns/default/sa/reviews",
    "destination_app": "reviews",
    "destination_version": "v1",
    "destination_cluster": "Kubernetes",
    "destination_service": REVIEWS,
    "destination_service_name": "reviews",
    "destination_service_namespace": "default",
    "connection_security_policy": "mutual_tls",
    "response_flags": "-",
    "request_protocol": "http",
    "response_code": "200",
    "grpc_response_status": "",
}
GROUPS = {"destination": DESTINATION_GROUP, "service": SERVICE_GROUP}
PACKED = SEPARATOR.join(
    [
        *(
            GROUP_SEPARATOR.join(SOURCE_LABELS[label] for label in GROUPS[slot])
            if slot in GROUPS
            else SOURCE_LABELS[slot]
            for slot in packed_slots("istio_requests_total")
        ),
        *(SOURCE_LABELS[label] for label in CLIENT_TAIL),
    ]
)
ISTIO_LABELS = ",".join(f'{k}="{SOURCE_LABELS[k]}"' for k in HTTP_LABELS)
ENVOY_TEXT = f"""# TYPE envoy_istiocustom_istio_requests_total counter
envoy_istiocustom_istio_requests_total{{istio="{PACKED}"}} 3
# TYPE envoy_istiocustom_istio_request_bytes histogram
envoy_istiocustom_istio_request_bytes_bucket{{istio="{PACKED}",le="0.5"}} 1
# TYPE envoy_cluster_upstream_cx_total counter
envoy_cluster_upstream_cx_total{{envoy_cluster_name="x"}} 7
"""


def test_envoys_names_and_packed_tag_become_istios_and_pods_are_summed() -> None:
    renamed = istio_names(ENVOY_TEXT)
    assert "# TYPE istio_requests_total counter" in renamed
    assert f"istio_requests_total{{{ISTIO_LABELS}}} 3" in renamed
    assert f'istio_request_bytes_bucket{{{ISTIO_LABELS},le="0.5"}} 1' in renamed
    assert "envoy_cluster_upstream_cx_total" in renamed  # Envoy's own stats keep their names
    merged = merge_expositions([renamed, renamed.replace("} 3", "} 4")])
    assert f"# TYPE istio_requests_total counter\nistio_requests_total{{{ISTIO_LABELS}}} 7\n" in merged


def test_a_peer_header_cannot_shift_the_labels_before_it() -> None:
    """The client's side comes last: a header value holding the separator makes the source unknown and
    leaves the principal (from the certificate), response code and the rest where they were."""
    forged = PACKED.replace("|a b|", "|a b|forged|")
    labels = unpack_labels("istio_requests_total", forged)
    assert labels is not None
    assert labels["source_workload"] == labels["source_app"] == "unknown"
    assert labels["source_principal"] == SOURCE_LABELS["source_principal"] and labels["response_code"] == "200"
    assert unpack_labels("istio_requests_total", "destination|http") is None
    # Quotes and backslashes sent in a header are escaped by Envoy and stay escaped in Istio's labels.
    quoted = PACKED.replace("|a b|", '|a \\"b|')
    assert 'source_workload="a \\"b"' in istio_names(f'envoy_istiocustom_istio_requests_total{{istio="{quoted}"}} 1')


def test_app_metrics_are_scraped_only_when_annotated() -> None:
    assert app_scrape({"prometheus.io/scrape": "true", "prometheus.io/port": "9090"}) == AppScrape(9090, "/metrics")
    assert app_scrape(
        {"prometheus.io/scrape": "true", "prometheus.io/port": "15", "prometheus.io/path": "stats"}
    ) == AppScrape(15, "/stats")
    assert app_scrape({"prometheus.io/scrape": "false", "prometheus.io/port": "9090"}) is None
    assert app_scrape({"prometheus.io/scrape": "true", "prometheus.io/port": "x"}) is None


# ---------------------------------------------------------------------------------- Telemetry resource

BOOKINFO = (Path(__file__).resolve().parents[2] / "samples/bookinfo/bookinfo.yaml").read_text()


def _loggers(config: ProxyConfig) -> set[str]:
    """Names of the access loggers in every HCM and TCP proxy of the built listeners."""
    from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
    from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

    names: set[str] = set()
    for listener in build_resources(config)[LISTENER].values():
        for chain in [*listener.filter_chains, listener.default_filter_chain]:
            for f in chain.filters:
                msg: Any = (
                    hcm.HttpConnectionManager()
                    if "http_connection_manager" in f.name
                    else (tcp_proxy_pb2.TcpProxy() if "tcp_proxy" in f.name else None)
                )
                if msg is not None:
                    f.typed_config.Unpack(msg)
                    names |= {a.name for a in msg.access_log}
    return names


def _telemetry(namespace: str, spec: dict[str, Any], name: str = "t") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "telemetry.istio.io/v1",
            "kind": "Telemetry",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


ALL = {"envoy.access_loggers.stdout", "envoy.access_loggers.stats"}
LOGS_OFF = {"accessLogging": [{"disabled": True}]}
LOGS_ON = {"accessLogging": [{"providers": [{"name": "envoy"}]}]}
METRICS_OFF = {"metrics": [{"providers": [{"name": "prometheus"}], "overrides": [{"disabled": True}]}]}


@pytest.mark.parametrize(
    ("extra", "reviews", "ratings"),
    [
        # Istio's default profile: metrics, no access log (mesh config accessLogFile "").
        ([], ALL - {"envoy.access_loggers.stdout"}, ALL - {"envoy.access_loggers.stdout"}),
        # Istio's "Envoy Access Logs" task: a mesh-wide Telemetry with the envoy provider turns them on.
        ([_telemetry("istio-system", LOGS_ON)], ALL, ALL),
        (
            [_telemetry("default", LOGS_OFF)],
            ALL - {"envoy.access_loggers.stdout"},
            ALL - {"envoy.access_loggers.stdout"},
        ),
        (
            [_telemetry("default", {**LOGS_ON, **METRICS_OFF, "selector": {"matchLabels": {"app": "reviews"}}})],
            {"envoy.access_loggers.stdout"},
            ALL - {"envoy.access_loggers.stdout"},
        ),
        # The most specific decides: the mesh turns logs off, reviews' own Telemetry turns them back on.
        (
            [
                _telemetry("istio-system", LOGS_OFF),
                _telemetry("default", {"selector": {"matchLabels": {"app": "reviews"}}, "accessLogging": [{}]}, "r"),
            ],
            ALL,
            ALL - {"envoy.access_loggers.stdout"},
        ),
    ],
    ids=["default", "mesh-logs-on", "namespace-logs-off", "workload-metrics-off", "workload-overrides-mesh"],
)
def test_telemetry_turns_access_logs_and_metrics_off(extra: list[str], reviews: set[str], ratings: set[str]) -> None:
    snapshot = snapshot_from_yaml("\n---\n".join([BOOKINFO, *extra]))
    assert _loggers(translate_proxy(snapshot, proxy_for(snapshot, "reviews-v1"))) == reviews
    assert _loggers(translate_proxy(snapshot, proxy_for(snapshot, "ratings-v1"))) == ratings


def test_telemetry_fields_not_enforced_are_reported() -> None:
    text = _telemetry(
        "default",
        {
            "tracing": [
                {
                    "randomSamplingPercentage": 10,
                    "useRequestIdForTraceSampling": False,
                    "providers": [{"name": "otel"}],
                },
                {"providers": [{"name": "zipkin"}]},
            ],
            "accessLogging": [{"providers": [{"name": "otel"}], "filter": {"expression": "response.code >= 400"}}],
            "metrics": [
                {
                    "overrides": [
                        {"match": {"metric": "REQUEST_COUNT"}, "disabled": True},
                        {"disabled": True, "tagOverrides": {"x": {"value": "y"}}},
                    ]
                }
            ],
        },
    )
    [resource], _ = parse_documents(text, "t.yaml")
    assert not_enforced_fields(resource) == [
        "spec.accessLogging[0].filter",
        "spec.accessLogging[0].providers",
        "spec.metrics[0].overrides[0].match",
        "spec.metrics[0].overrides[1].tagOverrides",
        "spec.tracing[0].useRequestIdForTraceSampling",
    ]
    [ok], _ = parse_documents(_telemetry("default", {**LOGS_OFF, **METRICS_OFF}), "t.yaml")
    assert not_enforced_fields(ok) == []


def test_control_plane_metrics_under_istiods_names() -> None:
    from prometheus_client import generate_latest

    from gossamer.telemetry.controlplane import PilotMetrics

    pilot = PilotMetrics()
    pilot.connected = lambda: 3
    pilot.sent("type.googleapis.com/envoy.config.cluster.v3.Cluster")
    pilot.sent("type.googleapis.com/envoy.config.cluster.v3.Cluster")
    pilot.rejected("type.googleapis.com/envoy.config.listener.v3.Listener")
    pilot.triggered("config")
    pilot.pushed(full=True, seconds=0.02, since_change=0.07)
    text = generate_latest(pilot.registry).decode()
    assert 'pilot_xds_pushes{type="cds"} 2.0' in text
    assert 'pilot_total_xds_rejects{type="lds"} 1.0' in text
    assert 'pilot_push_triggers{type="config"} 1.0' in text
    assert 'pilot_xds{version="gossamer"} 3.0' in text
    assert 'pilot_proxy_convergence_time_bucket{le="0.1"} 1.0' in text
    assert 'pilot_xds_push_time_count{type="full"} 1.0' in text


async def test_metrics_port_answers_loopback_host_names_only() -> None:
    from types import SimpleNamespace

    from aiohttp.test_utils import TestClient, TestServer

    from gossamer.api.server import Api

    async def text() -> str:
        return ""

    api = Api.__new__(Api)
    api.control_plane = SimpleNamespace(metrics_text=text)  # type: ignore[assignment]
    async with TestClient(TestServer(api.metrics_app())) as client:
        ok = await client.get("/metrics", headers={"Host": "127.0.0.1:15014"})
        assert ok.status == 200 and "pilot_xds" in await ok.text()
        rebound = await client.get("/metrics", headers={"Host": "attacker.example:15014"})
        assert rebound.status == 403


def test_a_tracing_provider_whose_service_port_does_not_exist_is_not_used() -> None:
    """The zipkin provider names port 9411 of a Service that serves 80 only: no cluster exists for it, so the
    proxy keeps tracing to the built-in collector instead of a tracer Envoy rejects (found by the fuzz sample)."""
    from gossamer.translate.telemetry import tracing_provider
    from tests.support.offline import proxy_for, snapshot_from_yaml

    text = (Path(__file__).parents[1] / "golden/tracing-providers/in.yaml").read_text()
    good = snapshot_from_yaml(text)
    provider = tracing_provider(good, proxy_for(good, "web"), ["zipkin-ext"])
    assert provider is not None and provider.cluster == "outbound|9411||zipkin.observability.svc.cluster.local"
    moved = snapshot_from_yaml(
        text.replace("ports: [{name: http-query, port: 9411}]", "ports: [{name: http-query, port: 80}]")
    )
    assert tracing_provider(moved, proxy_for(moved, "web"), ["zipkin-ext"]) is None
    assert tracing_provider(moved, proxy_for(moved, "web"), ["zipkin-ext", "otel"]) is not None  # the next one named
