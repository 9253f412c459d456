"""IR for traffic policies: per-route (VirtualService http) and per-cluster (DestinationRule).

Plain frozen dataclasses, like the rest of the IR. Durations are seconds (float).
Values are already Istio's effective values (defaults applied), so the builders
only change shape, never meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gossamer.ir.matches import StringMatch

MAX_UINT32 = 4294967295

Denominator = Literal["HUNDRED", "TEN_THOUSAND", "MILLION"]


@dataclass(frozen=True)
class FractionalPercent:
    numerator: int
    denominator: Denominator = "HUNDRED"


# ---------------------------------------------------------------------------- routes


@dataclass(frozen=True)
class RetryPolicy:
    num_retries: int
    retry_on: str
    retriable_status_codes: tuple[int, ...] = ()
    per_try_timeout: float | None = None
    # envoy.retry_host_predicates.previous_hosts
    previous_hosts_predicate: bool = False
    host_selection_retry_max_attempts: int = 0
    # envoy.retry_priorities.previous_priorities (retryRemoteLocalities)
    previous_priorities: bool = False
    backoff_base_interval: float | None = None


HashKind = Literal["header", "cookie", "source_ip", "query_parameter"]


@dataclass(frozen=True)
class HashPolicy:
    kind: HashKind
    name: str = ""  # header / cookie / query parameter name
    cookie_path: str = ""
    cookie_ttl: float | None = None


@dataclass(frozen=True)
class MirrorPolicy:
    cluster: str
    percent: FractionalPercent = FractionalPercent(100)


@dataclass(frozen=True)
class Redirect:
    path: str = ""
    host: str = ""
    port: int = 0
    scheme: str = ""
    response_code: int = 301


@dataclass(frozen=True)
class DirectResponse:
    status: int
    body_string: str | None = None
    body_base64: str | None = None


@dataclass(frozen=True)
class Rewrite:
    prefix: str = ""
    regex_pattern: str = ""
    regex_substitution: str = ""
    host: str = ""

    def __bool__(self) -> bool:
        return bool(self.prefix or self.regex_pattern or self.host)


@dataclass(frozen=True)
class FaultDelay:
    fixed_delay: float
    percent: FractionalPercent


@dataclass(frozen=True)
class FaultAbort:
    http_status: int | None = None
    grpc_status: int | None = None
    percent: FractionalPercent | None = None  # unset: Envoy aborts no request


@dataclass(frozen=True)
class FaultInjection:
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


@dataclass(frozen=True)
class CorsPolicy:
    allow_origins: tuple[StringMatch, ...] = ()
    allow_methods: str = ""
    allow_headers: str = ""
    expose_headers: str = ""
    max_age: str = ""
    allow_credentials: bool | None = None
    forward_not_matching_preflights: bool = True


# ---------------------------------------------------------------------------- clusters


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
