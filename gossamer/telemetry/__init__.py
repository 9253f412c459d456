"""Istio's standard metrics, from the access log entries proxies stream to the control plane, and
distributed tracing: the spans proxies post to the control plane's Zipkin collector."""

from gossamer.telemetry.metrics import LABELS, MeshMetrics, Reporter
from gossamer.telemetry.service import AccessLogServicer
from gossamer.telemetry.tracing import SpanStore, ZipkinCollector

__all__ = ["LABELS", "AccessLogServicer", "MeshMetrics", "Reporter", "SpanStore", "ZipkinCollector"]
