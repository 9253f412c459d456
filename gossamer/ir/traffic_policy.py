"""IR for DestinationRule traffic policy: what it does to a cluster (`ClusterPolicy`: load balancer,
connection pool, outlier detection) and to the routes to it (`HashPolicy`, consistent hashing)
(`translate/traffic_policy.py` makes them, `xds/build/traffic_policy.py` builds them).

Plain frozen dataclasses, like the rest of the IR. Durations are seconds (float); values are Istio's
effective ones (defaults applied).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MAX_UINT32 = 4294967295

HashKind = Literal["header", "cookie", "source_ip", "query_parameter"]


@dataclass(frozen=True)
class HashPolicy:
    kind: HashKind
    name: str = ""  # header / cookie / query parameter name
    cookie_path: str = ""
    cookie_ttl: float | None = None


LbPolicy = Literal["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH", "MAGLEV", "CLUSTER_PROVIDED"]


@dataclass(frozen=True)
class CircuitBreakers:
    """Istio's defaults: every threshold at MaxUint32, track_remaining on."""

    max_connections: int = MAX_UINT32
    max_pending_requests: int = MAX_UINT32
    max_requests: int = MAX_UINT32
    max_retries: int = MAX_UINT32
    track_remaining: bool = True


@dataclass(frozen=True)
class TcpKeepalive:
    probes: int | None = None
    time: int | None = None  # seconds
    interval: int | None = None  # seconds


@dataclass(frozen=True)
class OutlierDetection:
    """Envoy's OutlierDetection fields as Istio sets them (None: leave Envoy's default)."""

    enforcing_success_rate: int = 0
    consecutive_5xx: int | None = None
    enforcing_consecutive_5xx: int | None = None
    consecutive_gateway_failure: int | None = None
    enforcing_consecutive_gateway_failure: int | None = None
    interval: float | None = None
    base_ejection_time: float | None = None
    max_ejection_percent: int | None = None
    split_external_local_origin_errors: bool = False
    consecutive_local_origin_failure: int | None = None
    enforcing_consecutive_local_origin_failure: int | None = None
    enforcing_local_origin_success_rate: int | None = None


@dataclass(frozen=True)
class ClusterPolicy:
    """What a DestinationRule traffic policy (merged for one cluster) does to it."""

    lb_policy: LbPolicy = "LEAST_REQUEST"
    ring_hash_minimum_ring_size: int | None = None
    maglev_table_size: int | None = None
    slow_start_window: float | None = None
    connect_timeout: float | None = None  # None: Istio's mesh default (10s)
    circuit_breakers: CircuitBreakers = CircuitBreakers()
    tcp_keepalive: TcpKeepalive | None = None
    idle_timeout: float | None = None
    max_requests_per_connection: int | None = None
    max_connection_duration: float | None = None
    max_concurrent_streams: int | None = None
    h2_upgrade: bool = False
    use_client_protocol: bool = False
    outlier_detection: OutlierDetection | None = None
    healthy_panic_threshold: float | None = None
