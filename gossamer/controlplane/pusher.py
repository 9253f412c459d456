"""Debounced pushes: one merged request pending at a time, one translation per proxy group.

Like Istio's DiscoveryServer: changes are coalesced for `debounce` seconds of
quiet (never longer than `max_delay`), then every connected group is
re-translated (full push) or only its endpoints are rebuilt (EDS fast path).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy
from gossamer.translate import translate_proxy, translate_proxy_endpoints
from gossamer.xds.build import build_endpoint_resources, build_resources
from gossamer.xds.cache import ConfigCache
from gossamer.xds.envoyfilter import apply_envoy_filters

log = logging.getLogger(__name__)


@dataclass
class PushStats:
    full_pushes: int = 0
    endpoint_pushes: int = 0
    last_push_seconds: float = 0.0
    history: list[tuple[float, str]] = field(default_factory=list)
    # proxy group -> EnvoyFilter patches that could not be applied at its last full push (skipped, as Istio)
    patch_errors: dict[str, list[str]] = field(default_factory=dict)


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
        self._first_request = 0.0
        self._last_request = 0.0
        self._wake = asyncio.Event()
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
            self._push_group(self._snapshot(), group, proxy, full=True)
        return group

    def proxy_disconnected(self, group: str) -> None:
        self._members[group] = self._members.get(group, 1) - 1
        if self._members[group] <= 0:
            self._members.pop(group, None)
            self._groups.pop(group, None)
            self.stats.patch_errors.pop(group, None)
            self._cache.remove_group(group)

    @property
    def pending(self) -> bool:
        return self._pending_full or self._pending_eds

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
            try:
                self.push_now(full=full)
            except Exception:  # a translation bug must not stop future pushes
                log.exception("push failed")

    def push_now(self, *, full: bool) -> None:
        started = time.monotonic()
        snapshot = self._snapshot()
        for group, proxy in list(self._groups.items()):
            self._push_group(snapshot, group, proxy, full=full)
        if full:
            self.pushed_revision = max(self.pushed_revision, snapshot.version)
        elapsed = time.monotonic() - started
        self.stats.last_push_seconds = elapsed
        if full:
            self.stats.full_pushes += 1
        else:
            self.stats.endpoint_pushes += 1
        self.stats.history = [*self.stats.history[-49:], (elapsed, "full" if full else "eds")]

    def _push_group(self, snapshot: MeshSnapshot, group: str, proxy: Proxy, *, full: bool) -> None:
        if full or not self._cache.has_group(group):
            # EnvoyFilters are the last step: they patch (copies of) the built protos.
            patched = apply_envoy_filters(snapshot, proxy, build_resources(translate_proxy(snapshot, proxy)))
            if patched.errors:
                self.stats.patch_errors[group] = patched.errors
            else:
                self.stats.patch_errors.pop(group, None)
            self._cache.set_group(group, patched.resources)
        else:
            self._cache.set_endpoints(group, build_endpoint_resources(translate_proxy_endpoints(snapshot, proxy)))
