"""Envoy bootstrap generation — what Istio's pilot-agent writes to envoy-rev.json.

Envoy gets its node identity, an ADS connection to the control plane over a unix
socket (static cluster `xds-grpc`; mTLS with the workload certificate from SDS when the pod has an
agent), the agent's SDS server over a unix socket (static
cluster `sds-grpc`, when the mesh has a CA), the control plane's Zipkin collector over a unix
socket (static cluster `zipkin`, when given), its admin interface on a unix socket, and two
static listeners like Istio's: Prometheus stats on :15090 (/stats/prometheus) and
health on :15021 (/healthz/ready), both proxied to the admin socket.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from gossamer.mesh import (
    CONTROL_PLANE_NAME,
    HEALTH_PORT,
    MERGED_METRICS_PORT,
    PROMETHEUS_PORT,
    ROOT_SECRET,
    SDS_CLUSTER,
    TRUST_DOMAIN,
    WORKLOAD_SECRET,
    XDS_CLUSTER,
    XDS_RETRY_BASE_SECONDS,
    XDS_RETRY_MAX_SECONDS,
)
from gossamer.resources.regex import RE2_MAX_PROGRAM_SIZE

ZIPKIN_CLUSTER = "zipkin"  # HCM tracing posts spans here (xds/build/tracing.py)
# Envoy's Zipkin reporter flushes every 5 s by default, or as soon as 5 spans wait: every second here,
# or at 100 spans. At 1% sampling a sidecar at 5,000 req/s posted 10 times a second, and each POST costs
# the control plane's collector more than the spans in it (issue 8: 0.005 CPU-s per 1000 requests); now
# one POST a second per busy sidecar. Spans still reach the collector within a second.
ZIPKIN_FLUSH_INTERVAL_MS = 1000
ZIPKIN_MIN_FLUSH_SPANS = 100
PROMETHEUS_CLUSTER = "prometheus_stats"
MERGED_STATS_CLUSTER = "merged_stats"
APP_METRICS_CLUSTER = "app_metrics"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
ADMIN_SOCKET_MODE = 0o600  # the pod's proxy user only (and root)
DOWNSTREAM_CONNECTIONS_TYPE = (
    "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"
)
MAX_DOWNSTREAM_CONNECTIONS = 100_000
ADS_RETRY_BASE = f"{XDS_RETRY_BASE_SECONDS}s"
ADS_RETRY_MAX = f"{XDS_RETRY_MAX_SECONDS}s"


def service_cluster(labels: Mapping[str, str], workload: str, namespace: str) -> str:
    """`<app label or deployment>.<namespace>`."""
    return f"{labels.get('app') or workload}.{namespace}"


def proxy_metadata(
    *,
    pod: str,
    namespace: str,
    ip: str,
    labels: Mapping[str, str],
    service_account: str,
    workload: str,
    proxy_type: Literal["sidecar", "router"] = "sidecar",
) -> dict[str, Any]:
    """Node metadata (Istio's keys; all values strings except LABELS, a str->str map)."""
    meta: dict[str, Any] = {
        "NAMESPACE": namespace,
        "NAME": pod,
        "POD_NAME": pod,
        "LABELS": {str(k): str(v) for k, v in labels.items()},
        "SERVICE_ACCOUNT": service_account,
        "INSTANCE_IPS": ip,
        "WORKLOAD_NAME": workload,
        "CLUSTER_ID": "Kubernetes",
        "MESH_ID": TRUST_DOMAIN,
        "INTERCEPTION_MODE": "REDIRECT" if proxy_type == "sidecar" else "NONE",
    }
    return meta


def _pipe_endpoints(path: Path) -> list[dict[str, Any]]:
    return [{"lb_endpoints": [{"endpoint": {"address": _pipe_address(path)}}]}]


def _pipe_address(path: Path, mode: int | None = None) -> dict[str, Any]:
    pipe: dict[str, Any] = {"path": str(path)}
    if mode is not None:
        pipe["mode"] = mode
    return {"pipe": pipe}


def _grpc_pipe_cluster(name: str, path: Path) -> dict[str, Any]:
    """A STATIC HTTP/2 cluster to a gRPC server on a unix socket."""
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            HTTP_PROTOCOL_OPTIONS: {
                "@type": f"type.googleapis.com/{HTTP_PROTOCOL_OPTIONS}",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {"cluster_name": name, "endpoints": _pipe_endpoints(path)},
    }


UPSTREAM_TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
# Istio's names: the workload certificate and the mesh root over SDS.


def _sds_secret(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "sds_config": {
            "api_config_source": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": SDS_CLUSTER}}],
            },
            "resource_api_version": "V3",
        },
    }


def xds_mtls_socket() -> dict[str, Any]:
    """The `xds-grpc` cluster's TLS: the pod's workload certificate (its proof of identity to the
    control plane) and the mesh root, both from the agent over SDS; the server must be the control
    plane (DNS SAN `istiod.istio-system.svc`, which no workload certificate carries)."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": UPSTREAM_TLS_TYPE,
            "sni": CONTROL_PLANE_NAME,
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificate_sds_secret_configs": [_sds_secret(WORKLOAD_SECRET)],
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": CONTROL_PLANE_NAME}}]
                    },
                    "validation_context_sds_secret_config": _sds_secret(ROOT_SECRET),
                },
            },
        },
    }


def _static_http_listener(name: str, port: int, routes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": HCM_TYPE,
                            "stat_prefix": name,
                            "codec_type": "AUTO",
                            "route_config": {
                                "name": name,
                                "virtual_hosts": [{"name": "backend", "domains": ["*"], "routes": routes}],
                            },
                            "http_filters": [
                                {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER_TYPE}}
                            ],
                        },
                    }
                ]
            }
        ],
    }


def build_bootstrap(
    *,
    node_id: str,
    cluster: str,
    metadata: dict[str, Any],
    xds_socket: Path,
    admin_socket: Path,
    sds_socket: Path | None = None,
    zipkin_socket: Path | None = None,
    merged_stats_socket: Path | None = None,
    app_metrics: tuple[Path, int] | None = None,
) -> dict[str, Any]:
    """A JSON-able Envoy v3 bootstrap (with the `sds-grpc` cluster when `sds_socket` is given, the
    `zipkin` cluster when `zipkin_socket` is)."""
    ads = {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}
    if sds_socket is not None:
        # Tells the control plane this proxy can fetch `default`/`ROOTCA`: only then does it get mTLS.
        metadata = {**metadata, "GOSSAMER_SDS": "true"}
    out: dict[str, Any] = {
        "node": {"id": node_id, "cluster": cluster, "metadata": metadata},
        "admin": {"address": _pipe_address(admin_socket, ADMIN_SOCKET_MODE)},
        # An explicit global connection limit (Envoy warns at startup without one).
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": DOWNSTREAM_CONNECTIONS_TYPE,
                        "max_active_downstream_connections": MAX_DOWNSTREAM_CONNECTIONS,
                    },
                }
            ]
        },
        "dynamic_resources": {
            "ads_config": {
                # Incremental xDS, as Istio uses by default; GOSSAMER_XDS_API=sotw selects State of the World.
                "api_type": "GRPC" if os.environ.get("GOSSAMER_XDS_API", "delta") == "sotw" else "DELTA_GRPC",
                "transport_api_version": "V3",
                # Reconnect fast when the control plane restarts (Envoy's default back-off grows to 30 s):
                # proxies must re-sync within a couple of seconds of it being back.
                "grpc_services": [
                    {
                        "envoy_grpc": {
                            "cluster_name": XDS_CLUSTER,
                            "retry_policy": {
                                "retry_back_off": {"base_interval": ADS_RETRY_BASE, "max_interval": ADS_RETRY_MAX}
                            },
                        }
                    }
                ],
                "set_node_on_first_message_only": True,
            },
            # initial_fetch_timeout 0s (like Istio): the proxy is not LIVE before it got its config.
            "lds_config": dict(ads),
            "cds_config": dict(ads),
        },
        "static_resources": {
            "clusters": [
                # With an agent (SDS), the control plane is reached over mTLS with the workload certificate.
                {
                    **_grpc_pipe_cluster(XDS_CLUSTER, xds_socket),
                    **({"transport_socket": xds_mtls_socket()} if sds_socket is not None else {}),
                },
                *([_grpc_pipe_cluster(SDS_CLUSTER, sds_socket)] if sds_socket is not None else []),
                *([zipkin_cluster(zipkin_socket)] if zipkin_socket is not None else []),
                {
                    "name": PROMETHEUS_CLUSTER,
                    "type": "STATIC",
                    "connect_timeout": "0.250s",
                    "load_assignment": {
                        "cluster_name": PROMETHEUS_CLUSTER,
                        "endpoints": _pipe_endpoints(admin_socket),
                    },
                },
            ],
            "listeners": [
                _static_http_listener(
                    "gossamer_prometheus",
                    PROMETHEUS_PORT,
                    [{"match": {"prefix": "/stats/prometheus"}, "route": {"cluster": PROMETHEUS_CLUSTER}}],
                ),
                _static_http_listener(
                    "gossamer_health",
                    HEALTH_PORT,
                    [
                        {
                            "match": {"path": "/healthz/ready"},
                            "route": {"cluster": PROMETHEUS_CLUSTER, "prefix_rewrite": "/ready"},
                        }
                    ],
                ),
                *merged_stats_listeners(merged_stats_socket, app_metrics),
            ],
        },
    }
    # Istio's bootstrap raises RE2's program-size limit from Envoy's default 100: a regex Istio
    # accepts must work here too (validation checks the same limit, `resources/regex.py`).
    static_layer: dict[str, Any] = {"re2.max_program_size.error_level": RE2_MAX_PROGRAM_SIZE}
    out["static_resources"]["clusters"] += merged_stats_clusters(merged_stats_socket, app_metrics)
    if zipkin_socket is not None:
        static_layer["tracing.zipkin.flush_interval_ms"] = ZIPKIN_FLUSH_INTERVAL_MS
        static_layer["tracing.zipkin.min_flush_spans"] = ZIPKIN_MIN_FLUSH_SPANS
    out["layered_runtime"] = {
        "layers": [
            {"name": "static", "static_layer": static_layer},
            {"name": "admin", "admin_layer": {}},
        ]
    }
    return out


def merged_stats_listeners(merged: Path | None, app: tuple[Path, int] | None) -> list[dict[str, Any]]:
    """:15020 /stats/prometheus -> the runtime's merge server (gossamer/telemetry/merge.py); for a
    pod whose app is scraped, a unix socket listener the merge server reads the app's metrics from."""
    out: list[dict[str, Any]] = []
    if merged is not None:
        out.append(
            _static_http_listener(
                "gossamer_merged_stats",
                MERGED_METRICS_PORT,
                [{"match": {"prefix": "/stats/prometheus"}, "route": {"cluster": MERGED_STATS_CLUSTER}}],
            )
        )
    if merged is not None and app is not None:
        listener = _static_http_listener(
            "gossamer_app_metrics", 0, [{"match": {"prefix": "/"}, "route": {"cluster": APP_METRICS_CLUSTER}}]
        )
        listener["address"] = _pipe_address(app[0], 0o600)
        out.append(listener)
    return out


def merged_stats_clusters(merged: Path | None, app: tuple[Path, int] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if merged is not None:
        out.append(
            {
                "name": MERGED_STATS_CLUSTER,
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {"cluster_name": MERGED_STATS_CLUSTER, "endpoints": _pipe_endpoints(merged)},
            }
        )
    if merged is not None and app is not None:
        out.append(
            {
                "name": APP_METRICS_CLUSTER,
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": APP_METRICS_CLUSTER,
                    "endpoints": [
                        {
                            "lb_endpoints": [
                                {
                                    "endpoint": {
                                        "address": {"socket_address": {"address": "127.0.0.1", "port_value": app[1]}}
                                    }
                                }
                            ]
                        }
                    ],
                },
            }
        )
    return out


def zipkin_cluster(path: Path) -> dict[str, Any]:
    """A STATIC HTTP/1.1 cluster to the control plane's Zipkin collector (POST /api/v2/spans)."""
    return {
        "name": ZIPKIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": ZIPKIN_CLUSTER, "endpoints": _pipe_endpoints(path)},
    }


def write_bootstrap(path: Path, bootstrap: Mapping[str, Any]) -> Path:
    """Write the bootstrap as JSON (readable by the pod's proxy user; it holds no secret and lives in
    the pod's 0700 directory)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(bootstrap, indent=2))
    tmp.chmod(0o644)
    os.replace(tmp, path)
    return path
