"""MeshSnapshot: an immutable view of all config and the registry at one version.

Translation reads only the snapshot: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from gossamer.registry.types import MeshService, Workload
from gossamer.resources.base import Resource
from gossamer.resources.core import ConfigMap
from gossamer.resources.meshconfig import MeshConfig, mesh_config_of

T = TypeVar("T")
R = TypeVar("R", bound=Resource[Any])


def derived_tag(key: Any) -> Any:
    """The tag of a derived value's key: its first item (the key itself when it is not a tuple)."""
    return key[0] if type(key) is tuple else key


@dataclass(frozen=True)
class MeshSnapshot:
    version: int
    # kind -> resources of that kind, ordered by creation (oldest first), then namespace/name
    # (each of the kind's class, e.g. networking.VirtualService: the loader builds them so)
    resources: dict[str, tuple[Resource[Any], ...]] = field(default_factory=dict)
    services: tuple[MeshService, ...] = ()
    workloads: tuple[Workload, ...] = ()
    # Values derived from this snapshot alone, computed once and shared by every proxy group
    # translated from it (a push translates many groups from one snapshot). Grouped by the tag that starts
    # their key (the key itself when it is not a tuple): a change carries whole tags over to the next
    # snapshot at once (translate.incremental), not tens of thousands of values one by one.
    _derived: dict[Any, dict[Any, Any]] = field(default_factory=dict, init=False, compare=False, repr=False, hash=False)

    def derived(self, key: Any, compute: Callable[[], T]) -> T:
        values = self._derived_of(derived_tag(key))
        if key not in values:
            values[key] = compute()
        value: T = values[key]
        return value

    def _derived_of(self, tag: Any) -> dict[Any, Any]:
        values = self._derived.get(tag)
        if values is None:
            values = self._derived[tag] = {}
        return values

    def derived_get(self, key: Any, default: Any = None) -> Any:
        """The value derived under KEY, if it was (never computes it)."""
        values = self._derived.get(derived_tag(key))
        return default if values is None else values.get(key, default)

    def derived_set(self, key: Any, value: Any) -> None:
        self._derived_of(derived_tag(key))[key] = value

    def derived_values(self, tag: Any) -> dict[Any, Any]:
        """Every value derived under TAG so far: key -> value (the snapshot's own dict: do not modify)."""
        return self._derived.get(tag, {})

    def derived_tags(self) -> list[Any]:
        return list(self._derived)

    def carry_derived(self, tag: Any, values: dict[Any, Any]) -> int:
        """Take VALUES (derived under TAG by another snapshot) over, but for those derived here already.
        Returns how many were taken."""
        if not values:
            return 0
        mine = self._derived_of(tag)
        if not mine:
            mine.update(values)
            return len(values)
        new = {k: v for k, v in values.items() if k not in mine}
        mine.update(new)
        return len(new)

    @property
    def mesh_config(self) -> MeshConfig:
        """Istio's mesh-wide options (`ConfigMap istio-system/istio`, key `mesh`), parsed once."""
        return self.derived("mesh_config", lambda: mesh_config_of(self.of_kind(ConfigMap)))

    def of_kind(self, kind: type[R]) -> tuple[R, ...]:
        """The resources of KIND (a kind's class, e.g. `VirtualService`), typed as that class."""
        return cast(tuple[R, ...], self.resources.get(kind.KIND, ()))

    def service_by_host(self, hostname: str) -> MeshService | None:
        return self.derived("services_by_host", self._services_by_host).get(hostname)

    def hostnames_of_several_services(self) -> frozenset[str]:
        """Hostnames that more than one service has (ServiceEntries may share one), once per snapshot."""
        return self.derived("hostnames_of_several_services", self._hostnames_of_several_services)

    def _hostnames_of_several_services(self) -> frozenset[str]:
        seen: set[str] = set()
        several: set[str] = set()
        for service in self.services:
            (several if service.hostname in seen else seen).add(service.hostname)
        return frozenset(several)

    def _services_by_host(self) -> dict[str, MeshService]:
        out: dict[str, MeshService] = {}
        for s in self.services:
            out.setdefault(s.hostname, s)  # the first one, as a scan would find it
        return out

    def of_kind_in(self, kind: type[R], namespace: str) -> tuple[R, ...]:
        """Resources of KIND in NAMESPACE, in the snapshot's order (an index, built once)."""

        def index() -> dict[str, tuple[R, ...]]:
            out: dict[str, list[R]] = {}
            for r in self.of_kind(kind):
                out.setdefault(r.metadata.namespace, []).append(r)
            return {ns: tuple(rs) for ns, rs in out.items()}

        by_namespace: dict[str, tuple[R, ...]] = self.derived(("by_namespace", kind.KIND), index)
        return by_namespace.get(namespace, ())

    def endpoints_of(self, service: MeshService) -> Iterable[Workload]:
        """The workloads SERVICE selects, in the snapshot's order (once per snapshot and service)."""
        if not service.selector:
            return ()
        return self.derived(("endpoints_of", service.namespace, service.selector), lambda: self._select(service))

    def _select(self, service: MeshService) -> tuple[Workload, ...]:
        # Candidates: the workloads of the namespace carrying the selector's first label.
        by_label = self.derived("workloads_by_label", self._workloads_by_label)
        candidates = by_label.get((service.namespace, *service.selector[0]), ())
        return tuple(w for w in candidates if service.selects(w.label_map))

    def _workloads_by_label(self) -> dict[tuple[str, str, str], list[Workload]]:
        out: dict[tuple[str, str, str], list[Workload]] = {}
        for w in self.workloads:
            for k, v in w.labels:
                out.setdefault((w.namespace, k, v), []).append(w)
        return out

    def services_selecting(self, namespace: str, labels: dict[str, str]) -> list[MeshService]:
        """The services of NAMESPACE whose selector picks LABELS, in the snapshot's order."""
        index = self.derived("services_by_selector", self._services_by_selector)
        found = {id(s): (i, s) for k, v in labels.items() for i, s in index.get((namespace, k, v), ())}
        return [s for _, s in sorted(found.values(), key=lambda t: t[0]) if s.selects(labels)]

    def _services_by_selector(self) -> dict[tuple[str, str, str], list[tuple[int, MeshService]]]:
        out: dict[tuple[str, str, str], list[tuple[int, MeshService]]] = {}
        for i, s in enumerate(self.services):
            if s.selector:
                out.setdefault((s.namespace, *s.selector[0]), []).append((i, s))
        return out
