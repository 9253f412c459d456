"""Build a MeshSnapshot from YAML alone: every Deployment replica becomes a ready pod.

Golden and simulation tests use it to translate without a runtime.
"""

from __future__ import annotations

from typing import Any

from gossamer.controlplane.kubernetes import builtin_documents
from gossamer.controlplane.offline_snapshot import offline_proxy, offline_snapshot
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy
from gossamer.resources.apps import Deployment
from gossamer.resources.loader import parse_documents, resource_from_raw


def snapshot_from_yaml(text: str, filename: str = "in.yaml", *, with_gateway: bool = True) -> MeshSnapshot:
    resources, issues = parse_documents(text, filename)
    errors = [i for i in issues if i.level == "error"]
    assert not errors, "\n".join(str(e) for e in errors)
    return snapshot_from_resources(resources, with_gateway=with_gateway)


def snapshot_from_resources(resources: list[Any], *, with_gateway: bool = True) -> MeshSnapshot:
    if with_gateway:
        resources = [resource_from_raw(d, "<builtin>", 0) for d in builtin_documents()] + list(resources)
    return offline_snapshot(resources)


def proxy_for(
    snapshot: MeshSnapshot,
    deployment: str,
    namespace: str = "default",
    *,
    has_sds: bool = False,
) -> Proxy:
    """The proxy of a Deployment's pods, as its Envoy would identify itself."""
    for d in snapshot.of_kind(Deployment):
        if d.metadata.name == deployment and d.metadata.namespace == namespace:
            return offline_proxy(d, has_sds=has_sds)
    raise KeyError(f"no Deployment {namespace}/{deployment}")


def gateway_proxy(snapshot: MeshSnapshot) -> Proxy:
    return proxy_for(snapshot, "istio-ingressgateway", "istio-system")
