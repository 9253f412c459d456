"""Istio's standard metrics, from the access log entries proxies stream to the control plane."""

from gossamer.telemetry.metrics import LABELS, MeshMetrics, Reporter
from gossamer.telemetry.service import AccessLogServicer

__all__ = ["LABELS", "AccessLogServicer", "MeshMetrics", "Reporter"]
