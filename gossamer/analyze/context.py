"""The analysis context: every resource of one analysis, indexed the ways Istio's analyzers look
things up (by kind, by name, services by scoped FQDN, pods by labels), and how a finding becomes a
`Message` pinned to the field's file:line."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from gossamer.analyze.kinds import GATEWAY_API_GROUP
from gossamer.analyze.mesh import MeshConfig
from gossamer.analyze.messages import TYPES, Message
from gossamer.mesh import ROOT_NAMESPACE, host_matches, service_fqdn
from gossamer.resources.base import Resource, format_path, split_path

R = TypeVar("R", bound=Resource[Any])

EXPORT_ALL = "*"
EXPORT_LOCAL = "."
_FQDN = re.compile(r"^(.+)\.(.+)\.svc\.cluster\.local$")


def kind_key(r: Resource[Any]) -> str:
    """Index key of a resource's kind: Istio's Gateway is "Gateway", the Gateway API's "K8sGateway"."""
    if r.group == GATEWAY_API_GROUP and r.kind == "Gateway":
        return "K8sGateway"
    return r.kind


# ---------------------------------------------------------------------------- hosts (Istio's host.Name)


def as_dict(value: Any) -> dict[str, Any]:
    """A field of a plain document, when it is a mapping (else empty)."""
    return value if isinstance(value, dict) else {}


def to_fqdn(namespace: str, host: str) -> str:
    """A short name (no dot, no wildcard) is a Service of `namespace`; anything else is taken as written."""
    if host.startswith("*") or "." in host:
        return host
    return service_fqdn(host, namespace)


def name_from_host(default_namespace: str, host: str) -> tuple[str, str]:
    """(namespace, name) a host refers to: "name.ns.svc.cluster.local" -> (ns, name), else (default, host)."""
    m = _FQDN.match(host)
    if m:
        return m.group(2), m.group(1)
    return default_namespace, host


def selector_matches(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes' SelectorFromSet: every pair present; an empty selector selects everything."""
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def selector_string(selector: Mapping[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((selector or {}).items()))


# ---------------------------------------------------------------------------- services


@dataclass(frozen=True)
class ServicePort:
    number: int
    name: str
    protocol: str


@dataclass(frozen=True)
class ServiceView:
    """A Kubernetes Service or a ServiceEntry, as the destination of a route."""

    resource: Resource[Any]
    ports: tuple[ServicePort, ...]
    workload_selector: Mapping[str, str] | None = None


def _export_scopes(export_to: Sequence[str] | None, namespace: str) -> list[str]:
    if not export_to:
        return [EXPORT_ALL]
    out: list[str] = []
    for e in export_to:
        scope = namespace if e == EXPORT_LOCAL else e
        if scope == EXPORT_ALL:
            return [EXPORT_ALL]
        if scope not in out:
            out.append(scope)
    return out


# ---------------------------------------------------------------------------- the context


@dataclass
class Context:
    resources: Sequence[Resource[Any]]
    mesh: MeshConfig = field(default_factory=MeshConfig)
    istio_namespace: str = ROOT_NAMESPACE

    @cached_property
    def by_kind(self) -> dict[str, list[Resource[Any]]]:
        out: dict[str, list[Resource[Any]]] = {}
        for r in self.resources:
            out.setdefault(kind_key(r), []).append(r)
        return out

    def of(self, kind: str) -> list[Resource[Any]]:
        """The resources of KIND as read (kinds Gossamer does not run are plain documents: see `raw`)."""
        return self.by_kind.get(kind, [])

    def of_kind(self, kind: type[R]) -> list[R]:
        """The resources of a kind Gossamer runs, typed as its class (e.g. `VirtualService`). An object
        whose apiVersion is not the kind's group was read as a plain document: it is not one of them."""
        return [r for r in self.by_kind.get(kind.KIND, []) if isinstance(r, kind)]

    @cached_property
    def _by_name(self) -> dict[tuple[str, str, str], Resource[Any]]:
        return {(kind_key(r), r.namespace, r.name): r for r in self.resources}

    def find(self, kind: str, namespace: str, name: str) -> Resource[Any] | None:
        return self._by_name.get((kind, namespace, name))

    @cached_property
    def pods(self) -> list[Resource[Any]]:
        return self.of("Pod")

    def pods_matching(self, selector: Mapping[str, str] | None, namespace: str | None = None) -> list[Resource[Any]]:
        return [
            p
            for p in self.pods
            if (namespace is None or p.namespace == namespace) and selector_matches(selector, p.metadata.labels)
        ]

    @cached_property
    def service_hosts(self) -> dict[tuple[str, str], ServiceView]:
        """(scope, fqdn) -> service, as Istio's InitServiceEntryHostMap: ServiceEntry hosts per exportTo
        scope ("*" or a namespace), Kubernetes Services per `networking.istio.io/exportTo` annotation."""
        out: dict[tuple[str, str], ServiceView] = {}
        for r in self.of("ServiceEntry"):
            spec = r.spec
            view = ServiceView(
                r,
                tuple(ServicePort(p.number, p.name or "", (p.protocol or "").upper()) for p in spec.ports),
                spec.workload_selector.labels if spec.workload_selector else None,
            )
            for scope in _export_scopes(spec.export_to, r.namespace):
                for h in spec.hosts:
                    out[(scope, to_fqdn(r.namespace, h))] = view
        for r in self.of("Service"):
            view = ServiceView(r, tuple(ServicePort(p.port, p.name or "", p.protocol) for p in r.spec.ports))
            anno = r.metadata.annotations.get("networking.istio.io/exportTo", "")
            scopes = _export_scopes([s.strip() for s in anno.split(",")] if anno else None, r.namespace)
            for scope in scopes:
                out[(scope, to_fqdn(r.namespace, r.name))] = view
        return out

    def destination_service(self, source_ns: str, export_to: Sequence[str] | None, host: str) -> ServiceView | None:
        """The service a destination `host` written in `source_ns` reaches (Istio's GetDestinationHost)."""
        hosts = self.service_hosts
        fqdn = to_fqdn(source_ns, host)
        found = hosts.get((EXPORT_ALL, fqdn))
        if found:
            return found
        for e in export_to or [source_ns]:
            found = hosts.get((source_ns if e == EXPORT_LOCAL else e, fqdn))
            if found:
                return found
        for (scope, se_host), view in hosts.items():
            if not se_host.startswith("*") or scope not in (EXPORT_ALL, source_ns):
                continue
            if host_matches(se_host, host):
                return view
        return None

    # -- messages -------------------------------------------------------------
    def message(self, code: str, resource: Resource[Any], path: Sequence[str | int] | str, text: str) -> Message:
        """A finding on `resource`, pinned to the line of the field at `path` (a tuple or "spec.x[0].y")."""
        field_path: tuple[str | int, ...] = split_path(path) if isinstance(path, str) else tuple(path)
        return Message(
            TYPES[code],
            resource.kind,
            resource.namespace,
            resource.name,
            resource.source_file,
            resource.line_of(field_path) if field_path else resource.source_line,
            format_path(field_path),
            text,
        )
