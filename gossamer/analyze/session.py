"""One `gossamer analyze` run: the files (or a cluster dump) over what is already there (the running
mesh's config and pods, or Gossamer's built-in gateway when nothing runs), the mesh config, and the
namespace selection; the same function serves the CLI offline and the control plane's API."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gossamer.analyze.loading import Loaded, load_for_analysis
from gossamer.analyze.mesh import MeshConfig, mesh_config_from_resources, parse_mesh_config
from gossamer.analyze.messages import Message
from gossamer.analyze.run import BUILTIN_SOURCE, run_analyzers, select_analyzers
from gossamer.resources.base import Metadata, Resource
from gossamer.resources.core import Pod

DERIVED_SOURCE = "<derived>"


@dataclass
class Result:
    messages: list[Message] = field(default_factory=list)
    not_analyzed: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "messages": [m.to_json() for m in self.messages],
            "notAnalyzed": dict(self.not_analyzed),
            "notes": list(self.notes),
            "unreadable": list(self.unreadable),
        }


def pod_document(
    name: str,
    namespace: str,
    labels: dict[str, str],
    *,
    sidecar: bool,
    annotations: dict[str, str] | None = None,
    service_account: str = "default",
    containers: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A Pod as Kubernetes would show it: the app containers, plus `istio-proxy` when it has a sidecar."""
    spec_containers = [dict(c) for c in containers] or [{"name": "app"}]
    if sidecar:
        spec_containers.append({"name": "istio-proxy", "image": "docker.io/istio/proxyv2"})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "annotations": dict(annotations or {}),
        },
        "spec": {"serviceAccountName": service_account, "containers": spec_containers},
    }


def pod_resource(doc: dict[str, Any], source: str) -> Resource[Any]:
    metadata = Metadata.model_validate(doc["metadata"])
    return Pod(api_version="v1", kind="Pod", metadata=metadata, spec=None, source_file=source, raw=doc)


def derived_pods(resources: Iterable[Resource[Any]]) -> list[Resource[Any]]:
    """The pods Gossamer's runtime makes of the Deployments (one per Deployment is enough for selectors)."""
    out: list[Resource[Any]] = []
    for d in resources:
        if d.kind != "Deployment" or d.spec.replicas == 0:
            continue
        template = d.spec.template
        annotations = dict(template.metadata.annotations)
        router = annotations.get("gossamer.io/proxy-type") == "router"
        sidecar = not router and annotations.get("sidecar.istio.io/inject", "true").lower() != "false"
        containers = [{"name": c.name, "image": c.image or ""} for c in template.spec.containers]
        if router:
            containers = [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2"}]
        doc = pod_document(
            f"{d.name}-0",
            d.namespace,
            dict(template.metadata.labels),
            sidecar=sidecar,
            annotations=annotations,
            service_account=template.spec.service_account_name,
            containers=containers,
        )
        out.append(pod_resource(doc, d.source_file if d.source_file == BUILTIN_SOURCE else DERIVED_SOURCE))
    return out


def builtin_resources() -> list[Resource[Any]]:
    """Gossamer's built-in ingress gateway (Service, Deployment), as `gossamer up` runs it."""
    from gossamer.controlplane.kubernetes import builtin_documents
    from gossamer.resources.loader import resource_from_raw

    return [
        resource_from_raw(doc, BUILTIN_SOURCE, 0)
        for doc in builtin_documents()
        if doc["kind"] in ("Service", "Deployment")
    ]


def analyze(
    files: Sequence[tuple[str, str]],
    *,
    namespace: str = "default",
    all_namespaces: bool = False,
    mesh_config: tuple[str, str] | None = None,
    existing: Sequence[Resource[Any]] | None = None,
    pods: Sequence[Resource[Any]] | None = None,
    analyzers: Sequence[str] | None = None,
) -> Result:
    """Analyze `files` = (name, text) over `existing` (None: nothing runs; Gossamer's built-in gateway
    is assumed, as istioctl assumes Istio's) and the running `pods`. `mesh_config` = (name, text) of a
    MeshConfig file (istioctl's --meshConfigFile); else the `istio` ConfigMap, else Istio's defaults."""
    loaded: Loaded = load_for_analysis(files, namespace)
    result = Result(not_analyzed=loaded.not_analyzed)
    base = list(existing) if existing is not None else builtin_resources()
    given = {(r.group, r.kind, r.namespace, r.name) for r in loaded.resources}
    resources = [r for r in base if (r.group, r.kind, r.namespace, r.name) not in given] + loaded.resources
    if pods is not None:
        resources += [p for p in pods if ("", "Pod", p.namespace, p.name) not in given]
    elif not any(r.kind == "Pod" for r in loaded.resources):
        # Gossamer manifests bring Deployments, not Pods: analyze the pods the runtime would run.
        resources += derived_pods(resources)
    else:  # a dump with its own Pods; the built-in gateway still runs (istioctl assumes Istio's too)
        resources += derived_pods([r for r in resources if r.source_file == BUILTIN_SOURCE])
    mesh: MeshConfig
    if mesh_config is not None:
        mesh = parse_mesh_config(mesh_config[1], mesh_config[0])
    else:
        mesh = mesh_config_from_resources(resources) or MeshConfig()
    messages = run_analyzers(
        resources, mesh, namespace=None if all_namespaces else namespace, analyzers=select_analyzers(analyzers)
    )
    schema = [m for m in loaded.messages if all_namespaces or not m.namespace or m.namespace == namespace]
    result.messages = sorted(
        [*schema, *(m for m in messages if m.file != DERIVED_SOURCE)], key=lambda m: (m.file, m.line, m.code)
    )
    result.notes = [str(w) for w in loaded.warnings]
    result.unreadable = [str(i) for i in loaded.unreadable]
    return result
