"""Identify a connecting proxy from its Envoy node (Istio's node id and metadata)."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from gossamer.mesh import IngressPortMap, parse_ingress_port_map, parse_node_id
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
        ingress_port=int(meta.get("GOSSAMER_INGRESS_PORT") or 0) if proxy_type == "router" else 0,
        ingress_tls_port=int(meta.get("GOSSAMER_INGRESS_TLS_PORT") or 0) if proxy_type == "router" else 0,
        host_netns=str(meta.get("GOSSAMER_HOST_NETNS") or "") if proxy_type == "router" else "",
        ingress_port_map=_port_map(meta) if proxy_type == "router" else (),
        named_ports=tuple(sorted((named_ports or {}).items())),
        has_sds=str(meta.get("GOSSAMER_SDS") or "").lower() == "true",
    )


def _port_map(meta: dict[str, Any]) -> IngressPortMap:
    """`up --ingress-port-map`, as the runtime wrote it into the router's bootstrap (checked by `up`)."""
    text = str(meta.get("GOSSAMER_INGRESS_PORT_MAP") or "")
    try:
        return parse_ingress_port_map([text]) if text else ()
    except ValueError:
        return ()
