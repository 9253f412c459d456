"""`gossamer traces`: recent traces from the control plane's Zipkin collector, as span trees."""

from __future__ import annotations

import time
from typing import Any

from gossamer.telemetry.tracing import service_of, span_tree


def _ms(micros: int) -> str:
    return f"{micros / 1000:.1f} ms"


def span_line(span: dict[str, Any]) -> str:
    """`service  KIND  operation  duration  code  -> upstream cluster` for one span."""
    tags = span.get("tags") or {}
    code = tags.get("http.status_code", "-")
    flags = tags.get("response_flags", "-")
    parts = [
        service_of(span) or "?",
        span.get("kind", "").lower() or "-",
        span.get("name") or "-",
        _ms(int(span.get("duration", 0))),
        code,
    ]
    if flags not in ("-", ""):
        parts.append(flags)
    if tags.get("error") == "true" and code == "-":
        parts.append("error")
    upstream = tags.get("upstream_cluster.name") or tags.get("upstream_cluster")
    if upstream:
        parts.append(f"-> {upstream}")
    return "  ".join(parts)


def format_trace(trace: dict[str, Any]) -> list[str]:
    spans = trace.get("spans") or []
    start = int(trace.get("timestamp", 0)) / 1e6
    when = time.strftime("%H:%M:%S", time.localtime(start)) + f".{int(start * 1000) % 1000:03d}" if start else "-"
    head = (
        f"trace {trace['traceId']}  {when}  {_ms(int(trace.get('duration', 0)))}  "
        f"{len(spans)} spans, {len(trace.get('services') or [])} services"
    )
    return [head, *(f"{'  ' * (depth + 1)}{span_line(span)}" for depth, span in span_tree(spans))]


def print_traces(body: dict[str, Any]) -> None:
    traces = body.get("traces") or []
    if not traces:
        print(
            "No traces yet (spans are reported once a Telemetry turns tracing on, as with Istio: "
            "samples/telemetry/tracing.yaml; is the request sampled? see randomSamplingPercentage)."
        )
        return
    for i, trace in enumerate(traces):
        if i:
            print()
        print("\n".join(format_trace(trace)))
