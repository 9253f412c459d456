"""Assemble a MeshSnapshot from the store and the runtime's pods."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gossamer.controlplane.workloads import mesh_service, named_ports, vip_candidates
from gossamer.registry.serviceentry import VIP_KEY_PREFIX, registry_services, workload_entry_workloads
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import MeshService, Workload
from gossamer.resources.loader import resource_from_raw
from gossamer.runtime.types import PodStatus
from gossamer.store import Store, StoredObject


class SnapshotBuilder:
    """Keeps parsed resources by resourceVersion so a snapshot costs no re-parsing."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._parsed: dict[tuple[str, str, str], tuple[int, Any]] = {}

    def parsed(self, obj: StoredObject) -> Any:
        cached = self._parsed.get(obj.key)
        if cached is not None and cached[0] == obj.resource_version:
            return cached[1]
        resource = resource_from_raw(obj.body, obj.source_file, obj.source_line)
        self._parsed[obj.key] = (obj.resource_version, resource)
        return resource

    def resources(self) -> dict[str, tuple[Any, ...]]:
        by_kind: dict[str, list[Any]] = {}
        for obj in self._store.objects():
            by_kind.setdefault(obj.kind, []).append(self.parsed(obj))
        return {k: tuple(v) for k, v in by_kind.items()}

    def services(self, resources: dict[str, tuple[Any, ...]]) -> tuple[MeshService, ...]:
        vips = self._store.service_vips()
        out = []
        for svc in resources.get("Service", ()):
            key = (svc.metadata.namespace, svc.metadata.name)
            vip = vips.get(key) or self._store.allocate_vip(*key, vip_candidates())
            out.append(mesh_service(svc, vip))
        used: set[tuple[str, str]] = set()

        def allocate(namespace: str, key: str) -> str:
            used.add((namespace, key))
            return vips.get((namespace, key)) or self._store.allocate_vip(namespace, key, vip_candidates())

        out.extend(registry_services(resources, allocate))
        # A deleted ServiceEntry (or host) gives its auto-allocated address back.
        for namespace, vip_name in vips:
            if vip_name.startswith(VIP_KEY_PREFIX) and (namespace, vip_name) not in used:
                self._store.release_vip(namespace, vip_name)
        return tuple(out)

    def build(self, pods: Iterable[PodStatus]) -> MeshSnapshot:
        resources = self.resources()
        deployments = {(d.metadata.namespace, d.metadata.name): d for d in resources.get("Deployment", ())}
        workloads = []
        for pod in pods:
            if not pod.ip:
                continue
            deployment = deployments.get((pod.namespace, pod.deployment))
            ports = tuple(sorted(named_ports(deployment).items())) if deployment is not None else ()
            workloads.append(Workload(pod.name, pod.namespace, pod.ip, pod.labels, pod.service_account,
                                      pod.ready, pod.deployment, ports,
                                      has_sidecar=pod.has_sidecar, router=pod.proxy_type == "router"))
        workloads.extend(workload_entry_workloads(resources.get("WorkloadEntry", ())))
        return MeshSnapshot(
            version=self._store.revision(),
            resources=resources,
            services=self.services(resources),
            workloads=tuple(sorted(workloads, key=lambda w: (w.namespace, w.name))),
        )
