"""Apply-time image checks: a Deployment whose image cannot be obtained is refused with file:line.

Containers with a `command` run on the host's filesystem and need no image; the others run their
image, which is obtained here (into the shared cache, as `imagePullPolicy` says) so that a missing
image is an `apply` error instead of a pod that never starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gossamer.resources.apps import Container, Deployment
from gossamer.resources.base import Resource
from gossamer.resources.issues import Issue
from gossamer.runtime.images import ImageCache, ImageError

BUILTIN_SOURCE = "<builtin>"


def manifest_dir(resource: Resource[Any]) -> Path | None:
    """The folder of the manifest a resource came from (relative commands and image paths start there)."""
    source = resource.source_file
    if not source or source.startswith("<"):
        return None
    return Path(source).resolve().parent


def image_containers(deployment: Deployment) -> Iterable[tuple[int, Container]]:
    """(index, container) of the containers that run their image (no `command`)."""
    for i, c in enumerate(deployment.spec.template.spec.containers):
        if not c.command:
            yield i, c


def image_issues(resources: Iterable[Resource[Any]], cache: ImageCache) -> list[Issue]:
    issues: list[Issue] = []
    for r in resources:
        if not isinstance(r, Deployment) or r.source_file == BUILTIN_SOURCE or _is_router(r):
            continue
        for i, c in image_containers(r):
            field = f"spec.template.spec.containers[{i}].image"
            if not c.image:
                issues.append(
                    Issue(
                        "error",
                        r.source_file,
                        r.line_of(f"spec.template.spec.containers[{i}]"),
                        r.kind,
                        r.name,
                        field,
                        "a container needs an image or a command",
                    )
                )
                continue
            try:
                cache.ensure(c.image, c.image_pull_policy or "IfNotPresent", manifest_dir(r))
            except ImageError as exc:
                issues.append(
                    Issue(
                        "error", r.source_file, r.line_of(field), r.kind, r.name, field, f"cannot pull {c.image}: {exc}"
                    )
                )
    return issues


def _is_router(deployment: Deployment) -> bool:
    """Gateway pods run Envoy only: their image is never run."""
    annotations = deployment.spec.template.metadata.annotations or {}
    return annotations.get("gossamer.io/proxy-type") == "router"
