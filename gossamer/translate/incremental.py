"""What a change re-translates: values of the previous snapshot a change cannot have touched are carried
into the next one (Istio's ConfigsUpdated deciding what a push rebuilds).

Translation stays a pure function of one snapshot; `carry_over` only copies derived values, keyed by
what they depend on, from the snapshot of the previous push:

* a VirtualService change: everything but outbound listeners and route tables, and of those the virtual
  hosts of the hosts it did not touch (old and new hosts; a wildcard or delegate VirtualService
  touches every host);
* a DestinationRule change: endpoints (keyed by their subsets), service accounts, inbound config;
* pods (readiness, IPs, labels): everything that does not depend on workloads, and the endpoints and
  service accounts of the services whose pods did not change;
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
_ENDPOINTS = {"outbound_endpoints", "packed_endpoints"}
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
    if not moved and kinds <= {"VirtualService"}:
        tags |= _CLUSTERS | _ENDPOINTS  # clusters carry service accounts: only while pods stay
    touched_hosts = _touched_hosts(previous, current, changed) if "DestinationRule" not in kinds else {ALL_HOSTS}
    carried = 0
    for key, value in list(previous._derived.items()):
        tag = key[0] if isinstance(key, tuple) else key
        if tag == _VHOST:
            if ALL_HOSTS in touched_hosts or key[2] in touched_hosts:
                continue
        elif tag not in tags:
            continue
        elif tag in _PER_SERVICE_WORKLOADS and moved and _selects_any(current, key, moved):
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


def _selects_any(snapshot: MeshSnapshot, key: tuple[Any, ...], moved: list[Workload]) -> bool:
    """Whether the per-service value under KEY can depend on one of the MOVED workloads."""
    namespace = key[1]
    if key[0] == "endpoints_of":
        selector = dict(key[2])
    else:
        service = snapshot.service_by_host(key[2])
        if service is None:
            return True
        selector = dict(service.selector)
    return any(w.namespace == namespace and all(w.label_map.get(k) == v for k, v in selector.items()) for w in moved)


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
