"""Annotation analyzers on Namespaces, Services, Pods and Deployments: unknown Istio annotations
(IST0108), annotations on the wrong kind (IST0107), invalid values (IST0125), deprecated ones
(IST0135); and, not run by default as in istioctl, alpha-phase ones (IST0136)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from typing import Any

import yaml

from gossamer.analyze.annotation_catalogue import ANNOTATIONS
from gossamer.analyze.context import Context
from gossamer.analyze.messages import Message
from gossamer.analyze.registry import analyzer
from gossamer.resources.base import Resource

ALWAYS_IGNORED = {"sidecar.istio.io/status", "gateway.istio.io/controller-version", "istio.io/rev"}
_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_INTERFACE = re.compile(r"^[^\s/]{1,15}$")


def _cidrs(value: str) -> None:
    for cidr in value.split(",") if value else []:
        try:
            ipaddress.ip_network(cidr, strict=False)
            if "/" not in cidr:
                raise ValueError
        except ValueError:
            raise ValueError(f"{cidr!r} is not a CIDR") from None


def _ports(value: str) -> None:
    for port in value.strip().split(",") if value.strip() else []:
        if not port.strip().isdigit() or int(port) > 65535:
            raise ValueError(f"{port!r} is not a port")


def _uint32(value: str) -> None:
    if not value.isdigit() or int(value) >= 2**32:
        raise ValueError(f"{value!r} is not an unsigned integer")


def _bool(value: str) -> None:
    if value not in ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"):
        raise ValueError(f"{value!r} is not a boolean")


def _interception(value: str) -> None:
    if value not in ("REDIRECT", "TPROXY", "NONE"):
        raise ValueError(f"interceptionMode must be REDIRECT, TPROXY or NONE, got {value!r}")


def _quantity(value: str) -> None:
    if not _QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a resource quantity")


def _interfaces(value: str) -> None:
    for name in value.split(",") if value else []:
        if not _INTERFACE.match(name.strip()):
            raise ValueError(f"{name!r} is not an interface name")


def _proxy_config(value: str) -> None:
    try:
        data = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ValueError(f"not YAML: {e}") from None
    if data is not None and not isinstance(data, dict):
        raise ValueError("a ProxyConfig must be a mapping")


VALIDATORS: dict[str, Callable[[str], None]] = {
    "sidecar.istio.io/interceptionMode": _interception,
    "status.sidecar.istio.io/port": lambda v: _ports(v) if v.strip() else _ports("x"),
    "readiness.status.sidecar.istio.io/initialDelaySeconds": _uint32,
    "readiness.status.sidecar.istio.io/periodSeconds": _uint32,
    "readiness.status.sidecar.istio.io/failureThreshold": _uint32,
    "traffic.sidecar.istio.io/includeOutboundIPRanges": lambda v: None if v == "*" else _cidrs(v),
    "traffic.sidecar.istio.io/excludeOutboundIPRanges": _cidrs,
    "traffic.sidecar.istio.io/includeInboundPorts": lambda v: None if v == "*" else _ports(v),
    "traffic.sidecar.istio.io/excludeInboundPorts": _ports,
    "traffic.sidecar.istio.io/excludeOutboundPorts": _ports,
    "traffic.sidecar.istio.io/excludeInterfaces": _interfaces,
    "traffic.sidecar.istio.io/kubevirtInterfaces": _interfaces,
    "istio.io/reroute-virtual-interfaces": _interfaces,
    "prometheus.istio.io/merge-metrics": _bool,
    "proxy.istio.io/config": _proxy_config,
    "sidecar.istio.io/proxyCPU": _quantity,
    "sidecar.istio.io/proxyMemory": _quantity,
    "sidecar.istio.io/proxyCPULimit": _quantity,
    "sidecar.istio.io/proxyMemoryLimit": _quantity,
}
KINDS = ("Namespace", "Service", "Pod", "Deployment")


def is_istio_annotation(name: str) -> bool:
    return name == "kubernetes.io/ingress.class" or name.split("/", 1)[0].endswith("istio.io")


def _annotated(ctx: Context) -> Iterator[Resource[Any]]:
    for kind in KINDS:
        yield from ctx.of(kind)


@analyzer(
    "annotations.K8sAnalyzer",
    "Checks graph resources for misplaced and invalid Istio annotations",
    ("IST0107", "IST0108", "IST0125", "IST0135"),
)
def istio_annotations(ctx: Context) -> Iterator[Message]:
    for r in _annotated(ctx):
        for name, value in r.metadata.annotations.items():
            if not is_istio_annotation(name) or name in ALWAYS_IGNORED:
                continue
            path = ("metadata", "annotations", name)
            known = ANNOTATIONS.get(name)
            if known is None:
                yield ctx.message("IST0108", r, path, f"unknown Istio annotation {name!r}")
                continue
            _status, deprecated, kinds = known
            if deprecated and not (name == "sidecar.istio.io/inject" and name in r.metadata.labels):
                extra = " (use the sidecar.istio.io/inject label)" if name == "sidecar.istio.io/inject" else ""
                yield ctx.message("IST0135", r, path, f"annotation {name!r} is deprecated{extra}")
            if "Any" in kinds:
                continue
            if r.kind not in kinds:
                yield ctx.message(
                    "IST0107", r, path, f"annotation {name!r} only applies to {', '.join(kinds)}, not {r.kind}"
                )
                continue
            check = VALIDATORS.get(name)
            if check is not None:
                try:
                    check(value)
                except ValueError as e:
                    yield ctx.message("IST0125", r, path, f"invalid value of {name}: {e}")


def _cni_enabled(r: Resource[Any]) -> bool:
    spec = r.raw.get("spec") if isinstance(r.raw.get("spec"), dict) else {}
    init = spec.get("initContainers") or [] if isinstance(spec, dict) else []
    return not any(isinstance(c, dict) and c.get("name") == "istio-init" for c in init)


# Set by the injector when the CNI plugin is in use; not worth a message then.
_CNI_DEFAULTS = {
    "sidecar.istio.io/interceptionMode",
    "traffic.sidecar.istio.io/includeInboundPorts",
    "traffic.sidecar.istio.io/excludeInboundPorts",
    "traffic.sidecar.istio.io/includeOutboundIPRanges",
    "traffic.sidecar.istio.io/excludeOutboundIPRanges",
    "traffic.sidecar.istio.io/excludeOutboundPorts",
    "traffic.sidecar.istio.io/excludeInterfaces",
    "traffic.sidecar.istio.io/kubevirtInterfaces",
    "istio.io/reroute-virtual-interfaces",
}


@analyzer(
    "annotations.AlphaAnalyzer",
    "Checks for alpha Istio annotations in Kubernetes resources",
    ("IST0136",),
    default=False,
)
def alpha_annotations(ctx: Context) -> Iterator[Message]:
    for r in _annotated(ctx):
        skip_cni = r.kind == "Pod" and _cni_enabled(r)
        for name in r.metadata.annotations:
            known = ANNOTATIONS.get(name)
            if not is_istio_annotation(name) or known is None or known[0] != "Alpha" or name in ALWAYS_IGNORED:
                continue
            if skip_cni and name in _CNI_DEFAULTS:
                continue
            yield ctx.message(
                "IST0136",
                r,
                ("metadata", "annotations", name),
                f"annotation {name!r} belongs to an alpha-phase feature and may be incompletely supported",
            )
