"""Apply-time analysis: the messages `gossamer analyze` gives (Istio's analyzers, `gossamer/analyze/`)
about the objects being applied, checked against the existing config, as warnings: Istio accepts such
config too, so analysis never rejects an apply."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from gossamer.analyze.mesh import MeshConfig, mesh_config_from_resources
from gossamer.analyze.run import run_analyzers, without_envoy_check
from gossamer.analyze.session import derived_pods
from gossamer.resources.issues import Issue

# Info messages (port naming, alpha annotations) are for `gossamer analyze`; apply shows the rest.
APPLY_LEVELS = ("Warning", "Error")


def analyze(new: Sequence[Any], existing: Iterable[Any], pods: Sequence[Any] | None = None) -> list[Issue]:
    """Warnings for `new` resources, checked against `existing` overridden by `new`; `pods` as Pod
    resources (None: the pods the Deployments make)."""
    merged = {r.key: r for r in existing}
    merged.update({r.key: r for r in new})
    resources = list(merged.values())
    resources += derived_pods(resources) if pods is None else list(pods)
    mesh = mesh_config_from_resources(resources) or MeshConfig()
    keys = {r.key for r in new}
    return [
        m.to_issue()
        for m in run_analyzers(resources, mesh, namespace=None, analyzers=without_envoy_check())
        if (m.kind, m.namespace, m.name) in keys and m.level in APPLY_LEVELS
    ]
