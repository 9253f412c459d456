"""What Envoy would reject, found before anything is stored: build what every proxy would receive from
the config as it would be after an apply, check it against Envoy's rules (`xds/rules.py`), and name the
applied resource responsible (`gossamer apply` refuses it; `gossamer analyze` reports it).

    rejections = check_rejections(new, existing)     # [] when Envoy would take everything

Proxies are the Deployments' pods (one per proxy group, as the runtime would run them) and the built-in
gateways. A violation already present without the new resources is not theirs. The resource responsible
is the first new one whose addition brings the violation (found by bisection, a few builds per culprit),
so an EnvoyFilter whose patch breaks a listener is named, not the VirtualService it patched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

from gossamer.controlplane.offline_snapshot import REGISTRY_KINDS, offline_proxy, offline_snapshot
from gossamer.ir.types import ProxyConfig, RouteTable, VirtualHost
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy
from gossamer.resources.apps import Deployment
from gossamer.resources.envoy_checks import missing_files
from gossamer.resources.issues import Issue
from gossamer.translate import (
    OutboundConfig,
    outbound_scope,
    translate_inbound,
    translate_outbound,
    translate_proxy,
)
from gossamer.translate.envoyfilter import envoy_filters_for
from gossamer.translate.incremental import carry_over
from gossamer.xds.build import build_endpoint_resources, build_resources
from gossamer.xds.build.listeners import build_listener
from gossamer.xds.build.routes import built_virtual_host, table_fields
from gossamer.xds.envoyfilter import apply_envoy_filters
from gossamer.xds.rules import MAX_VIOLATIONS, Violation, checked, message_problems, rule_plan, violations
from gossamer.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

MAX_CULPRITS = 5
_PROXY_KINDS = frozenset(
    {
        "Deployment",
        "Service",
        "VirtualService",
        "DestinationRule",
        "Gateway",
        "ServiceEntry",
        "WorkloadEntry",
        "Sidecar",
        "EnvoyFilter",
        "PeerAuthentication",
        "AuthorizationPolicy",
        "RequestAuthentication",
        "Telemetry",
        "Secret",
        "ConfigMap",
    }
)


@dataclass(frozen=True)
class Rejection:
    resource: Any  # the applied Resource responsible
    proxy: str  # e.g. "sidecar default/reviews-v1"
    problem: str  # the Envoy rule broken, in the built resource's terms
    proxies: int = 1  # how many proxies would reject it
    more: int = 0  # further problems the same resource brings
    path: tuple[str | int, ...] = ()  # the field responsible, when known (an EnvoyFilter's patch)

    def issue(self) -> Issue:
        others = f" (and {self.proxies - 1} other proxies)" if self.proxies > 1 else ""
        more = f" (and {self.more} more)" if self.more else ""
        return Issue(
            "error",
            self.resource.source_file,
            self.resource.line_of(self.path),
            self.resource.kind,
            self.resource.name,
            _format(self.path),
            f"Envoy would reject what this builds for {self.proxy}{others}: {self.problem}{more}",
        )


def proxies(snapshot: MeshSnapshot) -> list[tuple[str, Proxy]]:
    """One proxy per Deployment (with mTLS, the default), labelled as `status` names them."""
    return [
        (f"{proxy.type} {d.metadata.namespace}/{d.metadata.name}", proxy)
        for d in snapshot.of_kind(Deployment)
        for proxy in (offline_proxy(d),)
    ]


def _problems(resources: Sequence[Any]) -> dict[str, list[str]]:
    """Envoy-rule violations of everything built for every proxy: problem -> proxies.

    A sidecar without EnvoyFilters gets its outbound scope's config (shared by every sidecar of the scope,
    see translate.outbound_scope) plus its own inbound part: the shared part is built and checked once per
    scope, not once per proxy (a thousand proxies of ten namespaces: ten checks, not a thousand)."""
    snapshot = _offline_snapshot_since_last(resources)
    found: dict[str, list[str]] = {}
    by_scope: dict[Hashable, list[str]] = {}
    for label, proxy in proxies(snapshot):
        try:
            if proxy.type == "sidecar" and not envoy_filters_for(snapshot, proxy):
                scope = outbound_scope(snapshot, proxy)
                if scope not in by_scope:
                    by_scope[scope] = _outbound_problems(translate_outbound(snapshot, proxy))
                problems = by_scope[scope] + _inbound_problems(translate_inbound(snapshot, proxy))
            else:
                config = translate_proxy(snapshot, proxy)
                built = apply_envoy_filters(config.envoy_filters, build_resources(config), group=proxy.group).resources
                problems = [str(v) for v in violations(built)]
        except Exception as e:  # noqa: BLE001 - a config the translator cannot build is a rejection too
            found.setdefault(f"the config cannot be built ({type(e).__name__}: {str(e)[:200]})", []).append(label)
            continue
        for problem in dict.fromkeys(problems):
            found.setdefault(problem, []).append(label)
    return found


# (type URL, resource name, its problems: (field path, problem)) for each built resource, in the order
# `violations` walks what build_resources builds.
Checked = list[tuple[str, str, tuple[tuple[str, str], ...]]]


def _outbound_problems(outbound: OutboundConfig) -> list[str]:
    """What `violations` finds in the built OUTBOUND config (the same problems, in the same order), at a cost
    that follows what changed since the last check: each part translated again (a change carries the
    others over: the same objects) is built and checked again; of a route table, only the virtual hosts
    translated again (a VirtualService change: the hosts it touches, of a thousand)."""
    parts = (
        _once_per(
            outbound.listeners, lambda: _checked(LISTENER, {x.name: build_listener(x) for x in outbound.listeners})
        ),
        _route_tables_checked(outbound.route_tables),
        _once_per(
            outbound.clusters,
            lambda: _checked(CLUSTER, build_resources(ProxyConfig(clusters=outbound.clusters))[CLUSTER]),
        ),
        _once_per(outbound.endpoints, lambda: _checked(ENDPOINT, build_endpoint_resources(outbound.endpoints))),
    )
    out: list[str] = []
    for part in parts:
        for type_url, name, problems in part:
            for path, problem in problems:
                out.append(str(Violation(type_url, name, path, problem)))
                if len(out) >= MAX_VIOLATIONS:
                    return out
    return out


def _checked(type_url: str, built: Mapping[str, Message]) -> Checked:
    return [(type_url, name, checked(msg)) for name, msg in built.items()]


_ONCE_PER: dict[int, tuple[object, Checked]] = {}


def _once_per(value: object, check: Callable[[], Checked]) -> Checked:
    """check(), once per VALUE (a translated part: the same object while a change leaves it)."""
    found = _ONCE_PER.get(id(value))
    if found is not None and found[0] is value:
        return found[1]
    result = check()
    if len(_ONCE_PER) > 1024:
        _ONCE_PER.clear()
    _ONCE_PER[id(value)] = (value, result)  # holds `value`: its id cannot be reused meanwhile
    return result


_TABLE_FIELDS = rule_plan(route_pb2.RouteConfiguration.DESCRIPTOR).ruled_names


def _route_tables_checked(tables: tuple[RouteTable, ...]) -> Checked:
    """A route table's problems as `violations` finds them in the built table: its own fields' (with rules
    first, the others after its virtual hosts, as the walk meets them) and each virtual host's, under
    `virtual_hosts[i]` - a virtual host checked once per translation of it."""
    by_name = {t.name: t for t in tables}  # (as build_resources keys them)
    out: Checked = []
    for name, table in by_name.items():
        own = checked(table_fields(table))
        ruled = [p for p in own if _top_field(p[0]) in _TABLE_FIELDS]
        others = [p for p in own if _top_field(p[0]) not in _TABLE_FIELDS]
        vhosts = [
            (f"virtual_hosts[{i}].{sub}" if sub else f"virtual_hosts[{i}]", problem)
            for i, vhost in enumerate(table.virtual_hosts)
            for sub, problem in _virtual_host_problems(vhost)
        ]
        out.append((ROUTE, name, (*ruled, *vhosts, *others)))
    return out


def _top_field(path: str) -> str:
    return re.split(r"[.\[(]", path, maxsplit=1)[0]


_VHOST_CHECKED: dict[int, tuple[VirtualHost, tuple[tuple[str, str], ...]]] = {}


def _virtual_host_problems(vhost: VirtualHost) -> tuple[tuple[str, str], ...]:
    found = _VHOST_CHECKED.get(id(vhost))
    if found is not None and found[0] is vhost:
        return found[1]
    problems = message_problems(built_virtual_host(vhost))
    if len(_VHOST_CHECKED) > 50_000:
        _VHOST_CHECKED.clear()
    _VHOST_CHECKED[id(vhost)] = (vhost, problems)  # holds `vhost`: its id cannot be reused meanwhile
    return problems


_INBOUND_CHECKED: dict[int, tuple[tuple[Any, tuple[Any, ...]], list[str]]] = {}


def _inbound_problems(inbound: tuple[Any, tuple[Any, ...]]) -> list[str]:
    """The violations of a sidecar's own part (virtualInbound, inbound clusters), once per translation of
    it (carried over from the previous check while untouched: the same object)."""
    found = _INBOUND_CHECKED.get(id(inbound))
    if found is not None and found[0] is inbound:
        return found[1]
    listener, clusters = inbound
    problems = [str(v) for v in violations(build_resources(ProxyConfig(listeners=(listener,), clusters=clusters)))]
    if len(_INBOUND_CHECKED) > 20_000:
        _INBOUND_CHECKED.clear()
    _INBOUND_CHECKED[id(inbound)] = (inbound, problems)  # holds `inbound`: its id cannot be reused meanwhile
    return problems


# The last offline snapshot built and the resources it was built from: the next one (an apply changes a
# few resources) takes over what those changes cannot have touched (translate.incremental.carry_over).
_last: tuple[dict[tuple[str, str, str], Any], MeshSnapshot] | None = None


def _offline_snapshot_since_last(resources: Sequence[Any]) -> MeshSnapshot:
    global _last
    by_key = {r.key: r for r in resources}
    last = _last
    if last is None:
        snapshot = offline_snapshot(resources, every_replica=False)
    else:
        before, previous = last
        changed = {k for k, r in by_key.items() if (b := before.get(k)) is not r and not _same_config(b, r)}
        changed |= before.keys() - by_key.keys()
        # No Service, Deployment... changed: the same services and workloads (not made again for every check).
        same_registry = not any(kind in REGISTRY_KINDS for kind, _, _ in changed)
        snapshot = offline_snapshot(resources, every_replica=False, registry_of=previous if same_registry else None)
        carry_over(previous, snapshot, changed)
    _last = (by_key, snapshot)
    return snapshot


def _same_config(before: Any, after: Any) -> bool:
    """Whether BEFORE (or None) and AFTER configure the same, wherever they were read from (an apply of a
    file that holds a stored resource unchanged: changed only in its source file and lines)."""
    return (
        before is not None
        and before.api_version == after.api_version
        and before.metadata == after.metadata
        and before.spec == after.spec
        and before.raw == after.raw
    )


def prepare(existing: Sequence[Any]) -> None:
    """Build what every proxy would receive from EXISTING (the stored config), so that the next check, of
    a change over it, carries it over instead of building it at the apply."""
    _problems(existing)


def _merge(existing: Sequence[Any], new: Sequence[Any]) -> list[Any]:
    keys = {r.key for r in new}
    return [r for r in existing if r.key not in keys] + list(new)


def check_rejections(new: Sequence[Any], existing: Sequence[Any]) -> list[Rejection]:
    """What Envoy would reject once `new` is applied over `existing`, each pinned to the new resource
    responsible."""
    relevant = [r for r in new if r.kind in _PROXY_KINDS]
    if not relevant:
        return []
    after = _problems(_merge(existing, new))
    if not after:
        return []  # nothing to reject: no need to know what was there before
    baseline = set(_problems(existing))
    remaining = {p: labels for p, labels in after.items() if p not in baseline}
    out: list[Rejection] = []
    start = 0
    while remaining and len(out) < MAX_CULPRITS and start < len(relevant):

        def brings(k: int) -> set[str]:
            return set(_problems(_merge(existing, relevant[:k]))) & remaining.keys()

        # the smallest prefix of the new resources that brings one of the remaining problems
        lo, hi = start + 1, len(relevant)
        while lo < hi:
            mid = (lo + hi) // 2
            if brings(mid):
                hi = mid
            else:
                lo = mid + 1
        brought = brings(lo)
        if not brought:  # only resources together bring it (not monotonic): name the last one
            brought, lo = set(remaining), len(relevant)
        culprit = relevant[lo - 1]
        first = sorted(brought)[0]
        labels = remaining[first]
        path = _patch_responsible(culprit, existing, relevant[: lo - 1], first)
        out.append(Rejection(culprit, labels[0], first, len(labels), len(brought) - 1, path))
        for problem in brought:
            remaining.pop(problem)
        start = lo
    return out


def _patch_responsible(
    resource: Any, existing: Sequence[Any], before: Sequence[Any], problem: str
) -> tuple[str | int, ...]:
    """For an EnvoyFilter, the first of its configPatches that brings `problem` (bisected like the
    resources); else () (the whole resource)."""
    patches = resource.spec.config_patches if resource.kind == "EnvoyFilter" else []
    if len(patches) < 2:
        return ("spec", "configPatches", 0) if patches else ()

    def brings(k: int) -> bool:
        partial = resource.model_copy(update={"spec": resource.spec.model_copy(update={"config_patches": patches[:k]})})
        return problem in _problems(_merge(existing, [*before, partial]))

    lo, hi = 1, len(patches)
    while lo < hi:
        mid = (lo + hi) // 2
        if brings(mid):
            hi = mid
        else:
            lo = mid + 1
    return ("spec", "configPatches", lo - 1)


def stored_resources(store: Any) -> list[Any]:
    """The resources in a store, as objects (what `check_issues` compares against)."""
    from gossamer.resources.loader import ResourceError, resource_from_raw

    out = []
    for o in store.objects():
        try:
            out.append(resource_from_raw(o.body, o.source_file, o.source_line))
        except ResourceError:
            continue  # stored by an older version and no longer valid: not this apply's business
    return out


def check_issues(new: Sequence[Any], existing: Sequence[Any]) -> list[Issue]:
    """Errors for `gossamer apply`: missing certificate files on this machine, then what Envoy would reject."""
    issues = [
        Issue("error", r.source_file, r.line_of(path), r.kind, r.name, _format(path), message)
        for r in new
        for path, message in missing_files(r)
    ]
    if issues:
        return issues
    return [r.issue() for r in check_rejections(new, existing)]


def _format(path: Sequence[str | int]) -> str:
    from gossamer.resources.base import format_path

    return format_path(path)
