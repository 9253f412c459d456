"""Kubernetes objects for tests, built instead of repeated as inline YAML: a Deployment of one container
and the Service in front of it, as a user would write them (no namespace unless one is given)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml


def deployment(
    name: str,
    *,
    image: str = "busybox",
    command: Sequence[str] | None = None,
    port: int | None = None,
    replicas: int = 1,
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    pod: Mapping[str, Any] | None = None,
    **container: Any,
) -> dict[str, Any]:
    """A Deployment of one container NAME (labels app=NAME unless LABELS). With PORT: the container
    port and a TCP readiness probe on it. CONTAINER: further container fields (imagePullPolicy,
    securityContext, env, volumeMounts, ...), POD: further pod spec fields (volumes, ...), as
    Kubernetes spells them."""
    pod_labels = dict(labels or {"app": name})
    spec: dict[str, Any] = {"name": name, "image": image}
    if command is not None:
        spec["command"] = list(command)
    if port is not None:
        spec["ports"] = [{"containerPort": port}]
        spec["readinessProbe"] = {"tcpSocket": {"port": port}, "periodSeconds": 1}
    spec.update(container)
    template_meta: dict[str, Any] = {"labels": pod_labels}
    if annotations:
        template_meta["annotations"] = dict(annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, namespace),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": template_meta,
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [spec], **(pod or {})},
            },
        },
    }


def service(
    name: str,
    port: int,
    *,
    target_port: int | None = None,
    port_name: str = "http",
    selector: Mapping[str, str] | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    """A Service NAME on PORT (named PORT_NAME: Istio's protocol selection) for the pods app=NAME."""
    port_spec: dict[str, Any] = {"name": port_name, "port": port}
    if target_port is not None:
        port_spec["targetPort"] = target_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace),
        "spec": {"ports": [port_spec], "selector": dict(selector or {"app": name})},
    }


def manifest(*docs: Mapping[str, Any]) -> str:
    """DOCS as one multi-document YAML file's text."""
    return yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False)


def line_of(text: str, needle: str) -> int:
    """The 1-based line of TEXT where NEEDLE first appears (for `file:line` errors on a built manifest)."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise ValueError(f"{needle!r} not in the manifest")


def _meta(name: str, namespace: str | None) -> dict[str, Any]:
    return {"name": name, **({"namespace": namespace} if namespace else {})}
