"""Telemetry (telemetry.istio.io): which proxies write access logs and report metrics.

As with Istio, the most specific Telemetry decides, field by field: one selecting the workload
(in its namespace), else its namespace's (no selector), else the mesh's (no selector, root
namespace istio-system). Enforced: `accessLogging[].disabled` (the `envoy` provider: the text log
on stdout) and `metrics[].overrides[].disabled` for all metrics (no `match`, or ALL_METRICS in
CLIENT_AND_SERVER mode): no access log entries go to the control plane's metrics for the proxy.
"""

from __future__ import annotations

from typing import Any

from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy
from gossamer.resources.telemetry import applies_to_all
from gossamer.translate.security import ROOT_NAMESPACE

ENVOY_PROVIDER = "envoy"


def _has_selector(spec: Any) -> bool:
    return spec.selector is not None and bool(spec.selector.match_labels)


def _selects(spec: Any, labels: dict[str, str]) -> bool:
    wanted = (spec.selector.match_labels or {}) if spec.selector is not None else {}
    return all(labels.get(k) == v for k, v in wanted.items())


def _access_logging_disabled(spec: Any) -> bool | None:
    entries = [e for e in (spec.access_logging or []) if isinstance(e, dict) and applies_to_all(e.get("match"))]
    if not entries:
        return None
    return any(bool(e.get("disabled")) for e in entries)


def _metrics_disabled(spec: Any) -> bool | None:
    decided: bool | None = None
    for entry in spec.metrics or []:
        if not isinstance(entry, dict):
            continue
        for override in entry.get("overrides") or []:
            if isinstance(override, dict) and applies_to_all(override.get("match")) and "disabled" in override:
                decided = bool(override["disabled"])
    return decided


def telemetry_off(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[bool, bool]:
    """(access logs off, metrics off) for this proxy."""
    labels = proxy.label_map
    policies = [t for t in snapshot.of_kind("Telemetry") if not (t.spec.target_ref or t.spec.target_refs)]
    workload = [t for t in policies if t.metadata.namespace == proxy.namespace and _has_selector(t.spec)
                and _selects(t.spec, labels)]
    namespace = [t for t in policies if t.metadata.namespace == proxy.namespace and not _has_selector(t.spec)]
    mesh = [t for t in policies if t.metadata.namespace == ROOT_NAMESPACE and not _has_selector(t.spec)]
    logs_off = metrics_off = False
    for level in (mesh, namespace, workload):  # least specific first: the most specific decides
        for t in level[:1]:
            logs = _access_logging_disabled(t.spec)
            if logs is not None:
                logs_off = logs
            metrics = _metrics_disabled(t.spec)
            if metrics is not None:
                metrics_off = metrics
    return logs_off, metrics_off
