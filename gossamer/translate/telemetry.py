"""Telemetry (telemetry.istio.io): which proxies write access logs, report metrics and trace.

As with Istio, the most specific Telemetry decides, field by field: one selecting the workload
(in its namespace), else its namespace's (no selector), else the mesh's (no selector, root
namespace istio-system). Enforced: `accessLogging[].disabled` (the `envoy` provider: the text log
on stdout) and `metrics[].overrides[].disabled` for all metrics (no `match`, or ALL_METRICS in
CLIENT_AND_SERVER mode): no access log entries go to the control plane's metrics for the proxy.

Tracing (`tracing[]`, per side: `match.mode` CLIENT for outbound and gateway connection managers,
SERVER for inbound ones, CLIENT_AND_SERVER both): `disableSpanReporting`, `randomSamplingPercentage`
(Istio's default: 1%) and `customTags` (literal, header, environment; a more specific level replaces
the whole set) and `providers`: a mesh config `extensionProviders` entry of kind `zipkin` or
`opentelemetry` (or `defaultProviders.tracing`), reached through its service's outbound cluster;
without one, spans go to the control plane's own Zipkin collector (the default). As Istio since
1.22, spans are reported only once a Telemetry `tracing` entry or `defaultProviders.tracing` applies:
until then (`enableTracing`, the default) nothing is traced (no spans, no B3 headers).
Istio's own `istio.*` span tags are not added (each span names its proxy's `app.namespace`).
"""

from __future__ import annotations

from typing import Any, Literal

from gossamer.ir.types import Tracing, TracingProvider, TracingTag
from gossamer.mesh import ROOT_NAMESPACE, outbound_cluster_name
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy
from gossamer.resources.telemetry import Telemetry, TelemetrySpec, applies_to_all

ENVOY_PROVIDER = "envoy"

Side = Literal["client", "server"]


def _has_selector(spec: TelemetrySpec) -> bool:
    return spec.selector is not None and bool(spec.selector.match_labels)


def _selects(spec: TelemetrySpec, labels: dict[str, str]) -> bool:
    wanted = (spec.selector.match_labels or {}) if spec.selector is not None else {}
    return all(labels.get(k) == v for k, v in wanted.items())


def _access_logging_disabled(spec: TelemetrySpec) -> bool | None:
    entries = [e for e in (spec.access_logging or []) if isinstance(e, dict) and applies_to_all(e.get("match"))]
    if not entries:
        return None
    return any(bool(e.get("disabled")) for e in entries)


def _metrics_disabled(spec: TelemetrySpec) -> bool | None:
    decided: bool | None = None
    for entry in spec.metrics or []:
        if not isinstance(entry, dict):
            continue
        for override in entry.get("overrides") or []:
            if isinstance(override, dict) and applies_to_all(override.get("match")) and "disabled" in override:
                decided = bool(override["disabled"])
    return decided


def _levels(snapshot: MeshSnapshot, proxy: Proxy) -> list[TelemetrySpec]:
    """The Telemetry specs that apply to the proxy, least specific first (mesh, namespace, workload)."""
    return [t.spec for t in telemetry_levels(snapshot, proxy)]


def telemetry_levels(snapshot: MeshSnapshot, proxy: Proxy) -> list[Telemetry]:
    """The Telemetry resources that apply to the proxy, least specific first (mesh, namespace, workload)."""
    labels = proxy.label_map
    policies = [t for t in snapshot.of_kind(Telemetry) if not (t.spec.target_ref or t.spec.target_refs)]
    workload = [
        t
        for t in policies
        if t.metadata.namespace == proxy.namespace and _has_selector(t.spec) and _selects(t.spec, labels)
    ]
    namespace = [t for t in policies if t.metadata.namespace == proxy.namespace and not _has_selector(t.spec)]
    mesh = [t for t in policies if t.metadata.namespace == ROOT_NAMESPACE and not _has_selector(t.spec)]
    return [t for level in (mesh, namespace, workload) for t in level[:1]]


def telemetry_off(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[bool, bool]:
    """(access logs off, metrics off) for this proxy. Access logs: a Telemetry `accessLogging` entry
    decides; without one, the mesh config's accessLogFile (Istio's default profile: "", no log)."""
    logs_off, metrics_off = not snapshot.mesh_config.access_log_file, False
    for spec in _levels(snapshot, proxy):  # least specific first: the most specific decides
        logs = _access_logging_disabled(spec)
        if logs is not None:
            logs_off = logs
        metrics = _metrics_disabled(spec)
        if metrics is not None:
            metrics_off = metrics
    return logs_off, metrics_off


def _for_side(entry: dict[str, Any], side: Side) -> bool:
    match = entry.get("match")
    mode = match.get("mode", "CLIENT_AND_SERVER") if isinstance(match, dict) else "CLIENT_AND_SERVER"
    return mode == "CLIENT_AND_SERVER" or str(mode).lower() == side


_TAG_SOURCES: tuple[Literal["header", "environment"], ...] = ("header", "environment")


def custom_tags(tags: dict[str, Any]) -> list[TracingTag]:
    """Telemetry `customTags` (name -> {literal: {value}} | {header: {name, defaultValue}} |
    {environment: {name, defaultValue}}); entries of another shape are skipped."""
    out = []
    for name, body in tags.items():
        if not isinstance(body, dict):
            continue
        if isinstance(body.get("literal"), dict):
            out.append(TracingTag(str(name), "literal", str(body["literal"].get("value", ""))))
        for kind in _TAG_SOURCES:
            value = body.get(kind)
            if isinstance(value, dict) and value.get("name"):
                out.append(TracingTag(str(name), kind, str(value["name"]), str(value.get("defaultValue", ""))))
    return out


def tracing_for(snapshot: MeshSnapshot, proxy: Proxy, side: Side) -> Tracing | None:
    """The tracing of the proxy's connection managers on one side: None when off (disableSpanReporting,
    or enableTracing false without a Telemetry); `spans` false when no backend is configured."""
    disabled = False
    mesh = snapshot.mesh_config
    # Istio: randomSamplingPercentage, else the mesh config's defaultConfig.tracing.sampling (1%).
    sampling = mesh.trace_sampling
    tags: dict[str, Any] = {}
    configured = False  # a Telemetry `tracing` entry applies (else the mesh config's enableTracing decides)
    providers: list[str] = [str(n) for n in (mesh.default_providers.get("tracing") or []) if n]
    for spec in _levels(snapshot, proxy):
        for entry in spec.tracing or []:
            if not isinstance(entry, dict) or not _for_side(entry, side):
                continue
            configured = True
            if entry.get("disableSpanReporting") is not None:
                disabled = bool(entry["disableSpanReporting"])
            if entry.get("randomSamplingPercentage") is not None:
                sampling = float(entry["randomSamplingPercentage"])
            if isinstance(entry.get("customTags"), dict) and entry["customTags"]:
                tags = entry["customTags"]
            named = [str(p.get("name")) for p in entry.get("providers") or [] if isinstance(p, dict) and p.get("name")]
            if named:
                providers = named
    if disabled or (not configured and not mesh.enable_tracing):
        return None
    if not configured and not providers:
        # Istio since 1.22: without a Telemetry `tracing` entry or `defaultProviders.tracing` there is no
        # tracer: no spans, no B3 headers, none of their per-request cost (~20k instructions per request
        # per sidecar). A Telemetry turns spans on (the built-in collector unless it names one).
        return Tracing(sampling=min(100.0, max(0.0, sampling)), spans=False)
    return Tracing(
        sampling=min(100.0, max(0.0, sampling)),
        tags=tuple(sorted(custom_tags(tags), key=lambda t: t.tag)),
        provider=tracing_provider(snapshot, proxy, providers),
    )


ZIPKIN_PATH = "/api/v2/spans"
OTLP_PATH = "/v1/traces"


def tracing_provider(snapshot: MeshSnapshot, proxy: Proxy, names: list[str]) -> TracingProvider | None:
    """The first named `extensionProviders` entry Gossamer can send spans to (`zipkin:` or
    `opentelemetry:` with `service` and `port`), as Istio picks one; None: the built-in collector."""
    mesh = snapshot.mesh_config
    for name in names:
        provider = mesh.extension_provider(name)
        if provider is None or provider.kind not in ("zipkin", "opentelemetry"):
            continue
        settings = provider.settings
        service, port = str(settings.get("service") or ""), settings.get("port")
        if not service or not isinstance(port, int) or not 0 < port < 65536:
            continue
        host = service.split("/", 1)[1] if "/" in service else service  # Istio also takes "namespace/host"
        known = snapshot.service_by_host(host)
        if known is None or all(p.port != port for p in known.ports):
            continue  # no such service port: its cluster does not exist, and Envoy would reject the listener
        cluster = outbound_cluster_name(host, port)
        if provider.kind == "zipkin":
            return TracingProvider("zipkin", cluster, host, port, path=str(settings.get("path") or ZIPKIN_PATH))
        http = settings.get("http")
        app = proxy.label_map.get("app") or proxy.label_map.get("istio") or "unknown"
        return TracingProvider(
            "opentelemetry",
            cluster,
            host,
            port,
            path=str((http or {}).get("path") or OTLP_PATH) if isinstance(http, dict) else "",
            grpc=not isinstance(http, dict),
            service_name=f"{app}.{proxy.namespace}",
        )
    return None
