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
