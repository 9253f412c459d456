"""telemetry.istio.io (v1, v1alpha1): Telemetry, with loosely typed bodies for now."""

from __future__ import annotations

from typing import Any

from gossamer.resources.base import Model
from gossamer.resources.security import PolicyTargetReference, Selector


class TelemetrySpec(Model):
    selector: Selector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] | None = None
    tracing: list[dict[str, Any]] | None = None
    metrics: list[dict[str, Any]] | None = None
    access_logging: list[dict[str, Any]] | None = None


def applies_to_all(match: Any) -> bool:
    """A metrics override / access log `match` that covers every metric and both sides."""
    if not match:
        return True
    if not isinstance(match, dict):
        return False
    metric = match.get("metric", "ALL_METRICS")
    return (metric == "ALL_METRICS" and not match.get("customMetric")
            and match.get("mode", "CLIENT_AND_SERVER") == "CLIENT_AND_SERVER")
