"""Analysis of the running mesh: its stored config and the runtime's pods (as Kubernetes would show
them), with the same analyzers and messages as on files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gossamer.analyze.context import as_dict
from gossamer.analyze.kinds import analysis_kind
from gossamer.analyze.messages import Message
from gossamer.analyze.run import without_envoy_check
from gossamer.analyze.session import Result, analyze, pod_document, pod_resource
from gossamer.resources.base import Resource
from gossamer.resources.loader import parse_documents

RUNTIME_SOURCE = "<runtime>"


def runtime_pods(pods: Sequence[Any], stored: Sequence[Resource[Any]] = ()) -> list[Resource[Any]]:
    """`PodStatus`es of the runtime as Pod objects, with their Deployment's template (annotations,
    containers) where they have one."""
    deployments = {(d.namespace, d.name): d for d in stored if d.kind == "Deployment"}
    out: list[Resource[Any]] = []
    for p in pods:
        d = deployments.get((p.namespace, p.deployment))
        template = as_dict(as_dict(d.raw.get("spec")).get("template")) if d is not None else {}
        spec = as_dict(template.get("spec"))
        containers = [c for c in spec.get("containers") or [] if isinstance(c, dict) and c.get("name") != "istio-proxy"]
        doc = pod_document(
            p.name,
            p.namespace,
            dict(p.labels),
            sidecar=p.has_sidecar or p.proxy_type == "router",
            annotations=as_dict(as_dict(template.get("metadata")).get("annotations")),
            service_account=p.service_account,
            containers=containers,
        )
        if isinstance(spec.get("securityContext"), dict):
            doc["spec"]["securityContext"] = spec["securityContext"]
        out.append(pod_resource(doc, RUNTIME_SOURCE))
    return out


def with_field_lines(stored: Sequence[Resource[Any]]) -> list[Resource[Any]]:
    """The stored objects, each replaced by its parse from its source file when that file still holds
    it unchanged: stored objects only know their document's line, messages point at the field's."""
    by_file: dict[str, list[Resource[Any]]] = {}
    for r in stored:
        by_file.setdefault(r.source_file, []).append(r)
    out: list[Resource[Any]] = []
    for name, resources in by_file.items():
        fresh: dict[tuple[str, str, int], Resource[Any]] = {}
        path = Path(name)
        if name and not name.startswith("<") and path.is_file():
            try:
                parsed, _ = parse_documents(path.read_text(encoding="utf-8"), name, kinds=analysis_kind)
            except (OSError, UnicodeDecodeError):
                parsed = []
            fresh = {(p.kind, p.name, p.source_line): p for p in parsed}
        for r in resources:
            again = fresh.get((r.kind, r.name, r.source_line))
            same = again is not None and again.raw.get("spec") == r.raw.get("spec") and again.namespace == r.namespace
            out.append(again if same and again is not None else r)
    return out


def analyze_mesh(
    files: Sequence[tuple[str, str]],
    stored: Sequence[Resource[Any]],
    pods: Sequence[Any],
    *,
    namespace: str = "default",
    all_namespaces: bool = False,
    mesh_config: tuple[str, str] | None = None,
    analyzers: Sequence[str] | None = None,
) -> Result:
    return analyze(
        files,
        namespace=namespace,
        all_namespaces=all_namespaces,
        mesh_config=mesh_config,
        existing=with_field_lines(stored),
        pods=runtime_pods(pods, stored),
        analyzers=analyzers,
    )


def mesh_messages(stored: Sequence[Resource[Any]], pods: Sequence[Any]) -> list[Message]:
    """Every message about the running mesh's config, all namespaces (the dashboard's config view)."""
    return analyze_mesh(
        [], stored, pods, all_namespaces=True, analyzers=[a.name for a in without_envoy_check()]
    ).messages
