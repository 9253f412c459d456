"""Analysis of the running mesh: its stored config and the runtime's pods (as Kubernetes would show
them), with the same analyzers and messages as on files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gossamer.analyze.messages import Message
from gossamer.analyze.session import Result, analyze, pod_document, pod_resource
from gossamer.resources.base import Resource

RUNTIME_SOURCE = "<runtime>"


def runtime_pods(pods: Sequence[Any]) -> list[Resource]:
    """`PodStatus`es of the runtime as Pod objects."""
    return [pod_resource(pod_document(p.name, p.namespace, dict(p.labels), sidecar=p.has_sidecar or
                                      p.proxy_type == "router", service_account=p.service_account),
                         RUNTIME_SOURCE) for p in pods]


def analyze_mesh(files: Sequence[tuple[str, str]], stored: Sequence[Resource], pods: Sequence[Any], *,
                 namespace: str = "default", all_namespaces: bool = False,
                 mesh_config: tuple[str, str] | None = None, analyzers: Sequence[str] | None = None) -> Result:
    return analyze(files, namespace=namespace, all_namespaces=all_namespaces, mesh_config=mesh_config,
                   existing=stored, pods=runtime_pods(pods), analyzers=analyzers)


def mesh_messages(stored: Sequence[Resource], pods: Sequence[Any]) -> list[Message]:
    """Every message about the running mesh's config, all namespaces (the dashboard's config view)."""
    return analyze_mesh([], stored, pods, all_namespaces=True).messages
