"""The mesh config the analyzers read (Istio's MeshConfig): from `--meshConfigFile`, else from the
ConfigMap `istio` in the Istio namespace (`data.mesh`), else Istio's defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from gossamer.mesh import ROOT_NAMESPACE

ISTIO_NAMESPACE = ROOT_NAMESPACE
MESH_CONFIGMAP = "istio"


@dataclass(frozen=True)
class MeshConfig:
    raw: dict[str, Any] = field(default_factory=dict)
    source: str = "<default>"

    @property
    def root_namespace(self) -> str:
        return str(self.raw.get("rootNamespace") or ISTIO_NAMESPACE)

    @property
    def ingress_service(self) -> str:
        return str(self.raw.get("ingressService") or "istio-ingressgateway")

    @property
    def ingress_controller_mode(self) -> str:
        return str(self.raw.get("ingressControllerMode") or "STRICT")

    @property
    def extension_providers(self) -> list[dict[str, Any]]:
        providers = self.raw.get("extensionProviders")
        return [p for p in providers if isinstance(p, dict)] if isinstance(providers, list) else []

    @property
    def default_providers(self) -> dict[str, Any]:
        value = self.raw.get("defaultProviders")
        return value if isinstance(value, dict) else {}

    @property
    def default_config(self) -> dict[str, Any]:
        value = self.raw.get("defaultConfig")
        return value if isinstance(value, dict) else {}


def parse_mesh_config(text: str, source: str) -> MeshConfig:
    """A MeshConfig YAML document (what `--meshConfigFile` and the ConfigMap's `mesh` key hold).
    Raises ValueError when it is not a mapping."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as e:
        raise ValueError(f"{source}: not a YAML mesh config: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a mesh config must be a mapping, got {type(data).__name__}")
    # A whole ConfigMap given as the mesh config file: use its `mesh` key.
    if data.get("kind") == "ConfigMap" and isinstance(data.get("data"), dict):
        return parse_mesh_config(str(data["data"].get("mesh") or ""), source)
    return MeshConfig(data, source)


def mesh_config_from_resources(resources: list[Any], istio_namespace: str = ISTIO_NAMESPACE) -> MeshConfig | None:
    for r in resources:
        if r.kind == "ConfigMap" and r.namespace == istio_namespace and r.name == MESH_CONFIGMAP:
            data = r.raw.get("data")
            if isinstance(data, dict) and isinstance(data.get("mesh"), str):
                try:
                    return parse_mesh_config(data["mesh"], f"{r.source_file}:{r.source_line}")
                except (ValueError, yaml.YAMLError):
                    return None
    return None
