"""Validation of EnvoyFilter: match contexts, operations and patch values."""

from __future__ import annotations

from gossamer.resources import networking
from gossamer.resources.base import FieldPath
from gossamer.resources.networking import EnvoyFilter
from gossamer.resources.validation.common import Finding, Report, check_labels, check_regex

_EF_LISTENER_CLASS = ("LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER")
_EF_ROUTE_CLASS = ("ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE")


def validate_envoy_filter(res: EnvoyFilter) -> list[Finding]:
    rep = Report()
    spec = res.spec
    sp: FieldPath = ("spec",)
    if spec.workload_selector is not None:
        check_labels(rep, sp + ("workloadSelector", "labels"), spec.workload_selector.labels)
        if spec.target_refs:
            rep.error(sp + ("targetRefs",), "set either workloadSelector or targetRefs, not both")
    for i, cp in enumerate(spec.config_patches):
        _check_config_patch(rep, sp + ("configPatches", i), cp)
    return rep.findings


def _check_config_patch(rep: Report, p: FieldPath, cp: networking.EnvoyConfigObjectPatch) -> None:
    from gossamer.resources.envoyfilter_values import OPERATIONS, PatchValueError, value_to_proto

    if cp.apply_to == "INVALID":
        rep.error(p + ("applyTo",), "applyTo is required")
        return
    if cp.patch is None:
        rep.error(p, "missing patch")
        return
    op = cp.patch.operation
    if op == "INVALID":
        rep.error(p + ("patch", "operation"), "missing patch operation")
        return
    if cp.apply_to not in OPERATIONS:
        rep.error(p + ("applyTo",), f"applyTo {cp.apply_to} is not supported by this version")
        return
    if op not in OPERATIONS[cp.apply_to]:
        rep.error(
            p + ("patch", "operation"),
            f"operation {op} is not valid for applyTo {cp.apply_to}"
            f" (valid: {', '.join(sorted(OPERATIONS[cp.apply_to]))})",
        )
        return
    if cp.match is not None:
        _check_patch_match(rep, p, cp.apply_to, cp.match)
    if op == "REMOVE":
        return
    if cp.patch.value is None:
        rep.error(p + ("patch", "value"), f"operation {op} needs a value")
        return
    try:
        value_to_proto(cp.apply_to, cp.patch.value)
    except PatchValueError as e:
        rep.error(p + ("patch", "value"), str(e))


def _check_patch_match(rep: Report, p: FieldPath, apply_to: str, m: networking.EnvoyFilterObjectMatch) -> None:
    if apply_to in _EF_LISTENER_CLASS and (m.route_configuration or m.cluster):
        rep.error(p + ("match",), f"applyTo {apply_to} takes a listener match")
    if apply_to in _EF_ROUTE_CLASS and (m.listener or m.cluster):
        rep.error(p + ("match",), f"applyTo {apply_to} takes a routeConfiguration match")
    if apply_to == "CLUSTER" and (m.listener or m.route_configuration):
        rep.error(p + ("match",), "applyTo CLUSTER takes a cluster match")
    if m.proxy and m.proxy.proxy_version:
        check_regex(rep, p + ("match", "proxy", "proxyVersion"), m.proxy.proxy_version)
