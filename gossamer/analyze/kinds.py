"""What `gossamer analyze` reads: every kind Gossamer runs, plus what a cluster dump carries
(`kubectl get ... -o yaml`): Pods, ConfigMaps, webhook configurations, Nodes, CRDs, Ingress, Gateway
API objects, WasmPlugin, ProxyConfig, ... Those are read as plain documents (no schema of ours);
the analyzers that need them look at `Resource.raw`. Kinds no analyzer reads are loaded too and
listed once as "not analyzed"."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from gossamer.resources import validation as v
from gossamer.resources.base import Model, Resource
from gossamer.resources.kinds import KindInfo, kind_for


class AnyObject(Model):
    """The body of a kind we only read: any fields."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


class AnyResource(Resource[AnyObject]):
    """An object of a kind we only read (its KIND is in the object's `kind`)."""


GATEWAY_API_GROUP = "gateway.networking.k8s.io"

# Kinds some analyzer reads (group, kind); the others are loaded and reported as not analyzed.
ANALYZED: frozenset[tuple[str, str]] = frozenset(
    {
        ("", "Pod"),
        ("", "ConfigMap"),
        ("", "Node"),
        ("", "Namespace"),
        ("", "Service"),
        ("", "Secret"),
        ("", "ServiceAccount"),
        ("apps", "Deployment"),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        (GATEWAY_API_GROUP, "Gateway"),
        (GATEWAY_API_GROUP, "HTTPRoute"),
        (GATEWAY_API_GROUP, "GRPCRoute"),
        ("extensions.istio.io", "WasmPlugin"),
        ("networking.istio.io", "ProxyConfig"),
    }
)

# Kubernetes kinds without a namespace (metadata.namespace is dropped for them).
CLUSTER_SCOPED: frozenset[str] = frozenset(
    {
        "Namespace",
        "Node",
        "PersistentVolume",
        "StorageClass",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "APIService",
        "PriorityClass",
        "RuntimeClass",
        "IngressClass",
        "GatewayClass",
        "CSIDriver",
        "CSINode",
        "VolumeAttachment",
        "CertificateSigningRequest",
        "PodSecurityPolicy",
        "ComponentStatus",
        "FlowSchema",
        "PriorityLevelConfiguration",
        "ClusterIssuer",
    }
)


def _group_of(raw: dict[str, Any]) -> str:
    api_version = raw.get("apiVersion")
    return api_version.rpartition("/")[0] if isinstance(api_version, str) else ""


def _plain_kind(kind: str, raw: dict[str, Any]) -> KindInfo[Any]:
    api_version = raw.get("apiVersion")
    group, _, version = api_version.rpartition("/") if isinstance(api_version, str) else ("", "", "")
    extra = tuple(str(k) for k in raw if k not in ("apiVersion", "kind", "metadata", "spec", "status"))
    return KindInfo(
        group,
        (version,) if version else ("v1",),
        kind,
        kind.lower() + "s",
        (),
        kind not in CLUSTER_SCOPED,
        AnyResource,
        v.validate_nothing,
        name_rule="any",
        extra_top_level=extra,
    )


def analysis_kind(kind: str, raw: dict[str, Any]) -> KindInfo[Any]:
    """The kind lookup `gossamer analyze` gives the loader: never None."""
    info = kind_for(kind)
    group = _group_of(raw)
    if info is not None and info.group == group and kind not in ("Pod", "Secret"):
        return info
    # Pods (only shown by `get` otherwise), Secrets (a certificate that does not parse is a finding,
    # IST0161, not a reason to drop the Secret) and everything Gossamer does not run: read as is.
    return _plain_kind(kind, raw)


def is_analyzed(resource: Any) -> bool:
    info = kind_for(resource.kind)
    return (info is not None and info.group == resource.group) or (resource.group, resource.kind) in ANALYZED
