"""Beyond istioctl: what Envoy would reject. Every proxy's config is built from the analyzed resources
(as `gossamer apply` builds it) and checked against Envoy's own rules; each violation is reported on
the resource that brings it, an EnvoyFilter's patch included (`controlplane/envoycheck.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gossamer.analyze.context import Context
from gossamer.analyze.messages import Message
from gossamer.analyze.registry import analyzer
from gossamer.controlplane.envoycheck import check_rejections
from gossamer.controlplane.kubernetes import BUILTIN_SOURCE
from gossamer.resources.base import Resource
from gossamer.resources.kinds import kind_for


def _runs(r: Resource[Any]) -> bool:
    """A resource of a kind Gossamer runs (not one only read for analysis: Pods, Gateway API, ...)."""
    info = kind_for(r.kind)
    return info is not None and info.appliable and r.api_version in info.api_versions


@analyzer("envoy.EnvoyRejectAnalyzer", "Builds each proxy's config and checks it against Envoy's rules", ("GSM0001",))
def envoy_rejects(ctx: Context) -> Iterator[Message]:
    resources = [r for r in ctx.resources if _runs(r)]
    existing = [r for r in resources if r.source_file == BUILTIN_SOURCE]
    new = [r for r in resources if r.source_file != BUILTIN_SOURCE]
    for rejection in check_rejections(new, existing):
        issue = rejection.issue()
        yield ctx.message("GSM0001", rejection.resource, rejection.path, issue.message)
