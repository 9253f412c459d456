"""IR for VirtualService http route actions: retries, mirrors, redirect, direct response, rewrite,
fault injection, CORS (`translate/route_actions.py` makes them, `xds/build/route_actions.py` builds them).

Plain frozen dataclasses, like the rest of the IR. Durations are seconds (float).
Values are already Istio's effective values (defaults applied), so the builders
only change shape, never meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gossamer.ir.matches import StringMatch

Denominator = Literal["HUNDRED", "TEN_THOUSAND", "MILLION"]


@dataclass(frozen=True)
class FractionalPercent:
    numerator: int
    denominator: Denominator = "HUNDRED"


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
