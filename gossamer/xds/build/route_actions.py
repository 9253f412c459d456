"""IR route actions -> Envoy protos: retries, mirrors, fault, CORS (route fields and the HTTP filters
they need); redirects, direct responses and rewrites are set in `routes.py`."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, wrappers_pb2
from google.protobuf.message import Message

from gossamer.ir.route_actions import CorsPolicy, FaultInjection, FractionalPercent, MirrorPolicy, RetryPolicy
from gossamer.xds.build.common import pack, seconds, string_matcher

FAULT_FILTER = "envoy.filters.http.fault"
CORS_FILTER = "envoy.filters.http.cors"
# Filters in every HCM, disabled unless a route enables them (`fault_and_cors_filters`).
DISABLED_UNTIL_ROUTED = (FAULT_FILTER, CORS_FILTER)

_DENOMINATORS = {
    "HUNDRED": percent_pb2.FractionalPercent.HUNDRED,
    "TEN_THOUSAND": percent_pb2.FractionalPercent.TEN_THOUSAND,
    "MILLION": percent_pb2.FractionalPercent.MILLION,
}


def fractional_percent(p: FractionalPercent) -> percent_pb2.FractionalPercent:
    return percent_pb2.FractionalPercent(numerator=p.numerator, denominator=_DENOMINATORS[p.denominator])


# ---------------------------------------------------------------------------- HTTP filters


def fault_and_cors_filters() -> list[hcm_pb2.HttpFilter]:
    """Fault then CORS, before the router, in every HCM (Istio's order; EnvoyFilter patches name
    them): empty configs, disabled unless a route enables them (`per_route_filter_config`). Disabled, Envoy
    creates neither filter for a request: the two cost 6-7k instructions per request each time
    they run (callgrind, benchmarks/sidecar_instructions.py), for the routes without a fault or
    CORS policy, which are nearly all."""
    return [
        hcm_pb2.HttpFilter(name=FAULT_FILTER, typed_config=pack(fault_pb2.HTTPFault()), disabled=True),
        hcm_pb2.HttpFilter(name=CORS_FILTER, typed_config=pack(cors_pb2.Cors()), disabled=True),
    ]


def per_route_filter_config(config: Message) -> any_pb2.Any:
    """A route's config for a filter disabled by default: Envoy's FilterConfig wrapper enables it
    on this route."""
    return pack(rc.FilterConfig(config=pack(config)))


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
