"""Workload analyzers: pods and Deployments running as the proxy's UID 1337 (IST0144); Services of one
meshed Deployment that use one port with two protocols (IST0116) or one targetPort on two ports
(IST0137). `pod_spec`/`in_mesh` are shared with the injection analyzers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from gossamer.analyze.analyzers.service import is_control_plane
from gossamer.analyze.context import Context, selector_matches
from gossamer.analyze.messages import Message
from gossamer.analyze.registry import analyzer
from gossamer.mesh import PROXY_UID
from gossamer.resources.apps import Deployment
from gossamer.resources.base import Resource

PROXY_CONTAINER = "istio-proxy"


def pod_spec(r: Resource[Any]) -> dict[str, Any]:
    """The pod spec of a Pod or of a Deployment's template, as plain data."""
    if r.kind == "Pod":
        spec = r.raw.get("spec")
    else:
        spec = ((r.raw.get("spec") or {}).get("template") or {}).get("spec")
    return spec if isinstance(spec, dict) else {}


def template_meta(r: Resource[Any]) -> tuple[Mapping[str, str], Mapping[str, str]]:
    """(labels, annotations) of a Pod, or of a Deployment's pod template."""
    if r.kind == "Pod":
        return r.metadata.labels, r.metadata.annotations
    meta = r.spec.template.metadata
    return meta.labels, meta.annotations


def containers(spec: Mapping[str, Any], *, init: bool = False) -> list[dict[str, Any]]:
    out = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    if init:
        out += [c for c in spec.get("initContainers") or [] if isinstance(c, dict)]
    return out


def proxy_image(spec: Mapping[str, Any]) -> str:
    for c in containers(spec, init=True):
        if c.get("name") == PROXY_CONTAINER:
            return str(c.get("image") or "")
    return ""


def in_mesh(ctx: Context, r: Resource[Any]) -> bool:
    """Istio's inMesh: an istio-proxy container with an image, else the sidecar.istio.io/inject label or
    annotation, else the namespace's istio-injection label."""
    if proxy_image(pod_spec(r)):
        return True
    labels, annotations = template_meta(r)
    for values in (labels, annotations):
        if "sidecar.istio.io/inject" in values:
            return values["sidecar.istio.io/inject"] == "true"
    ns = ctx.find("Namespace", "", r.namespace)
    return ns is not None and ns.metadata.labels.get("istio-injection") == "enabled"


def _runs_as_proxy(spec: Mapping[str, Any]) -> int:
    """How many places (pod, app containers) set runAsUser 1337."""
    found = 0
    security = spec.get("securityContext")
    if isinstance(security, dict) and security.get("runAsUser") == PROXY_UID:
        found += 1
    for c in containers(spec):
        if c.get("name") in (PROXY_CONTAINER, "istio-operator"):
            continue
        security = c.get("securityContext")
        if isinstance(security, dict) and security.get("runAsUser") == PROXY_UID:
            found += 1
    return found


@analyzer("applicationUID.Analyzer", "Checks invalid application UID", ("IST0144",))
def application_uid(ctx: Context) -> Iterator[Message]:
    for r in [*ctx.pods, *ctx.of_kind(Deployment)]:
        if is_control_plane(r):
            continue
        if _runs_as_proxy(pod_spec(r)):
            yield ctx.message(
                "IST0144",
                r,
                ("metadata", "name"),
                f"runs as UID {PROXY_UID}, the sidecar proxy's: its traffic would bypass the proxy",
            )


def _root_paths(spec: Mapping[str, Any]) -> list[tuple[str | int, ...]]:
    """Where a pod spec makes a container run as uid 0: a container's own `runAsUser: 0`, or the pod's
    when some container does not set its own (a container's runAsUser overrides the pod's)."""

    def run_as_user(obj: Any) -> Any:
        security = obj.get("securityContext") if isinstance(obj, dict) else None
        return security.get("runAsUser") if isinstance(security, dict) else None

    out: list[tuple[str | int, ...]] = []
    inherit = False
    for i, c in enumerate(spec.get("containers") or []):
        own = run_as_user(c)
        if own == 0:
            out.append(("containers", i, "securityContext", "runAsUser"))
        inherit = inherit or own is None
    if inherit and run_as_user(spec) == 0:
        out.insert(0, ("securityContext", "runAsUser"))
    return out


@analyzer("deployment.RootUserAnalyzer", "Checks for app containers that run as root", ("GSM0002",))
def root_user(ctx: Context) -> Iterator[Message]:
    """Apps run as an unprivileged user of their pod unless the spec says `runAsUser: 0`; then they get
    root, with the power to change their pod's traffic capture, read other pods' files and the mesh's."""
    for r in [*ctx.pods, *ctx.of_kind(Deployment)]:
        if is_control_plane(r):
            continue
        prefix: tuple[str | int, ...] = ("spec",) if r.kind == "Pod" else ("spec", "template", "spec")
        for path in _root_paths(pod_spec(r)):
            yield ctx.message(
                "GSM0002",
                r,
                prefix + path,
                "runs as root (runAsUser: 0): it can change its pod's traffic capture and read "
                "what root can; leave runAsUser unset to run as the pod's own unprivileged user",
            )


def _matching_services(ctx: Context, d: Resource[Any]) -> list[Resource[Any]]:
    labels = d.spec.template.metadata.labels
    return [
        s
        for s in ctx.of("Service")
        if s.spec.selector and s.namespace == d.namespace and selector_matches(s.spec.selector, labels)
    ]


@analyzer("deployment.MultiServiceAnalyzer", "Checks association between services and pods", ("IST0116", "IST0137"))
def service_association(ctx: Context) -> Iterator[Message]:
    for d in ctx.of_kind(Deployment):
        if d.metadata.labels.get("gateway.istio.io/managed") == "istio.io-mesh-controller" or not in_mesh(ctx, d):
            continue
        services = _matching_services(ctx, d)
        by_port: dict[int, dict[str, list[str]]] = {}
        by_target: dict[str, dict[int, str]] = {}
        for s in services:
            name = f"{s.namespace}/{s.name}"
            for p in s.spec.ports:
                by_port.setdefault(p.port, {}).setdefault(p.protocol or "TCP", []).append(name)
                target = str(p.target_port) if p.target_port not in (None, 0, "") else str(p.port)
                by_target.setdefault(target, {})[p.port] = name
        for port, protocols in sorted(by_port.items()):
            if len(protocols) > 1:
                names = sorted(n for ns in protocols.values() for n in ns)
                yield ctx.message(
                    "IST0116",
                    d,
                    ("metadata", "name"),
                    f"the Services {names} select its pods and use port {port} with different "
                    f"protocols ({', '.join(sorted(protocols))})",
                )
        for target, ports in sorted(by_target.items()):
            if len(ports) > 1:
                yield ctx.message(
                    "IST0137",
                    d,
                    ("metadata", "name"),
                    f"the Services {sorted(ports.values())} send targetPort {target} from different "
                    f"ports {sorted(ports)}: Services sharing a targetPort must use one port",
                )
