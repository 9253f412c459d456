"""Debounced pushes: one merged request pending at a time, translation shared per outbound scope.

Like Istio's DiscoveryServer: changes are coalesced for `debounce` seconds of quiet (never longer than
`max_delay`), then one push translates the snapshot for every connected proxy group (full push) or
only rebuilds endpoints (EDS fast path). A sidecar group's outbound config is translated, built and
serialized once per outbound scope (translate.outbound_scope) and shared by every group of that
scope; only its inbound part is its own. A push yields to the event loop between groups, so the API
and the ADS streams keep being served while it runs. A group whose translation fails keeps its last
config and its error (`errors`); every other group is still pushed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy
from gossamer.translate import (
    outbound_endpoints,
    outbound_scope,
    translate_inbound,
    translate_outbound,
    translate_proxy,
)
from gossamer.xds.build import build_resources, packed_cluster, packed_endpoints, packed_listener, packed_route_table
from gossamer.xds.cache import ConfigCache, Packed, SharedResources, pack_all
from gossamer.xds.envoyfilter import apply_envoy_filters, envoy_filters_for
from gossamer.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

log = logging.getLogger(__name__)

# A push gives the event loop back after this much work (seconds).
SLICE = 0.02

GroupResources = dict[str, Mapping[str, Packed]]


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
    def __init__(self, cache: ConfigCache, snapshot: Callable[[], MeshSnapshot], *,
                 debounce: float = 0.05, max_delay: float = 0.5) -> None:
        self._cache = cache
        self._snapshot = snapshot
        self._debounce = debounce
        self._max_delay = max_delay
        self._groups: dict[str, Proxy] = {}
        self._members: dict[str, int] = {}
        self._pending_full = False
        self._pending_eds = False
        self._pushing = False
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
    def proxy_connected(self, proxy: Proxy) -> str:
        """Register a proxy; translate its group now if nobody else is in it yet."""
        group = proxy.group
        self._members[group] = self._members.get(group, 0) + 1
        if group not in self._groups:
            self._groups[group] = proxy
            if self._current is None:
                self._current = self._snapshot()
            self._push_group(self._current, group, proxy, full=True)
        return group

    def proxy_disconnected(self, group: str) -> None:
        self._members[group] = self._members.get(group, 1) - 1
        if self._members[group] <= 0:
            self._members.pop(group, None)
            self._groups.pop(group, None)
            self.stats.patch_errors.pop(group, None)
            self.stats.errors.pop(group, None)
            self._cache.remove_group(group)

    @property
    def pending(self) -> bool:
        return self._pending_full or self._pending_eds or self._pushing

    def groups(self) -> dict[str, Proxy]:
        return dict(self._groups)

    # -- requests ----------------------------------------------------------
    def request_push(self, *, full: bool) -> None:
        now = time.monotonic()
        if not (self._pending_full or self._pending_eds):
            self._first_request = now
        self._last_request = now
        if full:
            self._pending_full = True
        else:
            self._pending_eds = True
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            # Debounce: wait for quiet, but never longer than max_delay after the first request.
            while True:
                now = time.monotonic()
                quiet_at = self._last_request + self._debounce
                deadline = self._first_request + self._max_delay
                if now >= quiet_at or now >= deadline:
                    break
                await asyncio.sleep(min(quiet_at, deadline) - now)
            self._wake.clear()
            full, self._pending_full, self._pending_eds = self._pending_full, False, False
            self._pushing = True
            try:
                await self.push(full=full)
            except Exception:  # a bug must not stop future pushes
                log.exception("push failed")
            finally:
                self._pushing = False

    async def push(self, *, full: bool) -> None:
        """One push to every connected group, giving the event loop back every SLICE seconds."""
        started = time.monotonic()
        snapshot = self._snapshot()
        self._current = snapshot
        slice_start = time.monotonic()
        for group, proxy in list(self._groups.items()):
            if self._groups.get(group) is not proxy:
                continue  # disconnected meanwhile
            self._push_group(snapshot, group, proxy, full=full)
            if time.monotonic() - slice_start > SLICE:
                await asyncio.sleep(0)
                slice_start = time.monotonic()
        self._finish(snapshot, full, time.monotonic() - started)

    def push_now(self, *, full: bool) -> None:
        """The same push without yielding (tests, tools)."""
        started = time.monotonic()
        snapshot = self._snapshot()
        self._current = snapshot
        for group, proxy in list(self._groups.items()):
            self._push_group(snapshot, group, proxy, full=full)
        self._finish(snapshot, full, time.monotonic() - started)

    def _finish(self, snapshot: MeshSnapshot, full: bool, elapsed: float) -> None:
        if full:
            self.pushed_revision = max(self.pushed_revision, snapshot.version)
            self.stats.full_pushes += 1
        else:
            self.stats.endpoint_pushes += 1
        self.stats.last_push_seconds = elapsed
        self.stats.history = [*self.stats.history[-49:], (elapsed, "full" if full else "eds")]

    def _push_group(self, snapshot: MeshSnapshot, group: str, proxy: Proxy, *, full: bool) -> None:
        try:
            if full or not self._cache.has_group(group):
                self._cache.set_group_packed(group, self._group_resources(snapshot, group, proxy))
            else:
                self._cache.set_endpoints_packed(group, _packed_endpoints(snapshot, proxy))
        except Exception as e:  # contained: this group keeps its last config, the others go on
            message = f"{type(e).__name__}: {e}"
            if self.stats.errors.get(group) != message:
                log.exception("proxy group %s: translation failed", group)
            self.stats.errors[group] = message
        else:
            self.stats.errors.pop(group, None)

    def _group_resources(self, snapshot: MeshSnapshot, group: str, proxy: Proxy) -> GroupResources:
        if proxy.type == "sidecar" and not envoy_filters_for(snapshot, proxy):
            self.stats.patch_errors.pop(group, None)
            shared = _packed_outbound(snapshot, proxy)
            inbound_listener, inbound_clusters = translate_inbound(snapshot, proxy)
            return {
                LISTENER: {**shared[LISTENER], inbound_listener.name: packed_listener(inbound_listener)},
                CLUSTER: {**shared[CLUSTER], **{c.name: packed_cluster(c) for c in inbound_clusters}},
                ROUTE: shared[ROUTE],
                ENDPOINT: _packed_endpoints(snapshot, proxy),
            }
        # Gateways, and proxies with EnvoyFilters (the last step: they patch copies of the built protos).
        patched = apply_envoy_filters(snapshot, proxy, build_resources(translate_proxy(snapshot, proxy)))
        if patched.errors:
            self.stats.patch_errors[group] = patched.errors
        else:
            self.stats.patch_errors.pop(group, None)
        out: GroupResources = dict(pack_all(patched.resources))
        out[ENDPOINT] = _packed_endpoints(snapshot, proxy)  # EnvoyFilters do not patch endpoints
        return out


def _packed_outbound(snapshot: MeshSnapshot, proxy: Proxy) -> dict[str, SharedResources]:
    """The outbound scope's listeners, route tables and clusters, built and serialized once per snapshot."""
    def compute() -> dict[str, SharedResources]:
        outbound = translate_outbound(snapshot, proxy)
        return {
            LISTENER: SharedResources((x.name, packed_listener(x)) for x in outbound.listeners),
            ROUTE: SharedResources((t.name, packed_route_table(t)) for t in outbound.route_tables),
            CLUSTER: SharedResources((c.name, packed_cluster(c)) for c in outbound.clusters),
        }

    return snapshot.derived(("packed_outbound", outbound_scope(snapshot, proxy)), compute)


def _packed_endpoints(snapshot: MeshSnapshot, proxy: Proxy) -> SharedResources:
    endpoints = outbound_endpoints(snapshot, proxy)  # shared per namespace and Sidecar: one object
    return snapshot.derived(("packed_endpoints", id(endpoints)),
                            lambda: SharedResources((e.cluster, packed_endpoints(e)) for e in endpoints))
