"""telemetry.istio.io (v1, v1alpha1): Telemetry. The spec keeps `tracing`, `metrics` and `accessLogging`
as plain mappings (translation reads them so); `validation.validate_telemetry` checks each entry against
the typed models below, Istio's schema."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from gossamer.resources.base import Duration, Model, Resource
from gossamer.resources.security import PolicyTargetReference, Selector

Mode = Literal["CLIENT_AND_SERVER", "CLIENT", "SERVER"]


class ProviderRef(Model):
    name: str


class ModeSelector(Model):
    mode: Mode = "CLIENT_AND_SERVER"


class CustomTagSource(Model):
    name: str
    default_value: str | None = None


class CustomTagLiteral(Model):
    value: str


class CustomTag(Model):
    literal: CustomTagLiteral | None = None
    environment: CustomTagSource | None = None
    header: CustomTagSource | None = None
    metadata: dict[str, Any] | None = None  # accepted, not applied (translation skips it)


class Tracing(Model):
    match: ModeSelector | None = None
    providers: list[ProviderRef] | None = None
    random_sampling_percentage: Annotated[float, Field(ge=0, le=100)] | None = None
    disable_span_reporting: bool | None = None
    custom_tags: dict[str, CustomTag] | None = None
    use_request_id_for_trace_sampling: bool | None = None
    enable_istio_tags: bool | None = None


class MetricSelector(Model):
    metric: (
        Literal[
            "ALL_METRICS",
            "REQUEST_COUNT",
            "REQUEST_DURATION",
            "REQUEST_SIZE",
            "RESPONSE_SIZE",
            "TCP_OPENED_CONNECTIONS",
            "TCP_CLOSED_CONNECTIONS",
            "TCP_SENT_BYTES",
            "TCP_RECEIVED_BYTES",
            "GRPC_REQUEST_MESSAGES",
            "GRPC_RESPONSE_MESSAGES",
        ]
        | None
    ) = None
    custom_metric: str | None = None
    mode: Mode = "CLIENT_AND_SERVER"


class TagOverride(Model):
    operation: Literal["UPSERT", "REMOVE"] = "UPSERT"
    value: str | None = None


class MetricsOverrides(Model):
    match: MetricSelector | None = None
    disabled: bool | None = None
    tag_overrides: dict[str, TagOverride] | None = None


class Metrics(Model):
    providers: list[ProviderRef] | None = None
    overrides: list[MetricsOverrides] | None = None
    reporting_interval: Duration | None = None


class AccessLogFilter(Model):
    expression: str


class AccessLogging(Model):
    match: ModeSelector | None = None
    providers: list[ProviderRef] | None = None
    disabled: bool | None = None
    filter: AccessLogFilter | None = None


ENTRY_MODELS: dict[str, type[Model]] = {"tracing": Tracing, "metrics": Metrics, "accessLogging": AccessLogging}


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
    return (
        metric == "ALL_METRICS"
        and not match.get("customMetric")
        and match.get("mode", "CLIENT_AND_SERVER") == "CLIENT_AND_SERVER"
    )


# ---------------------------------------------------------------------------- the kinds


class Telemetry(Resource[TelemetrySpec]):
    KIND = "Telemetry"
