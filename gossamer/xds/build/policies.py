"""IR traffic policies -> Envoy protos: retries, hashing, mirrors, fault, CORS (routes and the
HTTP filters they need) and DestinationRule cluster settings."""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import base_pb2, protocol_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from gossamer.ir.policies import (
    ClusterPolicy,
    CorsPolicy,
    FaultInjection,
    FractionalPercent,
    HashPolicy,
    MirrorPolicy,
    RetryPolicy,
)
from gossamer.xds.build.common import pack, seconds, string_matcher

FAULT_FILTER = "envoy.filters.http.fault"
CORS_FILTER = "envoy.filters.http.cors"

_DENOMINATORS = {
    "HUNDRED": percent_pb2.FractionalPercent.HUNDRED,
    "TEN_THOUSAND": percent_pb2.FractionalPercent.TEN_THOUSAND,
    "MILLION": percent_pb2.FractionalPercent.MILLION,
}


def fractional_percent(p: FractionalPercent) -> percent_pb2.FractionalPercent:
    return percent_pb2.FractionalPercent(numerator=p.numerator, denominator=_DENOMINATORS[p.denominator])


# ---------------------------------------------------------------------------- HTTP filters


def http_policy_filters() -> list[hcm_pb2.HttpFilter]:
    """Fault then CORS, before the router, in every HCM (Istio's order): empty configs that
    act only where a route carries typed_per_filter_config."""
    return [
        hcm_pb2.HttpFilter(name=FAULT_FILTER, typed_config=pack(fault_pb2.HTTPFault())),
        hcm_pb2.HttpFilter(name=CORS_FILTER, typed_config=pack(cors_pb2.Cors())),
    ]


# ---------------------------------------------------------------------------- routes


def retry_policy(p: RetryPolicy) -> rc.RetryPolicy:
    out = rc.RetryPolicy(
        retry_on=p.retry_on,
        num_retries=wrappers_pb2.UInt32Value(value=p.num_retries),
        retriable_status_codes=list(p.retriable_status_codes),
        host_selection_retry_max_attempts=p.host_selection_retry_max_attempts,
    )
    if p.per_try_timeout is not None:
        out.per_try_timeout.CopyFrom(seconds(p.per_try_timeout))
    if p.previous_hosts_predicate:
        out.retry_host_predicate.append(
            rc.RetryPolicy.RetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate()),
            )
        )
    if p.previous_priorities:
        out.retry_priority.CopyFrom(
            rc.RetryPolicy.RetryPriority(
                name="envoy.retry_priorities.previous_priorities",
                typed_config=pack(previous_priorities_config_pb2.PreviousPrioritiesConfig(update_frequency=2)),
            )
        )
    if p.backoff_base_interval is not None:
        out.retry_back_off.base_interval.CopyFrom(seconds(p.backoff_base_interval))
    return out


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


def mirror_policy(m: MirrorPolicy) -> rc.RouteAction.RequestMirrorPolicy:
    return rc.RouteAction.RequestMirrorPolicy(
        cluster=m.cluster,
        runtime_fraction=base_pb2.RuntimeFractionalPercent(default_value=fractional_percent(m.percent)),
        trace_sampled=wrappers_pb2.BoolValue(value=False),
    )


def fault_config(f: FaultInjection) -> fault_pb2.HTTPFault:
    out = fault_pb2.HTTPFault()
    if f.delay is not None:
        out.delay.CopyFrom(
            common_fault_pb2.FaultDelay(
                fixed_delay=seconds(f.delay.fixed_delay), percentage=fractional_percent(f.delay.percent)
            )
        )
    if f.abort is not None:
        abort = fault_pb2.FaultAbort()
        if f.abort.http_status is not None:
            abort.http_status = f.abort.http_status
        else:
            abort.grpc_status = f.abort.grpc_status or 0
        if f.abort.percent is not None:
            abort.percentage.CopyFrom(fractional_percent(f.abort.percent))
        out.abort.CopyFrom(abort)
    return out


def cors_config(c: CorsPolicy) -> cors_pb2.CorsPolicy:
    out = cors_pb2.CorsPolicy(
        allow_origin_string_match=[string_matcher(m) for m in c.allow_origins],
        allow_methods=c.allow_methods,
        allow_headers=c.allow_headers,
        expose_headers=c.expose_headers,
        max_age=c.max_age,
        filter_enabled=base_pb2.RuntimeFractionalPercent(
            default_value=percent_pb2.FractionalPercent(numerator=100, denominator=_DENOMINATORS["HUNDRED"])
        ),
        forward_not_matching_preflights=wrappers_pb2.BoolValue(value=c.forward_not_matching_preflights),
    )
    if c.allow_credentials is not None:
        out.allow_credentials.CopyFrom(wrappers_pb2.BoolValue(value=c.allow_credentials))
    return out


# ---------------------------------------------------------------------------- clusters

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
        ka = out.upstream_connection_options.tcp_keepalive
        ka.SetInParent()
        if p.tcp_keepalive.probes is not None:
            ka.keepalive_probes.value = p.tcp_keepalive.probes
        if p.tcp_keepalive.time is not None:
            ka.keepalive_time.value = p.tcp_keepalive.time
        if p.tcp_keepalive.interval is not None:
            ka.keepalive_interval.value = p.tcp_keepalive.interval
    od = p.outlier_detection
    if od is not None:
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
        out.outlier_detection.CopyFrom(o)
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
