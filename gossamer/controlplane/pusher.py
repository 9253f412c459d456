"""Debounced pushes: one merged request pending at a time, translation shared per outbound scope.

Like Istio's DiscoveryServer: changes are coalesced for `debounce` seconds of quiet (pod changes alone:
`endpoint_debounce`; never longer than `max_delay`), then one push translates the snapshot for every
connected proxy group (full push) or only rebuilds endpoints (EDS fast path: once per endpoint scope - the
services its proxies see - written once for all the scope's groups, which share one snapshot of them). A sidecar
group's outbound config is translated, built and serialized once per outbound scope (translate.outbound_scope)
and shared by every group of that scope; only its inbound part is its own. A push yields to the event loop
between groups, so the API and the ADS streams keep being served while it runs. A group whose translation fails
keeps its last config and its error (`errors`); every other group is still pushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import sys
import time
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, cast

from google.protobuf import any_pb2

from gossamer.ir.types import RouteTable
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy
from gossamer.resources.networking import Sidecar
from gossamer.telemetry.controlplane import PILOT
from gossamer.translate import (
    endpoint_scope,
    outbound_cluster_set,
    outbound_endpoints,
    outbound_listeners,
    outbound_scope,
    translate_inbound,
    translate_proxy,
)
from gossamer.translate.clusters import endpoint_sets_for
from gossamer.translate.envoyfilter import envoy_filters_for
from gossamer.translate.incremental import (
    ConfigKey,
    carry_over,
    hosts_worked_out,
    same_hosts,
    stale_endpoints,
    stale_value,
)
from gossamer.xds.build import build_resources, packed_cluster, packed_endpoints, packed_listener
from gossamer.xds.build.routes import route_table_header, virtual_host_entry
from gossamer.xds.cache import ConfigCache, Layered, Packed, SharedResources, pack_all, resource_hash
from gossamer.xds.envoyfilter import apply_envoy_filters
from gossamer.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from gossamer.xds.vhds import remember_parts

log = logging.getLogger(__name__)

# A push gives the event loop back after this much work (seconds). An API request takes the loop three or four
# iterations (accept, read, answer), each after a slice: at 1000 services, with the ADS thread and the translator
# wanting the GIL too, with 20 ms slices the API waited up to ~160 ms while a push was applied (BENCH_STALLS).
SLICE = 0.005
# Young objects are collected after 100,000 allocations (default 700); the old generation is not collected
# automatically (a full collection walks the whole heap: ~1 s at 1000 services, every thread stopped) but
# by the push loop, after a push when nothing is pending, at most every FULL_GC_INTERVAL seconds.
# What a translation leaves behind (the translated, built and serialized config: millions of objects at 1000
# services) is moved out of the collector's generations (gc.freeze, which costs nothing) as soon as a group is
# computed: otherwise it sits in the middle generation until a collection of that generation walks all of it
# (up to 2 s at 1000 services, every thread - the API's and the streams' - stopped meanwhile). Frozen objects
# are still freed when their last reference goes; only reference cycles among them wait for the full collection.
GC_THRESHOLDS = (100_000, 50, 1_000_000)
FULL_GC_INTERVAL = 600.0

# An endpoint push alone (pods changed: the runtime reports a change in one report) waits for this much quiet,
# not `debounce`: it is the EDS fast path (tens of ms at 1000 services), and every proxy that sees the pod waits
# for it - as Istio can (PILOT_ENABLE_EDS_DEBOUNCE=false), only shorter, not none: a burst of reports still merges.
ENDPOINT_DEBOUNCE = 0.02

GroupResources = dict[str, Mapping[str, Packed]]
# Groups (with the proxy each was registered with) and what they all get.
Batch = tuple[list[tuple[str, Proxy]], "GroupResources | Exception"]

T = TypeVar("T")

# Translations run on one worker thread, one after the other. Pure Python under the GIL gains nothing from
# more threads, and every thread that wants the GIL delays the API's loop and the ADS streams' loop each time
# they come back from I/O: with asyncio's default pool, a connection storm ran up to six translations at once.
_TRANSLATOR: ThreadPoolExecutor | None = None


async def _on_translator(fn: Callable[..., T], *args: Any) -> T:
    global _TRANSLATOR
    if _TRANSLATOR is None:
        _TRANSLATOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="translate")
    return await asyncio.get_running_loop().run_in_executor(_TRANSLATOR, functools.partial(fn, *args))


@dataclass
class PushStats:
    full_pushes: int = 0
    endpoint_pushes: int = 0
    last_push_seconds: float = 0.0
    history: list[tuple[float, str]] = field(default_factory=list)
    # proxy group -> EnvoyFilter patches that could not be applied at its last full push (skipped, as Istio)
    patch_errors: dict[str, list[str]] = field(default_factory=dict)
    # proxy group -> why its config could not be translated (it keeps its last config meanwhile)
    errors: dict[str, str] = field(default_factory=dict)


class Pusher:
    def __init__(
        self,
        cache: ConfigCache,
        snapshot: Callable[[], MeshSnapshot],
        *,
        debounce: float = 0.05,
        max_delay: float = 0.5,
        endpoint_debounce: float = ENDPOINT_DEBOUNCE,
    ) -> None:
        self._cache = cache
        self._snapshot = snapshot
        self._debounce = debounce
        self._endpoint_debounce = min(debounce, endpoint_debounce)
        self._max_delay = max_delay
        self._groups: dict[str, Proxy] = {}
        self._members: dict[str, int] = {}
        self._pending_full = False
        self._pending_eds = False
        # The config changes merged into the pending push (None: unknown, translate everything).
        self._pending_changes: set[ConfigKey] | None = set()
        self._pushing = False
        # Per group: the resource mappings it was last given, per type (unchanged ones are not re-sent).
        self._given: dict[str, dict[str, object]] = {}
        # Per group: its endpoint scope, and the Sidecars and proxy it was worked out for.
        self._endpoint_scopes: dict[str, tuple[object, Proxy, Hashable]] = {}
        self._first_request = 0.0
        self._last_request = 0.0
        self._wake = asyncio.Event()
        # The snapshot of the latest push: proxies connecting in between are translated from it (a
        # change since then has a push pending, which brings them up to date).
        self._current: MeshSnapshot | None = None
        self.stats = PushStats()
        # The store revision the last full push translated: config up to it is in the cache.
        self.pushed_revision = 0

    # -- proxy groups ------------------------------------------------------
    async def proxy_connected(self, proxy: Proxy) -> str:
        """Register a proxy; translate its group (off the event loop) if nobody else is in it yet."""
        group = proxy.group
        self._members[group] = self._members.get(group, 0) + 1
        if group not in self._groups:
            self._groups[group] = proxy
            PILOT.triggered("proxy")
            if self._current is None:
                self._current = self._snapshot()
            snapshot = self._current
            result = await _on_translator(self._connected, snapshot, group, proxy)
            # A push since then covers this group with a newer snapshot: this result is stale.
            if snapshot is self._current and self._groups.get(group) is proxy:
                self._apply(group, result)
        return group

    def _connected(self, snapshot: MeshSnapshot, group: str, proxy: Proxy) -> GroupResources | Exception:
        """A new group's resources; its endpoint scope worked out now too (the first pod change after a connection
        storm worked out all of them: ~5 ms at 1000 services, before its first response)."""
        with contextlib.suppress(Exception):  # (an error here is _compute's to report)
            self._endpoint_scope(snapshot, group, proxy)
        return self._compute(snapshot, group, proxy, True)

    def proxy_disconnected(self, group: str) -> None:
        self._members[group] = self._members.get(group, 1) - 1
        if self._members[group] <= 0:
            self._members.pop(group, None)
            self._groups.pop(group, None)
            self.stats.patch_errors.pop(group, None)
            self.stats.errors.pop(group, None)
            self._given.pop(group, None)
            self._endpoint_scopes.pop(group, None)
            self._cache.remove_group(group)

    @property
    def pending(self) -> bool:
        return self._pending_full or self._pending_eds or self._pushing

    def groups(self) -> dict[str, Proxy]:
        return dict(self._groups)

    # -- requests ----------------------------------------------------------
    def request_push(self, *, full: bool, changed: set[ConfigKey] | None = None) -> None:
        """Ask for a push: a full one for config CHANGED (kind, namespace, name; None: unknown), or an
        endpoint push (pods changed)."""
        now = time.monotonic()
        if not (self._pending_full or self._pending_eds):
            self._first_request = now
        self._last_request = now
        if full:
            self._pending_full = True
            if changed is None or self._pending_changes is None:
                self._pending_changes = None
            else:
                self._pending_changes |= changed
        else:
            self._pending_eds = True
        PILOT.triggered("config" if full else "endpoint")
        self._wake.set()

    async def run(self) -> None:
        # The control plane keeps a large long-lived heap (snapshots, translated and serialized config):
        # with Python's default thresholds full collections come every few pushes (see GC_THRESHOLDS).
        gc.set_threshold(GC_THRESHOLDS[0], GC_THRESHOLDS[1], GC_THRESHOLDS[2])
        # Translation runs on worker threads: hand the GIL back to the event loop every millisecond (not 5),
        # so the API and the streams are served while a thread works.
        sys.setswitchinterval(0.001)
        last_full_gc = time.monotonic()
        while True:
            await self._wake.wait()
            # Debounce: wait for quiet, but never longer than max_delay after the first request.
            while True:
                now = time.monotonic()
                debounce = self._debounce if self._pending_full else self._endpoint_debounce
                quiet_at = self._last_request + debounce
                deadline = self._first_request + self._max_delay
                if now >= quiet_at or now >= deadline:
                    break
                await asyncio.sleep(min(quiet_at, deadline) - now)
            self._wake.clear()
            full, self._pending_full, self._pending_eds = self._pending_full, False, False
            changed, self._pending_changes = self._pending_changes, set()
            self._pushing = True
            try:
                await self.push(full=full, changed=changed, since=self._first_request)
            except Exception:  # a bug must not stop future pushes
                log.exception("push failed")
            finally:
                self._pushing = False
            if not self.pending and time.monotonic() - last_full_gc > FULL_GC_INTERVAL:
                gc.unfreeze()
                gc.collect()  # cyclic garbage that reached the old generation, or was frozen
                gc.freeze()
                last_full_gc = time.monotonic()

    async def push(self, *, full: bool, changed: set[ConfigKey] | None = None, since: float | None = None) -> None:
        """One push to every connected group. CHANGED: the config changes since the last push (None:
        unknown); pod changes are found by comparing. Translation and serialization run off the event loop
        (pure work on an immutable snapshot); the results go into the cache on the loop, in slices of
        SLICE seconds, so streams and the API keep being served. SINCE: when the first change it carries
        was asked for (istiod's convergence time)."""
        started = time.monotonic()
        snapshot = self._snapshot()
        groups = list(self._groups.items())
        if full:
            results = await _on_translator(self._compute_all, snapshot, groups, full, changed)
            batches = [([member], result) for member, result in zip(groups, results, strict=True)]
        else:
            batches = await _on_translator(self._compute_endpoints, snapshot, groups)
        slice_start = time.monotonic()
        for members, result in batches:
            self._apply_batch(members, result)
            if time.monotonic() - slice_start > SLICE:
                await asyncio.sleep(0)
                slice_start = time.monotonic()
        self._finish(snapshot, full, time.monotonic() - started, since)

    def push_now(self, *, full: bool, changed: set[ConfigKey] | None = None) -> None:
        """The same push, all on the caller's thread (tests, tools)."""
        started = time.monotonic()
        snapshot = self._snapshot()
        groups = list(self._groups.items())
        if full:
            for (group, _proxy), result in zip(groups, self._compute_all(snapshot, groups, full, changed), strict=True):
                self._apply(group, result)
        else:
            for members, result in self._compute_endpoints(snapshot, groups):
                self._apply_batch(members, result)
        self._finish(snapshot, full, time.monotonic() - started)

    def _compute_all(
        self, snapshot: MeshSnapshot, groups: list[tuple[str, Proxy]], full: bool, changed: set[ConfigKey] | None
    ) -> list[GroupResources | Exception]:
        self._carry_over(snapshot, changed)
        return [self._compute(snapshot, group, proxy, full) for group, proxy in groups]

    def _carry_over(self, snapshot: MeshSnapshot, changed: set[ConfigKey] | None) -> None:
        if snapshot is not self._current:
            # What the changes since the last push did not touch is not translated again.
            carry_over(self._current, snapshot, changed)
            self._current = snapshot

    def _compute_endpoints(self, snapshot: MeshSnapshot, groups: list[tuple[str, Proxy]]) -> list[Batch]:
        """An endpoint push (pods changed, no config): per endpoint scope (the services its proxies see), its
        endpoints - computed once, and written once for all its groups (_apply_batch), not per group: a
        proxy's EDS is its scope's. A group the cache does not have yet is translated whole, alone."""
        self._carry_over(snapshot, set())
        batches: list[Batch] = []
        by_scope: dict[Hashable, list[tuple[str, Proxy]]] = {}
        for group, proxy in groups:
            if not self._cache.has_group(group):
                batches.append(([(group, proxy)], self._compute(snapshot, group, proxy, True)))
                continue
            try:
                scope = self._endpoint_scope(snapshot, group, proxy)
            except Exception as e:  # contained, as _compute's
                batches.append(([(group, proxy)], e))
                continue
            by_scope.setdefault(scope, []).append((group, proxy))
        for members in by_scope.values():
            group, proxy = members[0]
            batches.append((members, self._compute(snapshot, group, proxy, False)))
        return batches

    def _endpoint_scope(self, snapshot: MeshSnapshot, group: str, proxy: Proxy) -> Hashable:
        """translate.endpoint_scope, kept per group while the Sidecars are the same (a pod change does not move a
        proxy to another scope, nor does another config change: it depends on the proxy's namespace, labels and
        type, and the Sidecars alone). (~5 us per group: 5 ms at 1000 services, for the first pod change after
        any config change.)"""
        sidecars = snapshot.of_kind(Sidecar)
        found = self._endpoint_scopes.get(group)
        if found is not None and found[1] is proxy and (found[0] is sidecars or found[0] == sidecars):
            return found[2]
        scope = endpoint_scope(snapshot, proxy)
        self._endpoint_scopes[group] = (sidecars, proxy, scope)
        return scope

    def _finish(self, snapshot: MeshSnapshot, full: bool, elapsed: float, since: float | None = None) -> None:
        if full:
            self.pushed_revision = max(self.pushed_revision, snapshot.version)
            self.stats.full_pushes += 1
        else:
            self.stats.endpoint_pushes += 1
        self.stats.last_push_seconds = elapsed
        self.stats.history = [*self.stats.history[-49:], (elapsed, "full" if full else "eds")]
        PILOT.pushed(full=full, seconds=elapsed, since_change=time.monotonic() - since if since is not None else None)

    def _compute(self, snapshot: MeshSnapshot, group: str, proxy: Proxy, full: bool) -> GroupResources | Exception:
        """The group's resources (everything, or only endpoints), or why they could not be translated."""
        try:
            if full or not self._cache.has_group(group):
                resources = self._group_resources(snapshot, group, proxy)
                self._cache.prepare(group, resources)  # (its route tables split for VHDS here, off the loop)
                return resources
            return {ENDPOINT: _packed_endpoints(snapshot, proxy)}
        except Exception as e:  # contained: this group keeps its last config, the others go on
            return e
        finally:
            gc.freeze()  # what it built lives on: out of the collector's generations (see GC_THRESHOLDS)

    def _apply_batch(self, members: list[tuple[str, Proxy]], result: GroupResources | Exception) -> None:
        """RESULT for each of MEMBERS (groups of one endpoint scope, or one group) still connected as they were; a
        shared mapping written to all of them at once (ConfigCache.set_shared: compared and versioned once, one
        notification for all)."""
        live = [group for group, proxy in members if self._groups.get(group) is proxy]  # (not disconnected meanwhile)
        if len(members) == 1 or isinstance(result, Exception) or set(result) != {ENDPOINT}:
            for group in live:
                self._apply(group, result)
            return
        endpoints = result[ENDPOINT]
        fresh = [g for g in live if self._given.setdefault(g, {}).get(ENDPOINT) is not endpoints]
        self._cache.set_shared(fresh, ENDPOINT, endpoints)
        for group in fresh:
            self._given[group][ENDPOINT] = endpoints
        for group in live:
            self.stats.errors.pop(group, None)

    def _apply(self, group: str, result: GroupResources | Exception) -> None:
        if isinstance(result, Exception):
            message = f"{type(result).__name__}: {result}"
            if self.stats.errors.get(group) != message:
                log.error("proxy group %s: translation failed (its last config stays)", group, exc_info=result)
            self.stats.errors[group] = message
            return
        # Only the types whose mappings are not the very ones the group already has.
        given = self._given.setdefault(group, {})
        fresh = {t: m for t, m in result.items() if given.get(t) is not m}
        self._cache.set_group_packed(group, fresh, partial=self._cache.has_group(group))
        given.update(fresh)
        self.stats.errors.pop(group, None)

    def _group_resources(self, snapshot: MeshSnapshot, group: str, proxy: Proxy) -> GroupResources:
        if proxy.type == "sidecar" and not envoy_filters_for(snapshot, proxy):
            self.stats.patch_errors.pop(group, None)
            return _sidecar_resources(snapshot, proxy)
        # Gateways, and proxies with EnvoyFilters (the last step: they patch copies of the built protos).
        config = translate_proxy(snapshot, proxy)
        if config.envoy_filters is None:
            # Nothing patches them: the clusters and endpoints packed once per scope (a gateway's thousands are
            # not serialized again at every push), the rest built.
            self.stats.patch_errors.pop(group, None)
            unpatched: GroupResources = dict(pack_all(build_resources(replace(config, clusters=(), endpoints=()))))
            unpatched[CLUSTER] = _packed_clusters(snapshot, proxy)
            unpatched[ENDPOINT] = _packed_endpoints(snapshot, proxy)
            return unpatched
        patched = apply_envoy_filters(config.envoy_filters, build_resources(config), group=proxy.group)
        if patched.errors:
            self.stats.patch_errors[group] = patched.errors
        else:
            self.stats.patch_errors.pop(group, None)
        out: GroupResources = dict(pack_all(patched.resources))
        out[ENDPOINT] = _packed_endpoints(snapshot, proxy)  # EnvoyFilters do not patch endpoints
        return out


def _sidecar_resources(snapshot: MeshSnapshot, proxy: Proxy) -> GroupResources:
    """A sidecar group's resources: its outbound scope's (shared, serialized once) and its own inbound
    part, merged once per snapshot and group - and carried over, whole, while neither changes."""
    scope = outbound_scope(snapshot, proxy)
    listeners = snapshot.derived(("packed_listeners", scope), lambda: _packed_listeners(snapshot, proxy))
    clusters = _packed_clusters(snapshot, proxy)
    inbound_listener, inbound_clusters = snapshot.derived(
        ("packed_inbound", proxy), lambda: _packed_inbound(snapshot, proxy)
    )
    return {
        LISTENER: _merged(snapshot, ("group_listeners", proxy), listeners[LISTENER], inbound_listener),
        CLUSTER: _merged(snapshot, ("group_clusters", proxy), clusters, inbound_clusters),
        ROUTE: listeners[ROUTE],
        ENDPOINT: _packed_endpoints(snapshot, proxy),
    }


def _packed_clusters(snapshot: MeshSnapshot, proxy: Proxy) -> SharedResources:
    """The static and outbound clusters of the proxy's outbound scope, packed once per scope."""
    return snapshot.derived(
        ("packed_clusters", outbound_scope(snapshot, proxy)),
        lambda: SharedResources((c.name, packed_cluster(c)) for c in outbound_cluster_set(snapshot, proxy)),
    )


def _merged(
    snapshot: MeshSnapshot, key: tuple[str, Proxy], shared: Mapping[str, Packed], own: Mapping[str, Packed]
) -> Mapping[str, Packed]:
    """SHARED and OWN as one mapping (layered, not copied: SHARED is the scope's, see Layered): the same
    object while both parts are the same objects (a carried over snapshot value), so an unchanged type is
    not even compared."""
    found = snapshot.derived(key, lambda: (shared, own, Layered(shared, own)))
    if found[0] is not shared or found[1] is not own:
        found = (shared, own, Layered(shared, own))
        snapshot.derived_set(key, found)
    return found[2]


def _packed_listeners(snapshot: MeshSnapshot, proxy: Proxy) -> dict[str, SharedResources]:
    listeners, tables = outbound_listeners(snapshot, proxy)
    scope = outbound_scope(snapshot, proxy)
    # A VirtualService change that left the scope's listeners as they were: the same packed ones (not even
    # compared by the cache).
    before = stale_value(snapshot, ("outbound_listeners", scope))
    packed_before = stale_value(snapshot, ("packed_listeners", scope))
    if before is not None and packed_before is not None and before[0][0] is listeners:
        packed = packed_before[0][LISTENER]
    else:
        packed = SharedResources((x.name, packed_listener(x)) for x in listeners)
    return {
        LISTENER: packed,
        ROUTE: SharedResources((t.name, _packed_route_table(snapshot, scope, t)) for t in tables),
    }


def _packed_route_table(snapshot: MeshSnapshot, scope: Hashable, table: RouteTable) -> Packed:
    """A route table serialized from its virtual hosts' serialized entries, each kept (and carried over)
    while its virtual host is the same object."""
    parts = [route_table_header(table)]
    for vhost in table.virtual_hosts:
        key = ("vhost_bytes", scope, table.name, vhost.name)
        found = snapshot.derived_get(key)
        if found is None or found[0] is not vhost:
            found = (vhost, virtual_host_entry(vhost))
            snapshot.derived_set(key, found)
        parts.append(found[1])
    data = b"".join(parts)
    version = resource_hash(data)
    remember_parts(table.name, version, tuple(parts))  # (VHDS splits it by its parts: xds/vhds.py)
    return any_pb2.Any(type_url=ROUTE, value=data), version


def _packed_inbound(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[dict[str, Packed], dict[str, Packed]]:
    listener, clusters = translate_inbound(snapshot, proxy)
    return {listener.name: packed_listener(listener)}, {c.name: packed_cluster(c) for c in clusters}


def _packed_endpoints(snapshot: MeshSnapshot, proxy: Proxy) -> SharedResources:
    key = ("packed_endpoints", endpoint_scope(snapshot, proxy))

    def compute() -> SharedResources:
        stale = stale_endpoints(snapshot, key)
        if stale is not None:  # a pod change: only the moved hosts' endpoints are packed again
            found = _with_hosts_replaced(snapshot, proxy.namespace, *stale)
            if found is not None:
                return cast(SharedResources, same_hosts(key[0], stale[0], found))
        sets = outbound_endpoints(snapshot, proxy)
        packed = SharedResources((e.cluster, packed_endpoints(e)) for e in sets)
        return cast(SharedResources, hosts_worked_out(key[0], packed, like=sets))

    return snapshot.derived(key, compute)


def _with_hosts_replaced(
    snapshot: MeshSnapshot, namespace: str, old: SharedResources, hosts: frozenset[str]
) -> SharedResources | None:
    """OLD with the endpoints of HOSTS packed again; None where that would not be the whole translation (a
    host of several services)."""
    replaced: dict[str, Packed] = {}
    for host in hosts:
        service = snapshot.service_by_host(host)
        if service is None or host in snapshot.hostnames_of_several_services():
            return None
        for e in endpoint_sets_for(snapshot, service, namespace):
            if e.cluster not in old:
                return None
            replaced[e.cluster] = packed_endpoints(e)
    return old.replaced(replaced)
