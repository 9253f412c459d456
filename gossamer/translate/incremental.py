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

import functools
from collections.abc import Callable, Hashable, Iterable
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
_LISTENERS = {"outbound_listeners", "packed_listeners"}  # key[1] = outbound scope
# Values that check themselves: a group's shared part merged with its own (valid while both parts are the
# same objects), a virtual host's serialized entry (while it is the same virtual host).
_MERGED = {"group_listeners", "group_clusters", "vhost_bytes"}
# Indices of the services alone (carried while the services are the same tuple), of the config alone (while the
# resources are the same mapping: a pod change).
_SERVICE_INDICES = {"services_by_host", "hostnames_of_several_services", "services_by_selector"}
_CONFIG_INDICES = {"mesh_config", "by_namespace", "trust_domains", "source_label_selectors"}
_VHOST = "vhost"  # ("vhost", scope, hostname, port)
LABEL_INDEX = "workloads_by_label"  # MeshSnapshot's index of the workloads by (namespace, label, value)
ALL_HOSTS = "*"
# ("stale", tag, scope) -> (a scope's value in the previous snapshot, the hosts it differs in): left by
# carry_over for the next translation to replace only what those hosts have (stale_value).
STALE = "stale"


def carry_over(previous: MeshSnapshot | None, current: MeshSnapshot, changed: Iterable[ConfigKey] | None) -> int:
    """Copy into CURRENT the derived values of PREVIOUS that the config changes CHANGED (None: unknown)
    and the pod changes between them leave as they were. Returns how many were carried."""
    if previous is None or previous is current or changed is None:
        return 0
    changed = set(changed)
    kinds = {kind for kind, _ns, _name in changed}
    if not kinds <= {"VirtualService", "DestinationRule"}:
        return 0
    gone, came = _workload_changes(previous.workloads, current.workloads)
    moved = list(set(gone).symmetric_difference(came))
    _patch_label_index(previous, current, gone, came)
    tags: set[str] = _PER_SERVICE_WORKLOADS | _INBOUND | _MERGED
    if "DestinationRule" not in kinds:
        tags |= _DESTINATION_RULES
    if not moved and kinds <= {"VirtualService"}:
        tags |= _CLUSTERS | _ENDPOINTS  # clusters carry service accounts: only while pods stay
    # The services whose pods moved: their per-service values are translated again, and an endpoint scope
    # that sees none of them keeps its endpoints (a Sidecar narrowing egress narrows what a pod change costs).
    moved_hosts = _hosts_selecting(previous, current, moved) if moved else set()
    scopes_may_stay = "DestinationRule" not in kinds
    # The same services (a pod change): a scope's endpoints differ from before only in the moved hosts'.
    patchable = scopes_may_stay and previous.services is current.services
    touched_hosts = _touched_hosts(previous, current, changed) if "DestinationRule" not in kinds else {ALL_HOSTS}
    listeners_patchable = (
        not moved
        and kinds == {"VirtualService"}
        and ALL_HOSTS not in touched_hosts
        and _routes_http_only(previous, current, changed)
    )
    carried = 0
    for tag in previous.derived_tags():
        values = previous.derived_values(tag)
        if tag == _VHOST:
            if ALL_HOSTS in touched_hosts:
                continue
            kept = values if not touched_hosts else _without(values, [k for k in values if k[2] in touched_hosts])
        elif tag in _LISTENERS:
            # A VirtualService change that only routes HTTP: a scope's listeners stay, its route tables differ in
            # the touched hosts' virtual hosts (the next translation replaces only those).
            if listeners_patchable:
                _leave_stale(current, values, lambda _v: frozenset(touched_hosts))
            continue
        elif tag in _ENDPOINTS and tag not in tags:
            if not scopes_may_stay:
                continue
            kept = {k: v for k, v in values.items() if _endpoint_hosts(tag, v).isdisjoint(moved_hosts)}
            if patchable:  # the next translation replaces only the moved hosts' endpoints
                stale = {k: v for k, v in values.items() if k not in kept}
                _leave_stale(current, stale, functools.partial(_hosts_among, tag, moved_hosts))
        elif tag in _SERVICE_INDICES or tag in _CONFIG_INDICES:
            if not _same_index_inputs(tag, previous, current):
                continue
            kept = values
        elif tag not in tags:
            continue
        elif tag in _PER_SERVICE and moved:
            kept = _per_service_kept(tag, values, moved, moved_hosts, previous, current)
        else:
            kept = values
        carried += current.carry_derived(tag, kept)
    return carried


def _same_index_inputs(tag: str, previous: MeshSnapshot, current: MeshSnapshot) -> bool:
    """Whether what the index TAG is made of (the services, or the config) is the same in both."""
    if tag in _SERVICE_INDICES:
        return previous.services is current.services
    return previous.resources is current.resources


def _leave_stale(current: MeshSnapshot, values: dict[Any, Any], hosts: Callable[[Any], frozenset[str]]) -> None:
    """For each of VALUES (key -> previous value): what the next translation of it replaces (see stale_value)."""
    for key, value in values.items():
        current.derived_set((STALE, *key), (value, hosts(value)))


def _hosts_among(tag: str, hosts: set[str], value: Any) -> frozenset[str]:
    """The HOSTS an endpoint scope's VALUE has endpoints of."""
    return _endpoint_hosts(tag, value) & hosts


def _per_service_kept(
    tag: str,
    values: dict[Any, Any],
    moved: list[Workload],
    moved_hosts: set[str],
    previous: MeshSnapshot,
    current: MeshSnapshot,
) -> dict[Any, Any]:
    """The values of a per-service TAG that the MOVED workloads leave as they were."""
    if tag == "endpoints_of":
        if previous.services is current.services:
            # Each key is a service's of PREVIOUS (its namespace and selector): those selecting a moved workload go
            # (found in the services' index, not by matching every key: a thousand services at every pod change).
            kept = dict(values)
            for w in moved:
                for service in previous.services_selecting(w.namespace, w.label_map):
                    kept.pop((tag, service.namespace, service.selector), None)
            return kept
        return _without(values, [k for k in values if _selects_any(k, moved)])
    return _without(values, [k for k in values if k[2] in moved_hosts])


def _without(values: dict[Any, Any], keys: list[Any]) -> dict[Any, Any]:
    """VALUES but KEYS: a copy, then deletions (a new dict filled key by key hashes every key again - tuples do
    not keep their hash: ~4.6 ms for the 11,000 endpoint sets of 1000 services, the copy 0.4)."""
    kept = dict(values)
    for key in keys:
        del kept[key]
    return kept


def stale_value(snapshot: MeshSnapshot, key: tuple[str, Hashable]) -> tuple[Any, frozenset[str]] | None:
    """What carry_over left for the scope value KEY (outbound listeners: the hosts whose virtual hosts a
    VirtualService change touched; endpoints: the hosts whose pods moved): (its previous value, those hosts),
    or None (translate it whole)."""
    found: tuple[Any, frozenset[str]] | None = snapshot.derived_get((STALE, *key))
    return found


def _routes_http_only(previous: MeshSnapshot, current: MeshSnapshot, changed: set[ConfigKey]) -> bool:
    """Whether the changed VirtualServices (old and new versions) route only HTTP, without `sourceLabels`:
    then they cannot change a listener (TCP and TLS routes make listeners' filter chains) nor which proxies
    share an outbound scope."""
    for _kind, namespace, name in changed:
        for snapshot in (previous, current):
            vs = next((v for v in snapshot.of_kind_in(VirtualService, namespace) if v.metadata.name == name), None)
            if vs is None:
                continue
            if vs.spec.tcp or vs.spec.tls or any(m.source_labels for r in vs.spec.http for m in r.match or []):
                return False
    return True


stale_endpoints = stale_value


def same_hosts(tag: str, old: Any, new: Any) -> Any:
    """NEW, an endpoint scope value made from OLD by replacing some hosts' endpoints (see stale_endpoints):
    it has OLD's hosts (remembered: not worked out again at the next change)."""
    _remember_hosts(new, _endpoint_hosts(tag, old))
    return new


def hosts_worked_out(tag: str, value: Any, like: Any = None) -> Any:
    """VALUE, an endpoint scope value just translated (tag TAG), with its hosts worked out now - while the scope
    is translated, not when the first pod change after it is pushed (~0.3 ms per scope at 1000 services); LIKE:
    a value with the same clusters, whose hosts are known."""
    _remember_hosts(value, _endpoint_hosts(tag, value) if like is None else _endpoint_hosts("", like))
    return value


def _workload_changes(old: tuple[Workload, ...], new: tuple[Workload, ...]) -> tuple[list[Workload], list[Workload]]:
    """The workload objects of OLD not in NEW, and of NEW not in OLD. The snapshot builder keeps a pod's workload
    object while the pod stays: only these need comparing (hashing thousands of workloads took ~2 ms at every pod
    change)."""
    if old is new:
        return [], []
    old_ids, new_ids = {id(w) for w in old}, {id(w) for w in new}
    return [w for w in old if id(w) not in new_ids], [w for w in new if id(w) not in old_ids]


def _patch_label_index(
    previous: MeshSnapshot, current: MeshSnapshot, gone: list[Workload], came: list[Workload]
) -> None:
    """CURRENT's workloads-by-label index (MeshSnapshot._workloads_by_label) made from PREVIOUS's: the lists of the
    labels of the workloads GONE and CAME made again, in CURRENT's order, the others shared (building the whole
    index took ~3 ms at 1000 services, at every pod change)."""
    old: dict[tuple[str, str, str], list[Workload]] | None = previous.derived_get(LABEL_INDEX)
    if old is None or current.derived_get(LABEL_INDEX) is not None:
        return
    if not gone and not came:
        current.derived_set(LABEL_INDEX, old)
        return
    index = dict(old)
    gone_ids = {id(w) for w in gone}
    touched = {(w.namespace, k, v) for w in (*gone, *came) for k, v in w.labels}
    order = {id(w): i for i, w in enumerate(current.workloads)}
    for key in touched:
        kept = [w for w in old.get(key, ()) if id(w) not in gone_ids]
        kept.extend(w for w in came if w.namespace == key[0] and (key[1], key[2]) in w.labels)
        if kept:
            index[key] = sorted(kept, key=lambda w: order[id(w)])
        else:
            index.pop(key, None)
    current.derived_set(LABEL_INDEX, index)


def _selects_any(key: tuple[Any, ...], moved: list[Workload]) -> bool:
    """Whether the workloads a service selects (KEY: "endpoints_of", namespace, selector) can include one of
    the MOVED workloads."""
    namespace, selector = key[1], key[2]
    return any(w.namespace == namespace and all(w.label_map.get(k) == v for k, v in selector) for w in moved)


def _hosts_selecting(previous: MeshSnapshot, current: MeshSnapshot, moved: list[Workload]) -> set[str]:
    """The hosts of the services (in either snapshot) selecting one of the MOVED workloads (as
    MeshSnapshot.endpoints_of selects)."""
    # (The same services: PREVIOUS's index answers for both - CURRENT's is not carried over yet.)
    snapshots = (previous,) if previous.services is current.services else (previous, current)
    return {
        service.hostname
        for snapshot in snapshots
        for w in moved
        for service in snapshot.services_selecting(w.namespace, w.label_map)
    }


_HOSTS_OF: dict[int, tuple[Any, frozenset[str]]] = {}


def _endpoint_hosts(tag: str, value: Any) -> frozenset[str]:
    """The hosts of an endpoint scope's clusters (outbound|port|subset|host); once per value (a scope's
    endpoints are carried from snapshot to snapshot while their services' pods stay)."""
    kept: frozenset[str] | None = getattr(value, "endpoint_hosts", None)
    if kept is not None:
        return kept
    found = _HOSTS_OF.get(id(value))
    if found is not None and found[0] is value:
        return found[1]
    names = value.keys() if tag == "packed_endpoints" else (e.cluster for e in value)
    hosts = frozenset(name.rsplit("|", 1)[-1] for name in names)
    _remember_hosts(value, hosts)
    return hosts


def _remember_hosts(value: Any, hosts: frozenset[str]) -> None:
    try:
        value.endpoint_hosts = hosts  # (a mapping of packed endpoints keeps them itself)
        return
    except AttributeError:
        pass
    if len(_HOSTS_OF) > 512:  # the older half goes (the values of recent snapshots stay known)
        for key in list(_HOSTS_OF)[:256]:
            del _HOSTS_OF[key]
    _HOSTS_OF[id(value)] = (value, hosts)  # holds `value`: its id cannot be reused meanwhile


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
