"""A Zipkin-compatible span collector in the control plane (Istio's tracing backend, in memory).

Every Envoy posts its spans (Zipkin JSON v2: a list of spans) to `POST /api/v2/spans` on
`<run-dir>/zipkin.sock` through its bootstrap's static cluster `zipkin`; the HTTP connection
managers' tracing config (xds/build/tracing.py) says when. The collector keeps the last
`max_spans` spans grouped by trace id; `GET /v1/traces` on the API socket and `gossamer traces`
read them. Nothing here is on the request path: Envoy batches spans and posts them asynchronously.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

SPANS_PATH = "/api/v2/spans"
DEFAULT_MAX_SPANS = 10_000
# Only root and the proxies' group may connect (connect() on a unix socket needs write permission):
# no other local user can post spans that would show as real ones.
SOCKET_MODE = 0o660
KINDS = frozenset({"CLIENT", "SERVER", "PRODUCER", "CONSUMER"})
_TRACE_ID = re.compile(r"^[0-9a-f]{16}([0-9a-f]{16})?$")
_SPAN_ID = re.compile(r"^[0-9a-f]{16}$")

Span = dict[str, Any]
SpanKey = tuple[str, str, str]  # (span id, kind, service): a shared client/server span id stays two spans


class SpanError(ValueError):
    pass


def _hex_id(value: Any, pattern: re.Pattern[str], field: str) -> str:
    if not isinstance(value, str):
        raise SpanError(f"{field} must be a string")
    out = value.strip().lower()
    if len(out) < 16 and pattern is _SPAN_ID:
        out = out.rjust(16, "0")  # Zipkin accepts ids with leading zeros dropped
    if not pattern.match(out):
        raise SpanError(f"{field} {value!r} is not a hex id of the right length")
    return out


def _micros(value: Any, field: str) -> int:
    """Timestamps and durations in microseconds: JSON numbers (or numeric strings, as some tracers send)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise SpanError(f"{field} must be a number")
    try:
        out = int(value)
    except (TypeError, ValueError) as e:
        raise SpanError(f"{field} {value!r} is not a number") from e
    if out < 0:
        raise SpanError(f"{field} must not be negative")
    return out


def _endpoint(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    out = {k: value[k] for k in ("serviceName", "ipv4", "ipv6", "port") if value.get(k) not in (None, "")}
    return out or None


def parse_span(raw: Any) -> Span:
    """One Zipkin v2 span, normalized: lower-case hex ids, integer microseconds, string tags."""
    if not isinstance(raw, dict):
        raise SpanError("a span must be a JSON object")
    span: Span = {
        "traceId": _hex_id(raw.get("traceId"), _TRACE_ID, "traceId"),
        "id": _hex_id(raw.get("id"), _SPAN_ID, "id"),
    }
    if raw.get("parentId") not in (None, ""):
        parent = _hex_id(raw["parentId"], _SPAN_ID, "parentId")
        if parent != span["id"]:
            span["parentId"] = parent
    kind = raw.get("kind")
    if kind is not None:
        if kind not in KINDS:
            raise SpanError(f"kind {kind!r} is not one of {', '.join(sorted(KINDS))}")
        span["kind"] = kind
    span["name"] = str(raw.get("name") or "")
    span["timestamp"] = _micros(raw.get("timestamp"), "timestamp")
    span["duration"] = _micros(raw.get("duration"), "duration")
    for key in ("localEndpoint", "remoteEndpoint"):
        endpoint = _endpoint(raw.get(key))
        if endpoint is not None:
            span[key] = endpoint
    tags = raw.get("tags")
    if tags is not None:
        if not isinstance(tags, dict):
            raise SpanError("tags must be an object")
        span["tags"] = {str(k): str(v) for k, v in tags.items()}
    if raw.get("shared"):
        span["shared"] = True
    return span


def parse_spans(body: Any) -> tuple[list[Span], list[str]]:
    """A JSON v2 POST body -> (valid spans, one error per span rejected)."""
    if not isinstance(body, list):
        raise SpanError("the body must be a JSON list of spans")
    spans, errors = [], []
    for i, raw in enumerate(body):
        try:
            spans.append(parse_span(raw))
        except SpanError as e:
            errors.append(f"span {i}: {e}")
    return spans, errors


def service_of(span: Span) -> str:
    return str((span.get("localEndpoint") or {}).get("serviceName") or "")


def _key(span: Span) -> SpanKey:
    return span["id"], span.get("kind", ""), service_of(span)


def _matches_service(span: Span, name: str) -> bool:
    service = service_of(span)
    return (
        service == name
        or service.startswith(name + ".")
        or (span.get("tags") or {}).get("istio.canonical_service") == name
    )


class SpanStore:
    """The last `max_spans` spans, grouped by trace id (oldest spans go first)."""

    def __init__(self, max_spans: int = DEFAULT_MAX_SPANS) -> None:
        if max_spans < 1:
            raise ValueError("max_spans must be positive")
        self.max_spans = max_spans
        self._order: deque[tuple[str, SpanKey]] = deque()
        self._traces: dict[str, dict[SpanKey, Span]] = {}
        self.received = 0
        self.rejected = 0

    def __len__(self) -> int:
        return len(self._order)

    def add(self, spans: Iterable[Span]) -> None:
        for span in spans:
            self.received += 1
            trace = self._traces.setdefault(span["traceId"], {})
            key = _key(span)
            if key in trace:
                trace[key] = span  # a span reported again replaces the first report
                continue
            trace[key] = span
            self._order.append((span["traceId"], key))
            while len(self._order) > self.max_spans:
                old_trace, old_key = self._order.popleft()
                group = self._traces.get(old_trace)
                if group is not None:
                    group.pop(old_key, None)
                    if not group:
                        del self._traces[old_trace]

    def trace(self, trace_id: str) -> list[Span]:
        """One trace's spans by start time ([] when unknown)."""
        group = self._traces.get(trace_id.strip().lower(), {})
        return sorted(group.values(), key=lambda s: (s["timestamp"], s["id"]))

    def traces(self, *, service: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent traces (by start), each as `summary()`, optionally those touching `service`."""
        out = []
        for trace_id, group in self._traces.items():
            if service and not any(_matches_service(s, service) for s in group.values()):
                continue
            out.append(summary(trace_id, list(group.values())))
        out.sort(key=lambda t: t["timestamp"], reverse=True)
        return out[: max(0, limit)]


def summary(trace_id: str, spans: Sequence[Span]) -> dict[str, Any]:
    """A trace as JSON: its id, start and duration (microseconds), services, and spans by start time."""
    ordered = sorted(spans, key=lambda s: (s["timestamp"], s["id"]))
    start = min((s["timestamp"] for s in ordered), default=0)
    end = max((s["timestamp"] + s["duration"] for s in ordered), default=0)
    roots = [s for depth, s in span_tree(ordered) if depth == 0]
    return {
        "traceId": trace_id,
        "timestamp": start,
        "duration": end - start,
        "root": roots[0]["name"] if roots else "",
        "services": sorted({service_of(s) for s in ordered if service_of(s)}),
        "spans": ordered,
    }


def span_tree(spans: Sequence[Span]) -> list[tuple[int, Span]]:
    """Spans in depth-first order with their depth: children under their parent (`parentId`), by
    start time; spans whose parent was not reported are roots."""
    ordered = sorted(spans, key=lambda s: (s["timestamp"], s["id"]))
    ids = {s["id"] for s in ordered}
    children: dict[str, list[Span]] = {}
    roots = []
    for s in ordered:
        parent = s.get("parentId")
        if parent and parent in ids:
            children.setdefault(parent, []).append(s)
        else:
            roots.append(s)
    out: list[tuple[int, Span]] = []
    seen: set[int] = set()

    def walk(span: Span, depth: int) -> None:
        if id(span) in seen:
            return
        seen.add(id(span))
        out.append((depth, span))
        for child in children.get(span["id"], []):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    for s in ordered:  # spans only reachable through a cycle of parent ids
        if id(s) not in seen:
            walk(s, 0)
    return out


class ZipkinCollector:
    """`POST /api/v2/spans` (Zipkin JSON v2) on a unix socket, into a SpanStore."""

    def __init__(self, store: SpanStore) -> None:
        self.store = store
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.add_routes([web.post(SPANS_PATH, self.post_spans)])
        return app

    async def post_spans(self, request: web.Request) -> web.Response:
        data = await request.read()
        try:
            if request.headers.get("Content-Encoding", "").lower() == "gzip":
                data = gzip.decompress(data)
            spans, errors = parse_spans(json.loads(data or b"null"))
        except (ValueError, OSError) as e:  # JSONDecodeError, SpanError, bad gzip
            return web.json_response({"error": str(e)}, status=400)
        self.store.add(spans)
        if errors:
            self.store.rejected += len(errors)
            log.debug("spans rejected: %s", "; ".join(errors[:5]))
        return web.Response(status=202)

    async def start(self, socket_path: Path, *, writer_gid: int | None = None) -> None:
        """Serve on `socket_path`, writable by root and the group `writer_gid` (the proxies') only."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        socket_path.unlink(missing_ok=True)
        await web.UnixSite(self._runner, str(socket_path)).start()
        if writer_gid is not None and os.geteuid() == 0:
            os.chown(socket_path, 0, writer_gid)
        os.chmod(socket_path, SOCKET_MODE)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
