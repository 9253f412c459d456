"""Assemble a MeshSnapshot from the store and the runtime's pods.

The builder follows the store's change notifications instead of reading it: parsed resources are kept
in memory (re-parsed only when their resourceVersion changes) and service VIPs are allocated or released
when a Service or ServiceEntry changes - never while somebody reads. A snapshot is built once per event
(a config change or a pod change) and shared by every reader until the next one.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

from gossamer.controlplane.kubernetes import mesh_service, named_ports, vip_candidates
from gossamer.registry.serviceentry import registry_services, workload_entry_workloads
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import MeshService, Workload
from gossamer.resources.loader import resource_from_raw
from gossamer.runtime.types import PodStatus
from gossamer.store import Change, Store, StoredObject

Key = tuple[str, str, str]
_BY_NAMESPACE_AND_NAME = operator.attrgetter("namespace", "name")


class SnapshotBuilder:
    def __init__(self, store: Store) -> None:
        self._store = store
        # key -> (creation order, resourceVersion, parsed resource), as the store holds them
        self._objects: dict[Key, tuple[int, int, Any]] = {}
        for obj in store.objects():
            self._objects[obj.key] = (obj.created_index, obj.resource_version, self._parse(obj))
        self._resources: dict[str, tuple[Any, ...]] | None = None
        self._services: tuple[MeshService, ...] = ()
        self._pods: tuple[PodStatus, ...] | None = None
        self._workloads: tuple[Workload, ...] | None = None  # of self._pods: kept while they and Deployments are
        # Per pod: the workload built for it, with the pod (the runtime view's object) and its Deployment: the same
        # workload object while both are - a pod change builds one workload, and is seen to move one
        # (translate.incremental compares workloads by identity first).
        self._workload_of: dict[tuple[str, str], tuple[PodStatus, Any, Workload]] = {}
        self._snapshot: MeshSnapshot | None = None
        self._refresh_services()
        store.subscribe(self._on_store_change)

    @staticmethod
    def _parse(obj: StoredObject) -> Any:
        return resource_from_raw(obj.body, obj.source_file, obj.source_line)

    def _on_store_change(self, changes: list[Change]) -> None:
        for change in changes:
            obj = change.object
            if change.kind == "deleted":
                self._objects.pop(obj.key, None)
            else:
                self._objects[obj.key] = (obj.created_index, obj.resource_version, self._parse(obj))
        self._resources = None
        self._snapshot = None
        if any(c.object.kind in ("Deployment", "WorkloadEntry") for c in changes):
            self._workloads = None  # named ports and WorkloadEntries come from these
        if any(c.object.kind in ("Service", "ServiceEntry") for c in changes):
            self._refresh_services()

    def resources(self) -> dict[str, tuple[Any, ...]]:
        """kind -> resources, oldest first (as the store orders them)."""
        if self._resources is None:
            by_kind: dict[str, list[tuple[int, Any]]] = {}
            for (kind, _ns, _name), (created, _rv, resource) in self._objects.items():
                by_kind.setdefault(kind, []).append((created, resource))
            self._resources = {k: tuple(r for _, r in sorted(v, key=lambda t: t[0])) for k, v in by_kind.items()}
        return self._resources

    def deployment(self, namespace: str, name: str) -> Any | None:
        """The Deployment NAMESPACE/NAME, or None (a lookup, not a scan: every connecting proxy asks)."""
        entry = self._objects.get(("Deployment", namespace, name))
        return entry[2] if entry is not None else None

    def _refresh_services(self) -> None:
        """Services and ServiceEntry hosts with their VIPs; allocates and releases VIPs (store writes): the one
        place that does, on a store change."""
        resources = self.resources()
        vips = self._store.service_vips()
        out = []
        used: set[tuple[str, str]] = set()
        for svc in resources.get("Service", ()):
            key = (svc.metadata.namespace, svc.metadata.name)
            used.add(key)
            vip = vips.get(key) or self._store.allocate_vip(*key, vip_candidates())
            out.append(mesh_service(svc, vip))

        def allocate(namespace: str, key: str) -> str:
            used.add((namespace, key))
            return vips.get((namespace, key)) or self._store.allocate_vip(namespace, key, vip_candidates())

        out.extend(registry_services(resources, allocate))
        # A deleted Service gives its address back, a deleted ServiceEntry (or host) its auto-allocated one.
        for namespace, vip_name in vips:
            if (namespace, vip_name) not in used:
                self._store.release_vip(namespace, vip_name)
        self._services = tuple(out)

    def services(self) -> tuple[MeshService, ...]:
        return self._services

    def build(self, pods: Iterable[PodStatus]) -> MeshSnapshot:
        """The snapshot for the current config and PODS: the previous one while neither changed."""
        pods = tuple(pods)
        if self._snapshot is not None and pods == self._pods:
            return self._snapshot
        if self._workloads is None or pods != self._pods:
            self._workloads = self._build_workloads(pods)
        self._pods = pods
        self._snapshot = MeshSnapshot(
            version=self._store.revision(),
            resources=self.resources(),
            services=self._services,
            # The same tuple while pods and Deployments stay: a config change is then seen to move no pod.
            workloads=self._workloads,
        )
        return self._snapshot

    def _build_workloads(self, pods: tuple[PodStatus, ...]) -> tuple[Workload, ...]:
        resources = self.resources()
        deployments = {(d.metadata.namespace, d.metadata.name): d for d in resources.get("Deployment", ())}
        workloads = []
        built: dict[tuple[str, str], tuple[PodStatus, Any, Workload]] = {}
        known = self._workload_of
        for pod in pods:
            if not pod.ip:
                continue
            key = (pod.namespace, pod.name)
            deployment = deployments.get((pod.namespace, pod.deployment))
            found = known.get(key)
            if found is None or found[0] is not pod or found[1] is not deployment:
                found = (pod, deployment, _workload(pod, deployment))
            built[key] = found
            workloads.append(found[2])
        self._workload_of = built
        workloads.extend(workload_entry_workloads(resources.get("WorkloadEntry", ())))
        return tuple(sorted(workloads, key=_BY_NAMESPACE_AND_NAME))


def _workload(pod: PodStatus, deployment: Any | None) -> Workload:
    ports = tuple(sorted(named_ports(deployment).items())) if deployment is not None else ()
    return Workload(
        pod.name,
        pod.namespace,
        pod.ip,
        pod.labels,
        pod.service_account,
        pod.ready,
        pod.deployment,
        ports,
        has_sidecar=pod.has_sidecar,
        router=pod.proxy_type == "router",
    )
