"""Identify a connecting proxy from its Envoy node (Istio's node id and metadata)."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from gossamer.mesh import parse_node_id
from gossamer.registry.types import Proxy, ProxyType


def metadata_of(node: Any) -> dict[str, Any]:
    return json_format.MessageToDict(node.metadata) if node.HasField("metadata") else {}


def proxy_from_node(node: Any, named_ports: dict[str, int] | None = None) -> Proxy:
    """Node ids are Istio's (gossamer.mesh.node_id); the metadata's NAMESPACE wins over the id's."""
    meta = metadata_of(node)
    parsed = parse_node_id(node.id)
    proxy_type: ProxyType = "router" if parsed.proxy_type == "router" else "sidecar"
    labels = meta.get("LABELS") or {}
    namespace = meta.get("NAMESPACE") or (parsed.namespace or "default")
    return Proxy(
        type=proxy_type,
        namespace=namespace,
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        named_ports=tuple(sorted((named_ports or {}).items())),
        has_sds=str(meta.get("GOSSAMER_SDS") or "").lower() == "true",
    )
