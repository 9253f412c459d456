"""What every validator shares: `Finding`, the `Report` it collects them in, and the checks of
names, hosts, labels, metadata and the fields several kinds have."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gossamer.resources import networking
from gossamer.resources.base import Duration, FieldPath, Resource
from gossamer.resources.regex import re2_problem


@dataclass(frozen=True)
class Finding:
    level: Literal["error", "warning"]
    path: FieldPath
    message: str
    # The line, when the field is inside a value of the document (a ConfigMap's embedded YAML);
    # 0: the line of `path` in the document.
    line: int = 0


class Report:
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def error(self, path: Sequence[str | int], message: str) -> None:
        self.findings.append(Finding("error", tuple(path), message))

    def warn(self, path: Sequence[str | int], message: str) -> None:
        self.findings.append(Finding("warning", tuple(path), message))


# ---------------------------------------------------------------------------- names and hosts

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_HOST_LABEL = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?$")
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def is_dns1123_label(s: str) -> bool:
    return len(s) <= 63 and bool(_DNS1123_LABEL.match(s))


def is_dns1123_subdomain(s: str) -> bool:
    return len(s) <= 253 and bool(_DNS1123_SUBDOMAIN.match(s))


def is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def is_cidr_or_ip(s: str) -> bool:
    try:
        ipaddress.ip_network(s, strict=False)
    except ValueError:
        return False
    return True


def host_problem(host: str, allow_ip: bool = True) -> str | None:
    """Why `host` is not a valid (wildcard) DNS name, short name or IP, or None if it is."""
    if host == "*":
        return None
    if allow_ip and is_ip(host):
        return None
    if len(host) > 255:
        return "host name is longer than 255 characters"
    body = host[2:] if host.startswith("*.") else host
    if not body:
        return "empty host name"
    if "*" in body:
        return "a wildcard is only allowed as the first label ('*.example.com')"
    for label in body.split("."):
        if not label or len(label) > 63 or not _HOST_LABEL.match(label):
            return f"invalid host name {host!r}: each label must be 1-63 letters, digits or '-'"
    return None


def check_labels(rep: Report, path: FieldPath, labels: dict[str, str] | None) -> None:
    for key, value in (labels or {}).items():
        prefix, _, name = key.rpartition("/")
        if prefix and not is_dns1123_subdomain(prefix):
            rep.error(path + (key,), f"label key prefix {prefix!r} must be a DNS-1123 subdomain")
        if len(name) > 63 or not _LABEL_NAME.match(name):
            rep.error(
                path + (key,),
                f"invalid label key {key!r}: must be at most 63 letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit",
            )
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            rep.error(
                path + (key,),
                f"invalid label value {value!r}: must be at most 63 letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit",
            )


def check_metadata(resource: Resource[Any], namespaced: bool, name_rule: str = "subdomain") -> list[Finding]:
    rep = Report()
    name = resource.metadata.name
    if name_rule == "any":  # kinds read only for analysis (RBAC names like "system:auth-delegator")
        ok = bool(name)
    else:
        ok = is_dns1123_label(name) if name_rule == "label" else is_dns1123_subdomain(name)
    if not ok:
        what = "DNS-1123 label" if name_rule == "label" else "DNS-1123 subdomain"
        rep.error(
            ("metadata", "name"),
            f"invalid name {name!r}: must be a {what} (lowercase letters, digits, '-'"
            + ("" if name_rule == "label" else ", '.'")
            + ", starting and ending with a letter or digit)",
        )
    ns = resource.metadata.namespace
    if namespaced and not is_dns1123_label(ns):
        rep.error(("metadata", "namespace"), f"invalid namespace {ns!r}: must be a DNS-1123 label")
    check_labels(rep, ("metadata", "labels"), resource.metadata.labels)
    return rep.findings


# ---------------------------------------------------------------------------- helpers


def check_regex(rep: Report, path: FieldPath, pattern: str) -> None:
    """As Envoy compiles it: RE2 syntax and program size (Python's `re` accepts more)."""
    if pattern == "":
        rep.error(path, "regex must not be empty")
        return
    problem = re2_problem(pattern)
    if problem:
        rep.error(path, f"invalid regex {pattern!r} (RE2 syntax, as Envoy runs it): {problem}")


def check_string_match(rep: Report, path: FieldPath, m: networking.StringMatch, allow_empty: bool = False) -> None:
    fields = m.set_fields
    if len(fields) > 1:
        rep.error(path, f"exactly one of exact, prefix, regex may be set (found {', '.join(fields)})")
    elif not fields and not allow_empty:
        rep.error(path, "one of exact, prefix, regex must be set")
    if m.regex is not None:
        check_regex(rep, path + ("regex",), m.regex)


def check_percent(rep: Report, path: FieldPath, p: networking.Percent | None) -> None:
    if p is not None and not 0.0 <= p.value <= 100.0:
        rep.error(path + ("value",), f"percentage {p.value} must be between 0 and 100")


def check_gateway_ref(rep: Report, path: FieldPath, gw: str) -> None:
    if gw == "mesh":
        return
    ns, _, name = gw.rpartition("/")
    if ns and not is_dns1123_label(ns):
        rep.error(path, f"invalid gateway {gw!r}: namespace {ns!r} must be a DNS-1123 label")
    if not is_dns1123_subdomain(name):
        rep.error(path, f"invalid gateway {gw!r}: must be 'mesh' or [namespace/]name")


def check_export_to(rep: Report, path: FieldPath, export_to: list[str] | None) -> None:
    for i, ns in enumerate(export_to or []):
        if ns not in (".", "*", "~") and not is_dns1123_label(ns):
            rep.error(path + (i,), f"invalid exportTo {ns!r}: must be '.', '*', '~' or a namespace name")


def check_destination(rep: Report, path: FieldPath, d: networking.Destination) -> None:
    problem = host_problem(d.host)
    if problem:
        rep.error(path + ("host",), problem)
    if d.subset is not None and not is_dns1123_label(d.subset):
        rep.error(path + ("subset",), f"invalid subset name {d.subset!r}: must be a DNS-1123 label")


def check_weights(rep: Report, path: FieldPath, routes: Sequence[Any]) -> None:
    total = 0
    for j, r in enumerate(routes):
        w = r.weight or 0
        if w < 0:
            rep.error(path + (j, "weight"), f"weight {w} must not be negative")
        total += w
    if len(routes) > 1:
        if total != 100:
            rep.error(path, f"weights sum to {total}, must be 100")
    elif len(routes) == 1 and routes[0].weight not in (None, 0, 100):
        rep.warn(
            path + (0, "weight"),
            f"weight {routes[0].weight} on the only destination is ignored: it receives all traffic",
        )


def seconds_or_none(value: Duration | None) -> float | None:
    return None if value is None else value.seconds


def check_target(rep: Report, spec: Any) -> None:
    set_ = [
        n
        for n, v in (
            ("selector", spec.selector),
            ("targetRef", spec.target_ref),
            ("targetRefs", spec.target_refs),
        )
        if v
    ]
    if len(set_) > 1:
        rep.error(
            ("spec", set_[1]),
            f"only one of selector, targetRef, targetRefs may be set (found {', '.join(set_)})",
        )


def camel(name: str) -> str:
    parts = name.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def validate_nothing(res: Resource[Any]) -> list[Finding]:
    return []


def all_findings(validators: Iterable[Any], res: Resource[Any]) -> list[Finding]:
    out: list[Finding] = []
    for v in validators:
        out.extend(v(res))
    return out


def check_int_or_name(rep: Report, path: FieldPath, value: int | str | None) -> None:
    if value is None:
        return
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            rep.error(path, f"port {value} must be in the range 1-65535")
    elif value.isdigit():
        if not 1 <= int(value) <= 65535:
            rep.error(path, f"port {value} must be in the range 1-65535")
    elif len(value) > 15 or not IANA_SVC_NAME.match(value) or not re.search("[a-z]", value) or "--" in value:
        rep.error(path, f"invalid port name {value!r}: at most 15 lowercase letters, digits and '-'")
