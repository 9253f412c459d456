"""VirtualService http route actions -> IR, with Istio's semantics and defaults.

timeout, retries, fault, mirror(s), redirect, rewrite, directResponse, corsPolicy.
Follows pilot/pkg/networking/core/route/route.go and route/retry/retry.go.
"""

from __future__ import annotations

from http import HTTPStatus

from gossamer.ir.matches import StringMatch
from gossamer.ir.route_actions import (
    CorsPolicy,
    DirectResponse,
    FaultAbort,
    FaultDelay,
    FaultInjection,
    FractionalPercent,
    Redirect,
    RetryPolicy,
    Rewrite,
)
from gossamer.resources import networking
from gossamer.resources.base import Duration

# Istio's default retry policy (retry.DefaultPolicy): applied to every outbound route
# unless the VirtualService says otherwise.
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
DEFAULT_RETRY = RetryPolicy(
    num_retries=2,
    retry_on=DEFAULT_RETRY_ON,
    retriable_status_codes=(503,),
    previous_hosts_predicate=True,
    host_selection_retry_max_attempts=5,
)
# With consistent hashing Istio drops the previous-hosts predicate: retries stay on the hashed host.
DEFAULT_CONSISTENT_HASH_RETRY = RetryPolicy(
    num_retries=2,
    retry_on=DEFAULT_RETRY_ON,
    retriable_status_codes=(503,),
    host_selection_retry_max_attempts=5,
)

# Go's http.StatusText knows these; Istio treats only them as status codes in retryOn.
_KNOWN_STATUS = frozenset(s.value for s in HTTPStatus) | {418, 421, 425}

# istio.io/istio/pkg/util/grpc SupportedGRPCStatus.
GRPC_STATUS = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


def _seconds(d: Duration | None) -> float | None:
    return None if d is None else d.seconds


def percent(value: float) -> FractionalPercent:
    """Istio's translatePercentToFractionalPercent: value * 10000 per million."""
    return FractionalPercent(int(value * 10000), "MILLION")


def parse_retry_on(retry_on: str) -> tuple[str, tuple[int, ...]]:
    """Split retryOn into Envoy retry_on conditions and retriable status codes."""
    codes: list[int] = []
    names: list[str] = []
    for part in retry_on.split(","):
        part = part.strip()
        if not part:
            continue
        if part.lstrip("+-").isdigit() and int(part) in _KNOWN_STATUS:
            codes.append(int(part))
        else:
            names.append(part)
    return ",".join(names), tuple(codes)


def translate_retry(retries: networking.HTTPRetry | None, consistent_hash: bool = False) -> RetryPolicy | None:
    """Istio's retry.ConvertPolicy: default when unset, none when attempts <= 0."""
    out = DEFAULT_CONSISTENT_HASH_RETRY if consistent_hash else DEFAULT_RETRY
    if retries is None:
        return out
    if not retries.attempts or retries.attempts <= 0:
        return None
    retry_on, codes = out.retry_on, out.retriable_status_codes
    if retries.retry_on:
        retry_on, codes = parse_retry_on(retries.retry_on)
        if codes and "retriable-status-codes" not in retry_on:
            retry_on += ",retriable-status-codes"
    previous_hosts = out.previous_hosts_predicate
    if retries.retry_ignore_previous_hosts is not None:
        previous_hosts = bool(retries.retry_ignore_previous_hosts)
    return RetryPolicy(
        num_retries=retries.attempts,
        retry_on=retry_on,
        retriable_status_codes=codes,
        per_try_timeout=_seconds(retries.per_try_timeout),
        previous_hosts_predicate=previous_hosts,
        host_selection_retry_max_attempts=out.host_selection_retry_max_attempts,
        previous_priorities=bool(retries.retry_remote_localities),
        backoff_base_interval=_seconds(retries.backoff),
    )


def translate_fault(fault: networking.HTTPFaultInjection | None) -> FaultInjection | None:
    """Istio's TranslateFault: fixed delays and http/grpc aborts; anything else is dropped."""
    if fault is None:
        return None
    delay = None
    if fault.delay is not None and fault.delay.fixed_delay is not None:
        pct = (
            percent(fault.delay.percentage.value)
            if fault.delay.percentage is not None
            else FractionalPercent(fault.delay.percent or 0)
        )
        delay = FaultDelay(fault.delay.fixed_delay.seconds, pct)
    abort = None
    if fault.abort is not None:
        pct_abort = percent(fault.abort.percentage.value) if fault.abort.percentage is not None else None
        if fault.abort.http_status is not None:
            abort = FaultAbort(http_status=fault.abort.http_status, percent=pct_abort)
        elif fault.abort.grpc_status is not None:
            abort = FaultAbort(grpc_status=GRPC_STATUS.get(fault.abort.grpc_status, 0), percent=pct_abort)
    if delay is None and abort is None:
        return None
    return FaultInjection(delay, abort)


def _string_match(m: networking.StringMatch) -> StringMatch:
    if m.exact is not None:
        return StringMatch("exact", m.exact)
    if m.prefix is not None:
        return StringMatch("prefix", m.prefix)
    return StringMatch("regex", m.regex or "")


def translate_cors(cors: networking.CorsPolicy | None) -> CorsPolicy | None:
    if cors is None:
        return None
    if cors.allow_origins is not None:
        origins = tuple(_string_match(m) for m in cors.allow_origins)
    else:
        origins = tuple(StringMatch("exact", o) for o in cors.allow_origin or [])
    max_age = ""
    if cors.max_age is not None:
        max_age = str(int(cors.max_age.seconds))
    return CorsPolicy(
        allow_origins=origins,
        allow_methods=",".join(cors.allow_methods or []),
        allow_headers=",".join(cors.allow_headers or []),
        expose_headers=",".join(cors.expose_headers or []),
        max_age=max_age,
        allow_credentials=cors.allow_credentials,
        forward_not_matching_preflights=cors.unmatched_preflights != "IGNORE",
    )


def mirror_percent(rule: networking.HTTPRoute) -> FractionalPercent | None:
    """Istio's MirrorPercent: mirrorPercentage, else mirrorPercent, else 100%; 0 disables."""
    if rule.mirror_percentage is not None:
        return percent(rule.mirror_percentage.value) if rule.mirror_percentage.value > 0 else None
    if rule.mirror_percent is not None:
        return FractionalPercent(rule.mirror_percent) if rule.mirror_percent > 0 else None
    return FractionalPercent(100)


def mirror_policy_percent(policy: networking.HTTPMirrorPolicy) -> FractionalPercent | None:
    if policy.percentage is not None:
        return percent(policy.percentage.value) if policy.percentage.value > 0 else None
    return FractionalPercent(100)


def translate_redirect(redirect: networking.HTTPRedirect, listener_port: int, is_tls: bool = False) -> Redirect | None:
    """Istio's ApplyRedirect; an unsupported code leaves the route without an action (None)."""
    code = redirect.redirect_code or 301
    if code not in REDIRECT_CODES:
        return None
    port = 0
    if redirect.port is not None:
        port = redirect.port
    elif redirect.derive_port == "FROM_REQUEST_PORT":
        # Envoy cannot derive the port; routes are built per listener port, so use it.
        port = listener_port
    if redirect.port is not None or redirect.derive_port is not None:
        scheme = redirect.scheme or ("https" if is_tls else "http")
        if (port == 80 and scheme == "http") or (port == 443 and scheme == "https"):
            port = 0
    return Redirect(
        path=redirect.uri or "",
        host=redirect.authority or "",
        port=port,
        scheme=redirect.scheme or "",
        response_code=code,
    )


def translate_direct_response(direct: networking.HTTPDirectResponse) -> DirectResponse:
    body = direct.body
    return DirectResponse(
        status=direct.status,
        body_string=body.string if body is not None else None,
        body_base64=body.bytes if body is not None and body.string is None else None,
    )


def translate_rewrite(rewrite: networking.HTTPRewrite | None, authority: str) -> Rewrite:
    """uriRegexRewrite wins over uri (prefix_rewrite; on an exact-path match Envoy swaps the whole
    path); rewrite.authority wins over an :authority set through headers."""
    prefix = pattern = substitution = ""
    if rewrite is not None:
        if rewrite.uri_regex_rewrite is not None:
            pattern, substitution = rewrite.uri_regex_rewrite.match, rewrite.uri_regex_rewrite.rewrite
        elif rewrite.uri:
            prefix = rewrite.uri
        if rewrite.authority:
            authority = rewrite.authority
    return Rewrite(prefix=prefix, regex_pattern=pattern, regex_substitution=substitution, host=authority)
