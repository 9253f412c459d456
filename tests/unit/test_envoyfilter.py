"""EnvoyFilter patches, one per applyTo and operation, on the built protos of httpbin's and curl's
sidecars (samples/httpbin + samples/curl)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from gossamer.resources.loader import parse_documents
from gossamer.translate import translate_proxy
from gossamer.translate.envoyfilter import envoy_filters_for
from gossamer.xds.build import build_resources
from gossamer.xds.envoyfilter import PatchResult, apply_envoy_filters
from gossamer.xds.types import CLUSTER, LISTENER, ROUTE
from tests.e2e.mesh import REPO
from tests.support.offline import proxy_for, snapshot_from_yaml

BASE = (REPO / "samples/httpbin/httpbin.yaml").read_text() + "\n---\n" + (REPO / "samples/curl/curl.yaml").read_text()
HTTPBIN_OUT = "outbound|8000||httpbin.default.svc.cluster.local"
HCM = "envoy.filters.network.http_connection_manager"


def ef(
    name: str, patches: list[dict[str, Any]], *, namespace: str = "default", app: str | None = None, priority: int = 0
) -> str:
    spec: dict[str, Any] = {"configPatches": patches}
    if app:
        spec["workloadSelector"] = {"labels": {"app": app}}
    if priority:
        spec["priority"] = priority
    return yaml.safe_dump(
        {
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "EnvoyFilter",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def patched(deployment: str, *filters: str) -> tuple[PatchResult, dict[str, Any]]:
    snapshot = snapshot_from_yaml("\n---\n".join([BASE, *filters]))
    proxy = proxy_for(snapshot, deployment)
    config = translate_proxy(snapshot, proxy)
    built = build_resources(config)
    return apply_envoy_filters(config.envoy_filters, built), built


def _hcm(listener: Any, port: int | None = None) -> hcm_pb2.HttpConnectionManager:
    hcm = hcm_pb2.HttpConnectionManager()
    for chain in listener.filter_chains:
        if port is not None and chain.filter_chain_match.destination_port.value != port:
            continue
        for f in chain.filters:
            if f.name == HCM:
                f.typed_config.Unpack(hcm)
                return hcm
    return hcm


def http_filters(listener: Any, port: int | None = None) -> list[str]:
    return [h.name for h in _hcm(listener, port).http_filters]


LUA_VALUE = {
    "name": "envoy.lua",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
        "inlineCode": "function envoy_on_response(h) h:headers():add('x-lua', 'hello') end",
    },
}


def _http_patch(op: str, sub: str | None = "envoy.filters.http.router", value: Any = LUA_VALUE) -> dict[str, Any]:
    flt: dict[str, Any] = {"name": HCM}
    if sub:
        flt["subFilter"] = {"name": sub}
    return {
        "applyTo": "HTTP_FILTER",
        "match": {"context": "SIDECAR_INBOUND", "listener": {"portNumber": 8080, "filterChain": {"filter": flt}}},
        "patch": {"operation": op, **({"value": value} if value is not None else {})},
    }


@pytest.mark.parametrize(
    ("op", "sub", "where"),
    [
        ("INSERT_BEFORE", "envoy.filters.http.router", -2),
        ("INSERT_AFTER", "envoy.filters.http.router", -1),
        ("INSERT_FIRST", None, 0),
        ("ADD", None, -1),
        ("INSERT_BEFORE", None, 0),
        ("INSERT_AFTER", None, -1),
    ],
)
def test_http_filter_insertions(op: str, sub: str | None, where: int) -> None:
    result, built = patched("httpbin", ef("lua", [_http_patch(op, sub)], app="httpbin"))
    assert not result.errors
    names = http_filters(result.resources[LISTENER]["virtualInbound"], 8080)
    assert names[where] == "envoy.filters.http.lua"  # the legacy name is written canonically
    # the built (shared) protos are untouched
    assert "envoy.filters.http.lua" not in http_filters(built[LISTENER]["virtualInbound"], 8080)


def test_http_filter_remove_replace_merge() -> None:
    fault = "envoy.filters.http.fault"
    result, _ = patched("httpbin", ef("rm", [_http_patch("REMOVE", fault, None)], app="httpbin"))
    assert fault not in http_filters(result.resources[LISTENER]["virtualInbound"], 8080)
    result, _ = patched("httpbin", ef("rep", [_http_patch("REPLACE", fault)], app="httpbin"))
    names = http_filters(result.resources[LISTENER]["virtualInbound"], 8080)
    assert fault not in names and "envoy.filters.http.lua" in names
    merge = {
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            "suppress_envoy_headers": True,
        },
    }
    result, _ = patched("httpbin", ef("m", [_http_patch("MERGE", "envoy.filters.http.router", merge)], app="httpbin"))
    assert not result.errors
    routers = [
        h
        for h in _hcm(result.resources[LISTENER]["virtualInbound"], 8080).http_filters
        if h.name == "envoy.filters.http.router"
    ]
    router = router_pb2.Router()
    routers[0].typed_config.Unpack(router)
    assert router.suppress_envoy_headers


def test_workload_selector_and_namespaces() -> None:
    snapshot = snapshot_from_yaml(
        "\n---\n".join(
            [
                BASE,
                ef("a", [], app="httpbin"),
                ef("b", [], app="curl"),
                ef("root", [], namespace="istio-system"),
                ef("other", [], namespace="other"),
                ef("first", [], priority=-5),
            ]
        )
    )
    names = [f.metadata.name for f in envoy_filters_for(snapshot, proxy_for(snapshot, "httpbin"))]
    assert names == ["first", "a", "root"]


def test_network_filter_insert_first_and_remove() -> None:
    value = {
        "name": "envoy.filters.network.connection_limit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit",
            "stat_prefix": "limit",
            "max_connections": 10,
        },
    }
    result, _ = patched(
        "curl",
        ef(
            "nf",
            [
                {
                    "applyTo": "NETWORK_FILTER",
                    "match": {"context": "SIDECAR_OUTBOUND", "listener": {"portNumber": 8000}},
                    "patch": {"operation": "INSERT_FIRST", "value": value},
                }
            ],
            app="curl",
        ),
    )
    assert not result.errors
    listener = result.resources[LISTENER]["0.0.0.0_8000"]
    assert all(c.filters[0].name == "envoy.filters.network.connection_limit" for c in listener.filter_chains)
    result, _ = patched(
        "curl",
        ef(
            "rm",
            [
                {
                    "applyTo": "NETWORK_FILTER",
                    "match": {"listener": {"portNumber": 8000, "filterChain": {"filter": {"name": HCM}}}},
                    "patch": {"operation": "REMOVE"},
                }
            ],
            app="curl",
        ),
    )
    # a chain left without filters goes too
    assert not any(c.filters for c in result.resources[LISTENER]["0.0.0.0_8000"].filter_chains)


def test_listener_and_filter_chain_operations() -> None:
    new_listener = {
        "name": "extra",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 9999}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.tcp_proxy",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                            "stat_prefix": "x",
                            "cluster": "PassthroughCluster",
                        },
                    }
                ]
            }
        ],
    }
    result, _ = patched(
        "curl",
        ef(
            "l",
            [
                {
                    "applyTo": "LISTENER",
                    "match": {"context": "SIDECAR_OUTBOUND"},
                    "patch": {"operation": "ADD", "value": new_listener},
                },
                {"applyTo": "LISTENER", "match": {"listener": {"portNumber": 8000}}, "patch": {"operation": "REMOVE"}},
                {
                    "applyTo": "LISTENER",
                    "match": {"listener": {"name": "virtualOutbound"}},
                    "patch": {"operation": "MERGE", "value": {"per_connection_buffer_limit_bytes": 1024}},
                },
                {
                    "applyTo": "FILTER_CHAIN",
                    "match": {"context": "SIDECAR_INBOUND", "listener": {"portNumber": 80}},
                    "patch": {"operation": "REMOVE"},
                },
            ],
            app="curl",
        ),
    )
    assert not result.errors
    listeners = result.resources[LISTENER]
    assert "extra" in listeners and "0.0.0.0_8000" not in listeners
    assert listeners["virtualOutbound"].per_connection_buffer_limit_bytes.value == 1024
    assert not any(c.filter_chain_match.destination_port.value == 80 for c in listeners["virtualInbound"].filter_chains)


def test_route_configuration_virtual_host_and_routes() -> None:
    route = {"name": "ping", "match": {"prefix": "/ping"}, "direct_response": {"status": 204}}
    result, _ = patched(
        "curl",
        ef(
            "r",
            [
                {
                    "applyTo": "ROUTE_CONFIGURATION",
                    "match": {"routeConfiguration": {"portNumber": 8000}},
                    "patch": {"operation": "MERGE", "value": {"response_headers_to_remove": ["x-foo"]}},
                },
                {
                    "applyTo": "VIRTUAL_HOST",
                    "match": {"routeConfiguration": {"portNumber": 8000}},
                    "patch": {"operation": "ADD", "value": {"name": "extra", "domains": ["extra.example"]}},
                },
                {
                    "applyTo": "HTTP_ROUTE",
                    "match": {
                        "routeConfiguration": {
                            "portNumber": 8000,
                            "vhost": {"name": "httpbin.default.svc.cluster.local:8000"},
                        }
                    },
                    "patch": {"operation": "INSERT_FIRST", "value": route},
                },
                {
                    "applyTo": "VIRTUAL_HOST",
                    "match": {"routeConfiguration": {"vhost": {"name": "allow_any"}}},
                    "patch": {"operation": "REMOVE"},
                },
            ],
            app="curl",
        ),
    )
    assert not result.errors
    table = result.resources[ROUTE]["8000"]
    assert isinstance(table, route_pb2.RouteConfiguration)
    assert list(table.response_headers_to_remove) == ["x-foo"]
    vhosts = {v.name: v for v in table.virtual_hosts}
    assert "extra" in vhosts and "allow_any" not in vhosts
    assert vhosts["httpbin.default.svc.cluster.local:8000"].routes[0].name == "ping"
    assert "allow_any" not in {v.name for v in result.resources[ROUTE]["80"].virtual_hosts}


def test_cluster_operations() -> None:
    result, built = patched(
        "curl",
        ef(
            "c",
            [
                {
                    "applyTo": "CLUSTER",
                    "match": {"cluster": {"service": "httpbin.default.svc.cluster.local", "portNumber": 8000}},
                    "patch": {"operation": "MERGE", "value": {"connect_timeout": "3.5s"}},
                },
                {
                    "applyTo": "CLUSTER",
                    "match": {"cluster": {"name": "BlackHoleCluster"}},
                    "patch": {"operation": "REMOVE"},
                },
                {"applyTo": "CLUSTER", "patch": {"operation": "ADD", "value": {"name": "new", "type": "STATIC"}}},
                {
                    "applyTo": "CLUSTER",
                    "match": {"context": "SIDECAR_INBOUND"},
                    "patch": {"operation": "MERGE", "value": {"per_connection_buffer_limit_bytes": 7}},
                },
            ],
            app="curl",
        ),
    )
    assert not result.errors
    clusters = result.resources[CLUSTER]
    cluster = clusters[HTTPBIN_OUT]
    assert isinstance(cluster, cluster_pb2.Cluster)
    assert cluster.connect_timeout.ToMilliseconds() == 3500
    assert built[CLUSTER][HTTPBIN_OUT].connect_timeout.ToMilliseconds() != 3500
    assert "BlackHoleCluster" not in clusters and "new" in clusters
    assert clusters["inbound|80||"].per_connection_buffer_limit_bytes.value == 7
    assert not cluster.HasField("per_connection_buffer_limit_bytes")


def test_context_gateway_does_not_touch_sidecars() -> None:
    result, built = patched(
        "curl",
        ef(
            "g",
            [{"applyTo": "CLUSTER", "match": {"context": "GATEWAY"}, "patch": {"operation": "REMOVE"}}],
            namespace="istio-system",
        ),
    )
    assert result.resources[CLUSTER].keys() == built[CLUSTER].keys()


def test_apply_time_error_is_reported_and_skipped() -> None:
    # MERGE of a typed_config of another type: Istio logs and skips the patch.
    merge = {
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua", "inlineCode": "x"},
    }
    result, _ = patched("httpbin", ef("bad", [_http_patch("MERGE", "envoy.filters.http.router", merge)], app="httpbin"))
    listener = result.resources[LISTENER]["virtualInbound"]
    assert isinstance(listener, listener_pb2.Listener)
    assert len(result.errors) == 1 and "default/bad configPatches[0]" in result.errors[0]
    assert "cannot merge envoy.extensions.filters.http.lua.v3.Lua" in result.errors[0]
    assert http_filters(listener, 8080)[-1] == "envoy.filters.http.router"


def test_validation_reports_bad_values_with_lines() -> None:
    text = ef(
        "v",
        [
            {"applyTo": "CLUSTER", "patch": {"operation": "MERGE", "value": {"no_such_field": 1}}},
            {"applyTo": "HTTP_ROUTE", "patch": {"operation": "REPLACE", "value": {}}},
            {"applyTo": "LISTENER", "patch": {"operation": "ADD"}},
        ],
    )
    _, issues = parse_documents(text, "ef.yaml")
    errors = [i for i in issues if i.level == "error"]
    assert len(errors) == 3
    assert all(i.file == "ef.yaml" and i.line > 0 for i in errors)
    assert "no_such_field" in str(errors[0])


def test_merge_into_the_fault_filter_applies_to_every_route() -> None:
    """Istio's fault filter is enabled with an empty config, so a MERGE of a fault into it holds for every
    route; ours is disabled unless a route enables it: the MERGE enables it (and a REMOVE still removes)."""
    fault = "envoy.filters.http.fault"
    abort = {
        "name": fault,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
            "abort": {"http_status": 418, "percentage": {"numerator": 100}},
        },
    }
    result, built = patched("httpbin", ef("abort", [_http_patch("MERGE", fault, abort)], app="httpbin"))
    assert not result.errors
    (merged,) = [h for h in _hcm(result.resources[LISTENER]["virtualInbound"], 8080).http_filters if h.name == fault]
    assert not merged.disabled
    config = fault_pb2.HTTPFault()
    merged.typed_config.Unpack(config)
    assert config.abort.http_status == 418
    # Without the patch (and in the shared built protos) it stays disabled until a route enables it.
    (plain,) = [h for h in _hcm(built[LISTENER]["virtualInbound"], 8080).http_filters if h.name == fault]
    assert plain.disabled
    disabled = {**abort, "disabled": True}
    result, _ = patched("httpbin", ef("off", [_http_patch("MERGE", fault, disabled)], app="httpbin"))
    (kept,) = [h for h in _hcm(result.resources[LISTENER]["virtualInbound"], 8080).http_filters if h.name == fault]
    assert kept.disabled
