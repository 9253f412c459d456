"""The kinds Gossamer accepts (and `Pod`, which it only shows), with their aliases."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from gossamer.resources import apps, configmap, core, networking, security, telemetry
from gossamer.resources import validation as v
from gossamer.resources.base import Resource
from gossamer.resources.validation import Finding

R = TypeVar("R", bound=Resource[Any])


@dataclass(frozen=True)
class KindInfo(Generic[R]):
    """One kind: its names, its class (what the loader builds) and its validator (which takes that class)."""

    group: str  # "" for core
    versions: tuple[str, ...]  # served versions, preferred first
    kind: str
    plural: str
    short_names: tuple[str, ...]
    namespaced: bool
    resource_class: type[R]  # what the loader builds (e.g. networking.VirtualService)
    validator: Callable[[R], list[Finding]]
    appliable: bool = True  # False: shown by `get`, never accepted as input (Pod)
    name_rule: str = "subdomain"  # metadata.name must be a DNS-1123 "subdomain" or "label"
    extra_top_level: tuple[str, ...] = ()  # top-level fields other than apiVersion/kind/metadata/spec/status

    @property
    def spec_model(self) -> type[BaseModel] | None:
        """None: no spec (ServiceAccount, Secret, ConfigMap, Pod)."""
        return self.resource_class.spec_model()

    @property
    def api_versions(self) -> tuple[str, ...]:
        return tuple(f"{self.group}/{ver}" if self.group else ver for ver in self.versions)

    @property
    def preferred_api_version(self) -> str:
        return self.api_versions[0]

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def full_name(self) -> str:
        """e.g. "virtualservices.networking.istio.io" (kubectl's resource.group form)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


_ISTIO_NET = ("v1", "v1beta1", "v1alpha3")
_ISTIO_SEC = ("v1", "v1beta1")

# Not annotated: mypy infers each row's class, so a validator that takes another kind's class is an error.
ALL_KINDS = (
    KindInfo(
        "",
        ("v1",),
        "Namespace",
        "namespaces",
        ("ns",),
        False,
        core.Namespace,
        v.validate_nothing,
        name_rule="label",
    ),
    KindInfo(
        "",
        ("v1",),
        "ServiceAccount",
        "serviceaccounts",
        ("sa",),
        True,
        core.ServiceAccount,
        v.validate_nothing,
        extra_top_level=("secrets", "imagePullSecrets", "automountServiceAccountToken"),
    ),
    KindInfo(
        "",
        ("v1",),
        "Service",
        "services",
        ("svc",),
        True,
        core.Service,
        v.validate_service,
        name_rule="label",
    ),
    KindInfo(
        "",
        ("v1",),
        "Secret",
        "secrets",
        (),
        True,
        core.Secret,
        v.validate_secret,
        extra_top_level=("type", "data", "stringData", "immutable"),
    ),
    KindInfo(
        "",
        ("v1",),
        "ConfigMap",
        "configmaps",
        ("cm",),
        True,
        core.ConfigMap,
        configmap.validate_config_map,
        extra_top_level=("data", "binaryData", "immutable"),
    ),
    KindInfo("", ("v1",), "Pod", "pods", ("po",), True, core.Pod, v.validate_nothing, appliable=False),
    KindInfo(
        "apps",
        ("v1",),
        "Deployment",
        "deployments",
        ("deploy",),
        True,
        apps.Deployment,
        v.validate_deployment,
    ),
    KindInfo(
        "networking.istio.io",
        _ISTIO_NET,
        "VirtualService",
        "virtualservices",
        ("vs",),
        True,
        networking.VirtualService,
        v.validate_virtual_service,
    ),
    KindInfo(
        "networking.istio.io",
        _ISTIO_NET,
        "DestinationRule",
        "destinationrules",
        ("dr",),
        True,
        networking.DestinationRule,
        v.validate_destination_rule,
    ),
    KindInfo(
        "networking.istio.io",
        _ISTIO_NET,
        "Gateway",
        "gateways",
        ("gw",),
        True,
        networking.Gateway,
        v.validate_gateway,
    ),
    KindInfo(
        "networking.istio.io",
        _ISTIO_NET,
        "ServiceEntry",
        "serviceentries",
        ("se",),
        True,
        networking.ServiceEntry,
        v.validate_service_entry,
    ),
    KindInfo(
        "networking.istio.io",
        _ISTIO_NET,
        "WorkloadEntry",
        "workloadentries",
        ("we",),
        True,
        networking.WorkloadEntry,
        v.validate_workload_entry,
    ),
    KindInfo(
        "networking.istio.io",
        _ISTIO_NET,
        "Sidecar",
        "sidecars",
        (),
        True,
        networking.Sidecar,
        v.validate_sidecar,
    ),
    KindInfo(
        "networking.istio.io",
        ("v1alpha3",),
        "EnvoyFilter",
        "envoyfilters",
        (),
        True,
        networking.EnvoyFilter,
        v.validate_envoy_filter,
    ),
    KindInfo(
        "security.istio.io",
        _ISTIO_SEC,
        "PeerAuthentication",
        "peerauthentications",
        ("pa",),
        True,
        security.PeerAuthentication,
        v.validate_peer_authentication,
    ),
    KindInfo(
        "security.istio.io",
        _ISTIO_SEC,
        "AuthorizationPolicy",
        "authorizationpolicies",
        ("ap",),
        True,
        security.AuthorizationPolicy,
        v.validate_authorization_policy,
    ),
    KindInfo(
        "security.istio.io",
        _ISTIO_SEC,
        "RequestAuthentication",
        "requestauthentications",
        ("ra",),
        True,
        security.RequestAuthentication,
        v.validate_request_authentication,
    ),
    KindInfo(
        "telemetry.istio.io",
        ("v1", "v1alpha1"),
        "Telemetry",
        "telemetries",
        ("telemetry",),
        True,
        telemetry.Telemetry,
        v.validate_telemetry,
    ),
)

_BY_NAME: dict[str, KindInfo[Any]] = {}
for _info in ALL_KINDS:
    for _alias in (
        _info.kind,
        _info.plural,
        *_info.short_names,
        _info.full_name,
        f"{_info.singular}.{_info.group}" if _info.group else _info.singular,
    ):
        _BY_NAME.setdefault(_alias.lower(), _info)
_BY_KIND: dict[str, KindInfo[Any]] = {info.kind: info for info in ALL_KINDS}


def lookup_kind(name: str) -> KindInfo[Any]:
    """Find a kind by name, plural, short name or plural.group, case-insensitively:
    "VirtualService", "virtualservices", "vs", "virtualservices.networking.istio.io", "po"."""
    info = _BY_NAME.get(name.strip().lower())
    if info is None:
        known = ", ".join(f"{i.plural} ({', '.join(i.short_names)})" if i.short_names else i.plural for i in ALL_KINDS)
        raise KeyError(f"unknown resource type {name!r}; known types: {known}")
    return info


def kind_for(kind: str) -> KindInfo[Any] | None:
    """Exact (case-sensitive) match on the `kind:` field of a document."""
    return _BY_KIND.get(kind)
