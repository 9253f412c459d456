"""MeshSnapshot: an immutable view of all config and the registry at one version.

Translation reads only the snapshot: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gossamer.registry.types import MeshService, Workload


@dataclass(frozen=True)
class MeshSnapshot:
    version: int
    # kind -> resources of that kind, ordered by creation (oldest first), then namespace/name
    resources: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    services: tuple[MeshService, ...] = ()
    workloads: tuple[Workload, ...] = ()

    def of_kind(self, kind: str) -> tuple[Any, ...]:
        return self.resources.get(kind, ())

    def service_by_host(self, hostname: str) -> MeshService | None:
        return next((s for s in self.services if s.hostname == hostname), None)

    def endpoints_of(self, service: MeshService) -> Iterable[Workload]:
        return (w for w in self.workloads if w.namespace == service.namespace and service.selects(w.label_map))
