"""What each connected proxy was sent and what it ACKed or NACKed, per xDS type: the status the ADS
server keeps for every stream (`AdsServer.proxies()`), read by `gossamer status`, the dashboard and
`wait_synced`. Apart from the server so that its readers need not know how streams are served."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gossamer.xds.cache import ConfigCache
from gossamer.xds.types import CLUSTER, LISTENER


@dataclass
class ProxyTypeStatus:
    type_url: str
    sent_version: str = ""
    acked_version: str = ""
    nonce: str = ""  # latest nonce sent for this type
    nacked_version: str | None = None  # set while the latest response sent is NACKed
    error: str | None = None  # Envoy's error_detail.message for the NACK
    last_sent: float = 0.0
    last_ack: float = 0.0


@dataclass
class ProxyStatus:
    node_id: str
    group: str
    metadata: dict[str, Any]
    connected_at: float
    types: dict[str, ProxyTypeStatus] = field(default_factory=dict)
    stream_id: int = 0
    delta: bool = False  # incremental (Delta) ADS stream rather than State-of-the-World
    _cache: ConfigCache | None = field(default=None, repr=False, compare=False)

    @property
    def synced(self) -> dict[str, str]:
        """Per subscribed type: "SYNCED" | "STALE" | "NACKED" | "NOT SENT"."""
        out: dict[str, str] = {}
        for type_url, ts in list(self.types.items()):  # (added to by the ADS thread)
            current = self._cache.version(self.group, type_url) if self._cache is not None else ""
            if ts.acked_version and ts.acked_version == current:
                out[type_url] = "SYNCED"
            elif ts.nacked_version is not None:
                out[type_url] = "NACKED"
            elif not ts.sent_version:
                out[type_url] = "NOT SENT"
            else:
                out[type_url] = "STALE"
        return out

    def is_synced(self) -> bool:
        """Every subscribed type ACKed at the cache's current version.

        Envoy subscribes to LDS only after CDS has finished warming, so a proxy that
        has not asked for one of the wildcard types yet (while its group has some of
        them) is not synced either - otherwise wait_synced could succeed too early.
        """
        cache = self._cache
        if cache is None:
            return False
        # (Most often asked of streams in the middle of a push: the versions first, they decide it then.)
        for type_url, ts in list(self.types.items()):  # (added to by the ADS thread)
            current = cache.version(self.group, type_url)
            if current and ts.acked_version != current:
                return False
        for type_url in (CLUSTER, LISTENER):
            if type_url not in self.types and cache.get(self.group, type_url)[1]:
                return False
        # Route configurations delivered over VHDS: Envoy opens their streams once it has them.
        return all(key in self.types for key in cache.vhds_keys(self.group))
