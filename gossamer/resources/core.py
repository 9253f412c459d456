"""core/v1 kinds: Namespace, ServiceAccount, Service, Secret, ConfigMap (and Pod, for `get` only)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from gossamer.resources.base import IntOrString, Model, Port, Resource


class NamespaceSpec(Model):
    finalizers: list[str] | None = None


class ServiceAccountSpec(Model):
    """ServiceAccount has no spec; its top-level fields are kept in `raw`."""


class ServicePort(Model):
    name: str | None = None
    port: Port
    target_port: IntOrString | None = None
    protocol: str = "TCP"  # TCP, UDP or SCTP: checked by validation (a dump may say otherwise)
    app_protocol: str | None = None
    node_port: int | None = None  # ignored locally


class ServiceSpec(Model):
    ports: list[ServicePort] = Field(default_factory=list)
    selector: dict[str, str] | None = None
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    cluster_ips: list[str] | None = Field(default=None, alias="clusterIPs")
    external_name: str | None = None
    external_ips: list[str] | None = Field(default=None, alias="externalIPs")
    load_balancer_ip: str | None = Field(default=None, alias="loadBalancerIP")
    load_balancer_source_ranges: list[str] | None = None
    load_balancer_class: str | None = None
    allocate_load_balancer_node_ports: bool | None = None
    session_affinity: str | None = None  # ignored
    session_affinity_config: dict[str, Any] | None = None  # ignored
    external_traffic_policy: str | None = None  # ignored
    internal_traffic_policy: str | None = None  # ignored
    health_check_node_port: int | None = None  # ignored
    ip_families: list[str] | None = None
    ip_family_policy: str | None = None
    publish_not_ready_addresses: bool | None = None
    traffic_distribution: str | None = None

    @property
    def headless(self) -> bool:
        return self.cluster_ip == "None"


class PodSpecView(Model):
    """Pods are produced from Deployments, never applied; this only exists so `get pods` works."""

    model_config = Model.model_config | {"extra": "allow"}


# ---------------------------------------------------------------------------- Secret

SECRET_TYPES = ("kubernetes.io/tls", "Opaque", "generic")
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
CA_CERT_KEY = "ca.crt"


def secret_data(raw: dict[str, Any]) -> dict[str, bytes]:
    """A Secret's values: `data` (base64) overlaid by `stringData` (plain), as the API server merges them.
    Values that are not valid base64 are skipped here (validation reports them)."""
    import base64
    import binascii

    out: dict[str, bytes] = {}
    data = raw.get("data")
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, str):
                try:
                    out[str(key)] = base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    continue
    string_data = raw.get("stringData")
    if isinstance(string_data, dict):
        for key, value in string_data.items():
            if isinstance(value, str):
                out[str(key)] = value.encode()
    return out


# ---------------------------------------------------------------------------- ConfigMap
# No spec: `data` (string values), `binaryData` (base64) and `immutable` are top-level fields, kept
# in `Resource.raw` (validated by `configmap.validate_config_map`).


def configmap_data(raw: dict[str, Any]) -> dict[str, str]:
    """A ConfigMap's `data` (string values only; validation reports the others)."""
    data = raw.get("data")
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, str)}


def configmap_binary_data(raw: dict[str, Any]) -> dict[str, bytes]:
    """A ConfigMap's `binaryData`, decoded (values that are not base64 are skipped)."""
    import base64
    import binascii

    data = raw.get("binaryData")
    out: dict[str, bytes] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, str):
                try:
                    out[str(key)] = base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    continue
    return out


# ---------------------------------------------------------------------------- the kinds


class Namespace(Resource[NamespaceSpec]):
    KIND = "Namespace"


class ServiceAccount(Resource[None]):
    KIND = "ServiceAccount"


class Service(Resource[ServiceSpec]):
    KIND = "Service"


class Secret(Resource[None]):
    KIND = "Secret"


class ConfigMap(Resource[None]):
    KIND = "ConfigMap"


class Pod(Resource[None]):
    KIND = "Pod"
