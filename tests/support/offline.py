"""Build a MeshSnapshot from YAML alone: every Deployment replica becomes a ready pod.

Golden and simulation tests use it to translate without a runtime.
"""

from __future__ import annotations

from typing import Any

from gossamer.controlplane.workloads import (
    builtin_documents,
    is_router,
    mesh_service,
    named_ports,
    vip_candidates,
)
from gossamer.registry.serviceentry import registry_services, workload_entry_workloads
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy, Workload
from gossamer.resources.loader import parse_documents, resource_from_raw


def snapshot_from_yaml(text: str, filename: str = "in.yaml", *, with_gateway: bool = True) -> MeshSnapshot:
    resources, issues = parse_documents(text, filename)
    errors = [i for i in issues if i.level == "error"]
    assert not errors, "\n".join(str(e) for e in errors)
    return snapshot_from_resources(resources, with_gateway=with_gateway)


def snapshot_from_resources(resources: list[Any], *, with_gateway: bool = True) -> MeshSnapshot:
    if with_gateway:
        resources = [resource_from_raw(d, "<builtin>", 0) for d in builtin_documents()] + list(resources)
    by_kind: dict[str, list[Any]] = {}
    for r in resources:
        by_kind.setdefault(r.kind, []).append(r)
    vips = vip_candidates()
    services = tuple(mesh_service(s, next(vips)) for s in by_kind.get("Service", []))
    kinds = {k: tuple(v) for k, v in by_kind.items()}
    services += tuple(registry_services(kinds, lambda _ns, _key: next(vips)))
    workloads = []
    ip = 10
    for d in by_kind.get("Deployment", []):
        replicas = d.spec.replicas if d.spec.replicas is not None else 1
        for i in range(replicas):
            ip += 1
            workloads.append(
                Workload(
                    name=f"{d.metadata.name}-{i}",
                    namespace=d.metadata.namespace,
                    ip=f"10.244.1.{ip}",
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


def proxy_for(
    snapshot: MeshSnapshot,
    deployment: str,
    namespace: str = "default",
    *,
    ingress_port: int = 8080,
    ingress_tls_port: int = 8443,
    has_sds: bool = False,
) -> Proxy:
    """The proxy of a Deployment's pods, as its Envoy would identify itself."""
    for d in snapshot.of_kind("Deployment"):
        if d.metadata.name == deployment and d.metadata.namespace == namespace:
            annotations = d.spec.template.metadata.annotations or {}
            router = annotations.get("gossamer.io/proxy-type") == "router"
            return Proxy(
                type="router" if router else "sidecar",
                namespace=namespace,
                labels=tuple(sorted((d.spec.template.metadata.labels or {}).items())),
                ingress_port=ingress_port if router else 0,
                ingress_tls_port=ingress_tls_port if router else 0,
                host_netns="/proc/1/ns/net" if router else "",
                named_ports=tuple(sorted(named_ports(d).items())),
                has_sds=has_sds,
            )
    raise KeyError(f"no Deployment {namespace}/{deployment}")


def gateway_proxy(snapshot: MeshSnapshot) -> Proxy:
    return proxy_for(snapshot, "istio-ingressgateway", "istio-system")
