"""DestinationRule traffic policies -> IR cluster policies and route hash policies.

Istio's semantics (pilot/pkg/networking/core/cluster_traffic_policy.go and
networking/util MergeSubsetTrafficPolicy):

* a matching portLevelSettings entry replaces the whole policy for that port:
  connectionPool, outlierDetection, loadBalancer and tls are not inherited;
* a subset's policy overrides the (port-resolved) service policy field by field,
  and a subset portLevelSettings entry replaces all four fields;
* an unset connection pool still yields Istio's default circuit breakers, and the
  default load balancer is LEAST_REQUEST.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gossamer.ir.traffic_policy import (
    CircuitBreakers,
    ClusterPolicy,
    HashPolicy,
    LbPolicy,
    OutlierDetection,
    TcpKeepalive,
)
from gossamer.resources import networking
from gossamer.resources.base import Duration
from gossamer.resources.networking import DestinationRule


@dataclass(frozen=True)
class MergedPolicy:
    """The four per-cluster components of a TrafficPolicy after Istio's merge."""

    connection_pool: networking.ConnectionPoolSettings | None = None
    outlier_detection: networking.OutlierDetection | None = None
    load_balancer: networking.LoadBalancerSettings | None = None
    tls: networking.ClientTLSSettings | None = None


def _port_level(policy: networking.TrafficPolicy | None, port: int) -> tuple[MergedPolicy | None, bool]:
    if policy is None:
        return None, False
    for pls in policy.port_level_settings or []:
        if pls.port is not None and pls.port.number == port:
            return MergedPolicy(pls.connection_pool, pls.outlier_detection, pls.load_balancer, pls.tls), True
    return MergedPolicy(policy.connection_pool, policy.outlier_detection, policy.load_balancer, policy.tls), False


def merge_traffic_policy(
    service_policy: networking.TrafficPolicy | None, subset_policy: networking.TrafficPolicy | None, port: int
) -> MergedPolicy | None:
    """Istio's MergeSubsetTrafficPolicy for one port."""
    original, _ = _port_level(service_policy, port)
    if subset_policy is None:
        return original
    subset, has_port_level = _port_level(subset_policy, port)
    if original is None:
        return subset
    assert subset is not None

    def pick(name: str) -> Any:
        value = getattr(subset, name)
        return value if value is not None or has_port_level else getattr(original, name)

    return MergedPolicy(pick("connection_pool"), pick("outlier_detection"), pick("load_balancer"), pick("tls"))


def policy_for_cluster(dr: DestinationRule | None, subset: str, port: int) -> MergedPolicy | None:
    if dr is None:
        return None
    subset_policy = None
    if subset:
        for s in dr.spec.subsets or []:
            if s.name == subset:
                subset_policy = s.traffic_policy
                break
    return merge_traffic_policy(dr.spec.traffic_policy, subset_policy, port)


def _secs(d: Duration | None) -> float | None:
    return None if d is None else d.seconds


def _whole_secs(d: Duration | None) -> int | None:
    return None if d is None else int(d.seconds)


def cluster_policy(merged: MergedPolicy | None, *, http2_port: bool = False) -> ClusterPolicy:
    """applyConnectionPool + applyH2Upgrade + applyOutlierDetection + applyLoadBalancer."""
    pool = merged.connection_pool if merged is not None else None
    outlier = merged.outlier_detection if merged is not None else None
    lb = merged.load_balancer if merged is not None else None

    breakers = CircuitBreakers()
    connect_timeout = idle_timeout = max_duration = None
    per_connection = streams = None
    keepalive = None
    use_client_protocol = h2_upgrade = False
    http = pool.http if pool is not None else None
    tcp = pool.tcp if pool is not None else None
    if http is not None:
        # Istio cannot tell zero from unset: only positive values override the defaults.
        if http.http2_max_requests:
            breakers = replace(breakers, max_requests=http.http2_max_requests)
        if http.http1_max_pending_requests:
            breakers = replace(breakers, max_pending_requests=http.http1_max_pending_requests)
        if http.max_retries:
            breakers = replace(breakers, max_retries=http.max_retries)
        idle_timeout = _secs(http.idle_timeout)
        per_connection = http.max_requests_per_connection or None
        streams = http.max_concurrent_streams or None
        use_client_protocol = bool(http.use_client_protocol)
        h2_upgrade = http.h2_upgrade_policy == "UPGRADE"
    if tcp is not None:
        connect_timeout = _secs(tcp.connect_timeout)
        if tcp.max_connections:
            breakers = replace(breakers, max_connections=tcp.max_connections)
        max_duration = _secs(tcp.max_connection_duration)
        if idle_timeout is None:
            idle_timeout = _secs(tcp.idle_timeout)
        if tcp.tcp_keepalive is not None:
            ka = tcp.tcp_keepalive
            keepalive = TcpKeepalive(
                probes=ka.probes or None, time=_whole_secs(ka.time), interval=_whole_secs(ka.interval)
            )

    outlier_ir, panic = translate_outlier(outlier)
    lb_policy, ring, maglev, slow_start = translate_load_balancer(lb)
    return ClusterPolicy(
        lb_policy=lb_policy,
        ring_hash_minimum_ring_size=ring,
        maglev_table_size=maglev,
        slow_start_window=slow_start,
        connect_timeout=connect_timeout,
        circuit_breakers=breakers,
        tcp_keepalive=keepalive,
        idle_timeout=idle_timeout,
        max_requests_per_connection=per_connection,
        max_connection_duration=max_duration,
        max_concurrent_streams=streams,
        h2_upgrade=h2_upgrade,
        use_client_protocol=use_client_protocol,
        outlier_detection=outlier_ir,
        healthy_panic_threshold=panic,
    )


def translate_outlier(outlier: networking.OutlierDetection | None) -> tuple[OutlierDetection | None, float | None]:
    """Istio's applyOutlierDetection: success-rate ejection off, consecutive errors enforced at
    100% (0 disables them), and the panic threshold set to minHealthPercent (default 0)."""
    if outlier is None:
        return None, None
    c5xx = e5xx = cgw = egw = None
    if outlier.consecutive_5xx_errors is not None:
        c5xx = outlier.consecutive_5xx_errors
        e5xx = 100 if c5xx > 0 else 0
    if outlier.consecutive_gateway_errors is not None:
        cgw = outlier.consecutive_gateway_errors
        egw = 100 if cgw > 0 else 0
    split = bool(outlier.split_external_local_origin_errors)
    local = enforcing_local = local_sr = None
    if split:
        if outlier.consecutive_local_origin_failures:
            local, enforcing_local = outlier.consecutive_local_origin_failures, 100
        local_sr = 0
    out = OutlierDetection(
        enforcing_success_rate=0,
        consecutive_5xx=c5xx,
        enforcing_consecutive_5xx=e5xx,
        consecutive_gateway_failure=cgw,
        enforcing_consecutive_gateway_failure=egw,
        interval=_secs(outlier.interval),
        base_ejection_time=_secs(outlier.base_ejection_time),
        max_ejection_percent=outlier.max_ejection_percent if (outlier.max_ejection_percent or 0) > 0 else None,
        split_external_local_origin_errors=split,
        consecutive_local_origin_failure=local,
        enforcing_consecutive_local_origin_failure=enforcing_local,
        enforcing_local_origin_success_rate=local_sr,
    )
    min_health = outlier.min_health_percent or 0
    panic = float(min_health) if min_health >= 0 else None
    return out, panic


def translate_load_balancer(
    lb: networking.LoadBalancerSettings | None,
) -> tuple[LbPolicy, int | None, int | None, float | None]:
    """(lb_policy, ring hash minimum ring size, maglev table size, slow start window)."""
    simple = lb.simple if lb is not None else None
    warmup = _secs(lb.warmup_duration_secs) if lb is not None else None
    if lb is not None and warmup is None and lb.warmup is not None:
        warmup = _secs(lb.warmup.duration)
    policy: LbPolicy
    slow_start = None
    if simple == "RANDOM":
        policy = "RANDOM"
    elif simple == "ROUND_ROBIN":
        policy, slow_start = "ROUND_ROBIN", warmup
    elif simple == "PASSTHROUGH":
        policy = "CLUSTER_PROVIDED"
    else:  # LEAST_REQUEST, LEAST_CONN, unset: Istio's default
        policy, slow_start = "LEAST_REQUEST", warmup
    ring = maglev = None
    ch = lb.consistent_hash if lb is not None else None
    if ch is not None and policy != "CLUSTER_PROVIDED":
        slow_start = None
        if ch.maglev is not None:
            policy = "MAGLEV"
            maglev = ch.maglev.table_size or None
        elif ch.ring_hash is not None:
            policy = "RING_HASH"
            ring = ch.ring_hash.minimum_ring_size or None
        else:
            policy = "RING_HASH"
            ring = ch.minimum_ring_size or 1024
    return policy, ring, maglev, slow_start


# ---------------------------------------------------------------------------- route hash policies


def hash_policy(consistent_hash: networking.ConsistentHashLB | None) -> HashPolicy | None:
    """Istio's consistentHashToHashPolicy."""
    if consistent_hash is None:
        return None
    if consistent_hash.http_header_name is not None:
        return HashPolicy("header", consistent_hash.http_header_name)
    if consistent_hash.http_cookie is not None:
        cookie = consistent_hash.http_cookie
        return HashPolicy("cookie", cookie.name, cookie.path or "", _secs(cookie.ttl))
    if consistent_hash.use_source_ip is not None:
        return HashPolicy("source_ip") if consistent_hash.use_source_ip else None
    if consistent_hash.http_query_parameter_name is not None:
        return HashPolicy("query_parameter", consistent_hash.http_query_parameter_name)
    return None


def _lb_hash(
    policy: networking.TrafficPolicy | networking.PortTrafficPolicy | None,
) -> networking.ConsistentHashLB | None:
    lb = policy.load_balancer if policy is not None else None
    return lb.consistent_hash if lb is not None else None


def _pls_hash(
    settings: list[networking.PortTrafficPolicy] | None, port: int | None
) -> networking.ConsistentHashLB | None:
    if port is None:
        return None
    for pls in settings or []:
        if pls.port is not None and pls.port.number == port:
            return _lb_hash(pls)
    return None


def hash_for_destination(dr: DestinationRule | None, subset: str, explicit_port: int | None) -> HashPolicy | None:
    """Istio's hashForHTTPDestination: subset port-level, subset, port-level (only when the
    destination names its port), then service-level consistentHash."""
    if dr is None:
        return None
    tp = dr.spec.traffic_policy
    consistent = _lb_hash(tp)
    pls = _pls_hash(tp.port_level_settings if tp is not None else None, explicit_port)
    subset_hash = subset_pls = None
    for s in dr.spec.subsets or []:
        if s.name == (subset or ""):
            stp = s.traffic_policy
            subset_hash = _lb_hash(stp)
            subset_pls = _pls_hash(stp.port_level_settings if stp is not None else None, explicit_port)
            break
    for candidate in (subset_pls, subset_hash, pls):
        if candidate is not None:
            consistent = candidate
            break
    return hash_policy(consistent)


def hash_for_service(dr: DestinationRule | None, port: int) -> HashPolicy | None:
    """Istio's hashForService (the default route of a service without a VirtualService)."""
    if dr is None:
        return None
    tp = dr.spec.traffic_policy
    consistent = _lb_hash(tp)
    for pls in (tp.port_level_settings if tp is not None else None) or []:
        if pls.port is not None and pls.port.number == port:
            if _lb_hash(pls) is not None:
                consistent = _lb_hash(pls)
            break
    return hash_policy(consistent)
