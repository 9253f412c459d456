"""IR DestinationRule traffic policy -> Envoy protos: the cluster's settings (load balancer, circuit
breakers, keepalive, outlier detection, HTTP protocol options) and the routes' consistent-hash policy."""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from gossamer.ir.traffic_policy import ClusterPolicy, HashPolicy, OutlierDetection, TcpKeepalive
from gossamer.xds.build.common import seconds


def hash_policy(h: HashPolicy) -> rc.RouteAction.HashPolicy:
    if h.kind == "header":
        return rc.RouteAction.HashPolicy(header=rc.RouteAction.HashPolicy.Header(header_name=h.name))
    if h.kind == "cookie":
        cookie = rc.RouteAction.HashPolicy.Cookie(name=h.name, path=h.cookie_path)
        if h.cookie_ttl is not None:
            cookie.ttl.CopyFrom(seconds(h.cookie_ttl))
        return rc.RouteAction.HashPolicy(cookie=cookie)
    if h.kind == "source_ip":
        return rc.RouteAction.HashPolicy(
            connection_properties=rc.RouteAction.HashPolicy.ConnectionProperties(source_ip=True)
        )
    return rc.RouteAction.HashPolicy(query_parameter=rc.RouteAction.HashPolicy.QueryParameter(name=h.name))


_LB_POLICIES = {
    "ROUND_ROBIN": cluster_pb2.Cluster.ROUND_ROBIN,
    "LEAST_REQUEST": cluster_pb2.Cluster.LEAST_REQUEST,
    "RANDOM": cluster_pb2.Cluster.RANDOM,
    "RING_HASH": cluster_pb2.Cluster.RING_HASH,
    "MAGLEV": cluster_pb2.Cluster.MAGLEV,
    "CLUSTER_PROVIDED": cluster_pb2.Cluster.CLUSTER_PROVIDED,
}


def _u32(v: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=v)


def _set_tcp_keepalive(out: cluster_pb2.Cluster, keepalive: TcpKeepalive) -> None:
    ka = out.upstream_connection_options.tcp_keepalive
    ka.SetInParent()
    if keepalive.probes is not None:
        ka.keepalive_probes.value = keepalive.probes
    if keepalive.time is not None:
        ka.keepalive_time.value = keepalive.time
    if keepalive.interval is not None:
        ka.keepalive_interval.value = keepalive.interval


def _outlier_detection(od: OutlierDetection) -> outlier_detection_pb2.OutlierDetection:
    o = outlier_detection_pb2.OutlierDetection(enforcing_success_rate=_u32(od.enforcing_success_rate))
    for name in (
        "consecutive_5xx",
        "enforcing_consecutive_5xx",
        "consecutive_gateway_failure",
        "enforcing_consecutive_gateway_failure",
        "max_ejection_percent",
        "consecutive_local_origin_failure",
        "enforcing_consecutive_local_origin_failure",
        "enforcing_local_origin_success_rate",
    ):
        value = getattr(od, name)
        if value is not None:
            getattr(o, name).CopyFrom(_u32(value))
    if od.interval is not None:
        o.interval.CopyFrom(seconds(od.interval))
    if od.base_ejection_time is not None:
        o.base_ejection_time.CopyFrom(seconds(od.base_ejection_time))
    o.split_external_local_origin_errors = od.split_external_local_origin_errors
    return o


def apply_cluster_policy(
    out: cluster_pb2.Cluster, p: ClusterPolicy
) -> http_protocol_options_pb2.HttpProtocolOptions | None:
    """Set the DestinationRule settings on `out`; returns the HttpProtocolOptions common options
    to merge into the cluster's typed_extension_protocol_options, if any."""
    out.lb_policy = _LB_POLICIES[p.lb_policy]
    if p.ring_hash_minimum_ring_size is not None:
        out.ring_hash_lb_config.minimum_ring_size.value = p.ring_hash_minimum_ring_size
    if p.maglev_table_size is not None:
        out.maglev_lb_config.table_size.value = p.maglev_table_size
    if p.slow_start_window is not None:
        config = out.round_robin_lb_config if p.lb_policy == "ROUND_ROBIN" else out.least_request_lb_config
        config.slow_start_config.slow_start_window.CopyFrom(seconds(p.slow_start_window))
    if p.connect_timeout is not None:
        out.connect_timeout.CopyFrom(seconds(p.connect_timeout))
    b = p.circuit_breakers
    out.circuit_breakers.CopyFrom(
        circuit_breaker_pb2.CircuitBreakers(
            thresholds=[
                circuit_breaker_pb2.CircuitBreakers.Thresholds(
                    max_connections=_u32(b.max_connections),
                    max_pending_requests=_u32(b.max_pending_requests),
                    max_requests=_u32(b.max_requests),
                    max_retries=_u32(b.max_retries),
                    track_remaining=b.track_remaining,
                )
            ]
        )
    )
    if p.tcp_keepalive is not None:
        _set_tcp_keepalive(out, p.tcp_keepalive)
    if p.outlier_detection is not None:
        out.outlier_detection.CopyFrom(_outlier_detection(p.outlier_detection))
    if p.healthy_panic_threshold is not None:
        out.common_lb_config.healthy_panic_threshold.CopyFrom(percent_pb2.Percent(value=p.healthy_panic_threshold))
    if p.idle_timeout is None and p.max_requests_per_connection is None and p.max_connection_duration is None:
        return None
    common = protocol_pb2.HttpProtocolOptions()
    if p.idle_timeout is not None:
        common.idle_timeout.CopyFrom(seconds(p.idle_timeout))
    if p.max_requests_per_connection is not None:
        common.max_requests_per_connection.CopyFrom(_u32(p.max_requests_per_connection))
    if p.max_connection_duration is not None:
        common.max_connection_duration.CopyFrom(seconds(p.max_connection_duration))
    return http_protocol_options_pb2.HttpProtocolOptions(common_http_protocol_options=common)
