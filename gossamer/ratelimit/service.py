"""A rate limit service speaking Envoy's `envoy.service.ratelimit.v3.RateLimitService`, as Envoy's
reference service (github.com/envoyproxy/ratelimit) answers it, counters in Redis.

An app of the mesh (Istio's sample runs the reference service in Go): Envoy's
`envoy.filters.http.ratelimit` asks it over gRPC once per request it rate limits. Per request it looks
each descriptor up in the configuration (`config.py`) and counts the limited ones in Redis in one
pipelined round trip: per descriptor `INCRBY <key> <hits>` and `EXPIRE <key> <unit seconds>`, the key
being `<domain>_<k1>_<v1>_..._<window start>` (fixed windows, as the reference's cache keys). A count
above `requests_per_unit` is OVER_LIMIT unless the limit is in shadow mode (or SHADOW_MODE is on for
everything); the response carries each descriptor's current limit, remaining requests and time to
the window's end, from which Envoy's `enable_x_ratelimit_headers` writes `x-ratelimit-*` headers, and,
with LIMIT_RESPONSE_HEADERS_ENABLED, the reference's own `response_headers_to_add` (names from
LIMIT_LIMIT_HEADER, LIMIT_REMAINING_HEADER, LIMIT_RESET_HEADER) for the descriptor closest to its limit.
When Redis cannot answer, or no configuration is loaded, the call fails: Envoy's `failure_mode_deny`
decides what the request gets.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.protobuf import duration_pb2

from gossamer.ratelimit.config import Config, RateLimit
from gossamer.ratelimit.redis import Redis, RedisError

log = logging.getLogger("ratelimit")

OK = rls_pb2.RateLimitResponse.OK
OVER_LIMIT = rls_pb2.RateLimitResponse.OVER_LIMIT
UNIT_ENUM = {
    "SECOND": rls_pb2.RateLimitResponse.RateLimit.SECOND,
    "MINUTE": rls_pb2.RateLimitResponse.RateLimit.MINUTE,
    "HOUR": rls_pb2.RateLimitResponse.RateLimit.HOUR,
    "DAY": rls_pb2.RateLimitResponse.RateLimit.DAY,
    "WEEK": rls_pb2.RateLimitResponse.RateLimit.WEEK,
    "MONTH": rls_pb2.RateLimitResponse.RateLimit.MONTH,
    "YEAR": rls_pb2.RateLimitResponse.RateLimit.YEAR,
}
ENUM_UNIT = {v: k for k, v in UNIT_ENUM.items()}


@dataclass(frozen=True)
class HeaderNames:
    """LIMIT_RESPONSE_HEADERS_ENABLED and the header names of the reference service's settings."""

    enabled: bool = False
    limit: str = "RateLimit-Limit"
    remaining: str = "RateLimit-Remaining"
    reset: str = "RateLimit-Reset"


class NoConfig(Exception):
    """No valid configuration has been loaded yet."""


def cache_key(domain: str, entries: Sequence[tuple[str, str]], limit: RateLimit, now: float) -> tuple[str, int]:
    """The Redis key of one descriptor's current window, and the window's end (unix seconds)."""
    unit = limit.unit_seconds
    start = int(now) // unit * unit
    parts = [domain]
    for k, v in entries:
        parts += [k, v]
    return "_".join(parts) + f"_{start}", start + unit


class Stats:
    """The reference service's per-limit counters (total_hits, over_limit, within_limit, near_limit,
    shadow_mode), keyed `ratelimit.service.rate_limit.<domain>.<key_value...>.<name>`; with
    `detailed_metric` the key is the request's own descriptor."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()

    def add(self, key: str, name: str, n: int = 1) -> None:
        self.counters[f"ratelimit.service.rate_limit.{key}.{name}"] += n

    def text(self) -> str:
        return "".join(f"{k}: {v}\n" for k, v in sorted(self.counters.items()))


NEAR_LIMIT_RATIO = 0.8  # the reference's NEAR_LIMIT_RATIO default


class RateLimiter:
    """The decision: configuration lookup + Redis counters -> RateLimitResponse."""

    def __init__(
        self,
        redis: Redis,
        *,
        headers: HeaderNames = HeaderNames(),
        shadow_mode: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.config: Config | None = None
        self.headers = headers
        self.shadow_mode = shadow_mode
        self.clock = clock
        self.stats = Stats()

    async def should_rate_limit(self, request: rls_pb2.RateLimitRequest) -> rls_pb2.RateLimitResponse:
        config = self.config
        if config is None:
            raise NoConfig("no rate limit configuration loaded")
        if not request.domain:
            raise ValueError("rate limit domain must not be empty")
        if not request.descriptors:
            raise ValueError("rate limit descriptor list must not be empty")
        hits = request.hits_addend or 1
        now = self.clock()
        limits: list[tuple[RateLimit, list[tuple[str, str]]] | None] = []
        commands: list[tuple[str | int, ...]] = []
        windows: list[int] = []
        for d in request.descriptors:
            limit, entries = _limit_of(config, request.domain, d)
            if limit is None or limit.unlimited:
                limits.append(None)
                continue
            limits.append((limit, entries))
            key, window_end = cache_key(request.domain, entries, limit, now)
            commands += [("INCRBY", key, hits), ("EXPIRE", key, limit.unit_seconds)]
            windows.append(window_end)
        counts: list[int] = []
        if commands:
            replies = await self.redis.pipeline(commands)
            counts = [int(r) for r in replies[0::2]]  # type: ignore[arg-type]
        response = rls_pb2.RateLimitResponse(overall_code=OK)
        closest: rls_pb2.RateLimitResponse.DescriptorStatus | None = None
        i = 0
        for item in limits:
            status = response.statuses.add()
            status.code = OK
            if item is None:
                continue
            limit, entries = item
            after, window_end = counts[i], windows[i]
            i += 1
            self._count(status, request.domain, limit, entries, hits, after, window_end - now)
            if status.code == OVER_LIMIT:
                response.overall_code = OVER_LIMIT
            if closest is None or status.limit_remaining < closest.limit_remaining:
                closest = status
        if self.shadow_mode and response.overall_code == OVER_LIMIT:
            response.overall_code = OK
            self.stats.counters["ratelimit.service.global_shadow_mode"] += 1
        if self.headers.enabled and closest is not None:
            reset = closest.duration_until_reset.seconds
            for name, value in (
                (self.headers.limit, closest.current_limit.requests_per_unit),
                (self.headers.remaining, closest.limit_remaining),
                (self.headers.reset, reset),
            ):
                response.response_headers_to_add.append(base_pb2.HeaderValue(key=name, value=str(value)))
        return response

    def _count(
        self,
        status: rls_pb2.RateLimitResponse.DescriptorStatus,
        domain: str,
        limit: RateLimit,
        entries: list[tuple[str, str]],
        hits: int,
        after: int,
        seconds_left: float,
    ) -> None:
        """Fill one descriptor's STATUS (AFTER: its counter with these HITS) and count it in the stats."""
        stat_key = limit.stat_key
        if limit.detailed_metric:
            stat_key = domain + "." + ".".join(f"{k}_{v}" if v else k for k, v in entries)
        self.stats.add(stat_key, "total_hits", hits)
        status.current_limit.requests_per_unit = limit.requests_per_unit
        status.current_limit.unit = UNIT_ENUM[limit.unit]
        if limit.name:
            status.current_limit.name = limit.name
        status.duration_until_reset.CopyFrom(duration_pb2.Duration(seconds=max(0, math.ceil(seconds_left))))
        if after > limit.requests_per_unit:
            before = after - hits
            over_hits = hits if before >= limit.requests_per_unit else after - limit.requests_per_unit
            self.stats.add(stat_key, "over_limit", over_hits)
            status.limit_remaining = 0
            if limit.shadow_mode:
                self.stats.add(stat_key, "shadow_mode", over_hits)
            else:
                status.code = OVER_LIMIT
        else:
            self.stats.add(stat_key, "within_limit", hits)
            if after > math.floor(limit.requests_per_unit * NEAR_LIMIT_RATIO):
                self.stats.add(stat_key, "near_limit", hits)
            status.limit_remaining = limit.requests_per_unit - after


def _limit_of(
    config: Config, domain: str, d: ratelimit_pb2.RateLimitDescriptor
) -> tuple[RateLimit | None, list[tuple[str, str]]]:
    """The limit of one descriptor (and its entries): a limit the route itself asks for overrides the
    configuration's."""
    entries = [(e.key, e.value) for e in d.entries]
    limit = config.limit_for(domain, entries)
    if d.HasField("limit"):
        unit = ENUM_UNIT.get(d.limit.unit, "SECOND")
        key = "_".join(f"{k}_{v}" for k, v in entries)
        limit = RateLimit(unit, d.limit.requests_per_unit, stat_key=f"{domain}.{key}")
    return limit, entries


class RateLimitServicer(rls_pb2_grpc.RateLimitServiceServicer):  # type: ignore[misc]  # generated stubs are untyped
    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def ShouldRateLimit(
        self,
        request: rls_pb2.RateLimitRequest,  # noqa: N802 (gRPC's name)
        context: grpc.aio.ServicerContext,
    ) -> rls_pb2.RateLimitResponse:
        try:
            return await self.limiter.should_rate_limit(request)
        except RedisError as e:
            self.limiter.stats.counters["ratelimit.service.call.should_rate_limit.redis_error"] += 1
            log.warning("redis error: %s", e)
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"redis error: {e}")
        except (NoConfig, ValueError) as e:
            self.limiter.stats.counters["ratelimit.service.call.should_rate_limit.service_error"] += 1
            await context.abort(grpc.StatusCode.UNKNOWN, str(e))
        raise AssertionError("unreachable")  # context.abort raises
