"""The runtime's records on the wire (JSON over the API socket) and in its state record.

The control plane sends the desired state (DeploymentSpec, ServiceAddress, ServiceEndpoints); the
runtime reports PodStatus. pydantic turns the frozen dataclasses into JSON and back, keeping their
exact types (tuples, Paths), so a spec read back hashes to the same `template_hash`.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from gossamer.runtime.types import DeploymentSpec, PodStatus, ServiceAddress, ServiceEndpoints

_DEPLOYMENTS = TypeAdapter(list[DeploymentSpec])
_DEPLOYMENT = TypeAdapter(DeploymentSpec)
_SERVICES = TypeAdapter(list[ServiceAddress])
_ENDPOINTS = TypeAdapter(list[ServiceEndpoints])
_PODS = TypeAdapter(list[PodStatus])


def deployments_to_json(specs: list[DeploymentSpec]) -> list[Any]:
    return list(_DEPLOYMENTS.dump_python(specs, mode="json"))


def deployments_from_json(data: Any) -> list[DeploymentSpec]:
    return _DEPLOYMENTS.validate_python(data)


def deployment_to_json(spec: DeploymentSpec) -> dict[str, Any]:
    return dict(_DEPLOYMENT.dump_python(spec, mode="json"))


def deployment_from_json(data: Any) -> DeploymentSpec:
    return _DEPLOYMENT.validate_python(data)


def services_to_json(services: list[ServiceAddress]) -> list[Any]:
    return list(_SERVICES.dump_python(services, mode="json"))


def services_from_json(data: Any) -> list[ServiceAddress]:
    return _SERVICES.validate_python(data)


def endpoints_to_json(endpoints: list[ServiceEndpoints]) -> list[Any]:
    return list(_ENDPOINTS.dump_python(endpoints, mode="json"))


def endpoints_from_json(data: Any) -> list[ServiceEndpoints]:
    return _ENDPOINTS.validate_python(data)


def pods_to_json(pods: list[PodStatus]) -> list[Any]:
    return list(_PODS.dump_python(pods, mode="json"))


def pods_from_json(data: Any) -> list[PodStatus]:
    return _PODS.validate_python(data)
