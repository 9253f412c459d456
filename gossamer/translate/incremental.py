"""What a change re-translates: values of the previous snapshot a change cannot have touched are carried
into the next one (Istio's ConfigsUpdated deciding what a push rebuilds).

Translation stays a pure function of one snapshot; `carry_over` only copies derived values, keyed by
what they depend on, from the snapshot of the previous push:

* a VirtualService change: everything but outbound listeners and route tables, and of those the virtual
  hosts of the hosts it did not touch (old and new hosts; a wildcard or delegate VirtualService
  touches every host);
* a DestinationRule change: endpoints (keyed by their subsets), service accounts, inbound config (any
  other change: the DestinationRule indices too);
* pods (readiness, IPs, labels): everything that does not depend on workloads, the endpoints and
  service accounts of the services whose pods did not change, and whole endpoint scopes that see none
  of the services whose pods changed;
* any other kind: nothing (a full translation).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Workload
from gossamer.resources.networking import VirtualService
from gossamer.translate.hosts import resolve_host

ConfigKey = tuple[str, str, str]  # (kind, namespace, name), as the store names a resource

# Derived values by the tag that starts their key (see translate/, pusher).
_PER_SERVICE_WORKLOADS = {"endpoints_of", "service_accounts", "service_endpoints"}  # key[1] = namespace
_CLUSTERS = {"outbound_clusters", "packed_clusters"}
_ENDPOINTS = {"outbound_endpoints", "packed_endpoints"}  # key[1] = endpoint scope
# Indices of DestinationRules (by host, and which one a namespace's proxies use for a host), and what
# depends on them and on one service's workloads: its endpoint sets as a namespace sees them (key[1] =
# namespace, key[2] = host).
_DESTINATION_RULES = {"destination_rules_by_host", "destination_rule_for", "endpoint_sets_for"}
_PER_SERVICE = _PER_SERVICE_WORKLOADS | {"endpoint_sets_for"}
_INBOUND = {"inbound", "packed_inbound"}
# Values that check themselves: a group's shared part merged with its own (valid while both parts are the
# same objects), a virtual host's serialized entry (while it is the same virtual host).
_MERGED = {"group_listeners", "group_clusters", "vhost_bytes"}
_VHOST = "vhost"  # ("vhost", scope, hostname, port)
ALL_HOSTS = "*"


def carry_over(previous: MeshSnapshot | None, current: MeshSnapshot, changed: Iterable[ConfigKey] | None) -> int:
    """Copy into CURRENT the derived values of PREVIOUS that the config changes CHANGED (None: unknown)
    and the pod changes between them leave as they were. Returns how many were carried."""
    if previous is None or previous is current or changed is None:
        return 0
    changed = set(changed)
    kinds = {kind for kind, _ns, _name in changed}
    if not kinds <= {"VirtualService", "DestinationRule"}:
        return 0
    moved = _changed_workloads(previous.workloads, current.workloads)
    tags: set[str] = _PER_SERVICE_WORKLOADS | _INBOUND | _MERGED
    if "DestinationRule" not in kinds:
        tags |= _DESTINATION_RULES
    if not moved and kinds <= {"VirtualService"}:
        tags |= _CLUSTERS | _ENDPOINTS  # clusters carry service accounts: only while pods stay
    # The services whose pods moved: their per-service values are translated again, and an endpoint scope
    # that sees none of them keeps its endpoints (a Sidecar narrowing egress narrows what a pod change costs).
    moved_hosts = _hosts_selecting(previous, current, moved) if moved else set()
    scopes_may_stay = "DestinationRule" not in kinds
    touched_hosts = _touched_hosts(previous, current, changed) if "DestinationRule" not in kinds else {ALL_HOSTS}
    carried = 0
    for key, value in list(previous._derived.items()):
        tag = key[0] if isinstance(key, tuple) else key
        if tag == _VHOST:
            if ALL_HOSTS in touched_hosts or key[2] in touched_hosts:
                continue
        elif tag in _ENDPOINTS and tag not in tags:
            if not scopes_may_stay or not _endpoint_hosts(tag, value).isdisjoint(moved_hosts):
                continue
        elif tag not in tags:
            continue
        elif tag in _PER_SERVICE and moved:
            if tag == "endpoints_of":
                if _selects_any(key, moved):
                    continue
            elif key[2] in moved_hosts:
                continue
        if key not in current._derived:
            current._derived[key] = value
            carried += 1
    return carried


def _changed_workloads(old: tuple[Workload, ...], new: tuple[Workload, ...]) -> list[Workload]:
    """Workloads added, removed or changed (old and new versions)."""
    if old is new or old == new:
        return []
    return list(set(old).symmetric_difference(new))


def _selects_any(key: tuple[Any, ...], moved: list[Workload]) -> bool:
    """Whether the workloads a service selects (KEY: "endpoints_of", namespace, selector) can include one of
    the MOVED workloads."""
    namespace, selector = key[1], key[2]
    return any(w.namespace == namespace and all(w.label_map.get(k) == v for k, v in selector) for w in moved)


def _hosts_selecting(previous: MeshSnapshot, current: MeshSnapshot, moved: list[Workload]) -> set[str]:
    """The hosts of the services (in either snapshot) selecting one of the MOVED workloads (as
    MeshSnapshot.endpoints_of selects)."""
    hosts: set[str] = set()
    for snapshot in (previous, current):
        for service in snapshot.services:
            if any(w.namespace == service.namespace and service.selects(w.label_map) for w in moved):
                hosts.add(service.hostname)
    return hosts


def _endpoint_hosts(tag: str, value: Any) -> set[str]:
    """The hosts of an endpoint scope's clusters (outbound|port|subset|host)."""
    names = value.keys() if tag == "packed_endpoints" else (e.cluster for e in value)
    return {name.rsplit("|", 1)[-1] for name in names}


def _touched_hosts(previous: MeshSnapshot, current: MeshSnapshot, changed: set[ConfigKey]) -> set[str]:
    """The hosts whose virtual hosts the changed VirtualServices (old and new versions) can alter."""
    hosts: set[str] = set()
    for kind, namespace, name in changed:
        if kind != "VirtualService":
            continue
        for snapshot in (previous, current):
            vs = next((v for v in snapshot.of_kind_in(VirtualService, namespace) if v.metadata.name == name), None)
            if vs is None:
                continue
            if not vs.spec.hosts or any(r.delegate is not None for r in vs.spec.http or []):
                return {ALL_HOSTS}  # a delegate, or a root of delegates: its routes land elsewhere too
            for host in vs.spec.hosts:
                resolved = resolve_host(host, namespace)
                if "*" in resolved:
                    return {ALL_HOSTS}
                hosts.add(resolved)
    return hosts
