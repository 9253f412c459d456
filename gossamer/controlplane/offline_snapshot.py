"""The mesh a set of resources makes without a runtime: every Deployment replica a ready pod.

`apply`'s Envoy-rules check and `analyze` translate from it before anything runs; golden and
simulation tests use it to translate without a runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gossamer.controlplane.kubernetes import is_router, mesh_service, named_ports, vip_candidates
from gossamer.registry.serviceentry import registry_services, workload_entry_workloads
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy, Workload


def _pod_ip(n: int) -> str:
    """The n-th offline pod's address (n >= 1): 10.244.1.1 .. 10.244.1.249, then 10.244.2.1 ..."""
    return f"10.244.{1 + (n - 1) // 249}.{(n - 1) % 249 + 1}"


# The kinds the services and workloads of an offline snapshot come from.
REGISTRY_KINDS = frozenset({"Service", "ServiceEntry", "Deployment", "WorkloadEntry"})


def offline_snapshot(
    resources: Sequence[Any], *, every_replica: bool = True, registry_of: MeshSnapshot | None = None
) -> MeshSnapshot:
    """The snapshot of these resources; `every_replica=False` gives each Deployment one pod, which is
    enough where only the shape of the config matters (the Envoy-rules check). REGISTRY_OF: a snapshot
    whose resources of REGISTRY_KINDS are these ones (the same services and workloads: taken over)."""
    by_kind: dict[str, list[Any]] = {}
    for r in resources:
        by_kind.setdefault(r.kind, []).append(r)
    if registry_of is not None:
        kinds = {k: tuple(v) for k, v in by_kind.items()}
        return MeshSnapshot(version=1, resources=kinds, services=registry_of.services, workloads=registry_of.workloads)
    vips = vip_candidates()
    services = tuple(mesh_service(s, next(vips)) for s in by_kind.get("Service", []))
    kinds = {k: tuple(v) for k, v in by_kind.items()}
    services += tuple(registry_services(kinds, lambda _ns, _key: next(vips)))
    workloads = []
    ip = 10
    for d in by_kind.get("Deployment", []):
        replicas = d.spec.replicas if d.spec.replicas is not None else 1
        for i in range(replicas if every_replica else 1):
            ip += 1
            workloads.append(
                Workload(
                    name=f"{d.metadata.name}-{i}",
                    namespace=d.metadata.namespace,
                    ip=_pod_ip(ip),
                    labels=tuple(sorted((d.spec.template.metadata.labels or {}).items())),
                    service_account=d.spec.template.spec.service_account_name or "default",
                    ready=True,
                    deployment=d.metadata.name,
                    named_ports=tuple(sorted(named_ports(d).items())),
                    router=is_router(d),
                )
            )
    workloads.extend(workload_entry_workloads(by_kind.get("WorkloadEntry", [])))
    return MeshSnapshot(version=1, resources=kinds, services=services, workloads=tuple(workloads))


def offline_proxy(deployment: Any, *, has_sds: bool = True) -> Proxy:
    """The proxy of a Deployment's pods, as its Envoy would identify itself (the gateway by its annotation)."""
    template = deployment.spec.template
    router = is_router(deployment)
    return Proxy(
        type="router" if router else "sidecar",
        namespace=deployment.metadata.namespace,
        labels=tuple(sorted((template.metadata.labels or {}).items())),
        named_ports=tuple(sorted(named_ports(deployment).items())),
        has_sds=has_sds,
    )
