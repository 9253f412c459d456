"""The mesh's Istio metrics, read the way Prometheus reads them: from each pod, per scrape.

Envoy computes Istio's standard metrics (gossamer/xds/build/telemetry.py) and exposes them as
`envoy_istiocustom_istio_*`; `istio_names` gives them Istio's names (as the pod's :15020 does).
`MeshScraper` fetches every proxy's Istio stats (pod IP, the pod's :15020 endpoint, only
`istiocustom` stats) when someone asks (`gossamer metrics`, /metrics, the dashboard), at most once
per `max_age_s`, and sums series with the same labels across pods (Istio's labels name workloads,
not pods). The work follows scrapes and proxies, never requests.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import aiohttp

from gossamer.mesh import MERGED_METRICS_PORT
from gossamer.telemetry.peer import PACKED_TAG, unpack_labels

log = logging.getLogger(__name__)

ENVOY_ISTIO_PREFIX = "envoy_istiocustom_"
MERGED_PATH = "/stats/prometheus"
SCRAPE_TIMEOUT_S = 5.0


# Envoy's Prometheus text escapes backslash, double quote and newline in label values.
_PACKED = re.compile(rf'(?:^|(?<=[{{,]))({PACKED_TAG})="((?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def _unescape(value: str) -> str:
    return re.sub(r"\\.", lambda m: _UNESCAPE.get(m.group(0), m.group(0)), value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _metric(sample_name: str) -> str:
    for suffix in _HISTOGRAM_SUFFIXES:
        if sample_name.endswith(suffix):
            return sample_name.removesuffix(suffix)
    return sample_name


def _istio_sample(line: str, local: Mapping[str, str] | None) -> str:
    """One Envoy sample line -> Istio's name and labels (the packed tag unpacked); "" to drop it."""
    name, brace, rest = line.partition("{")
    name = name.removeprefix(ENVOY_ISTIO_PREFIX)
    if not brace:
        return name
    found = _PACKED.search(rest)
    if found is None:
        return f"{name}{{{rest}"
    labels = unpack_labels(_metric(name), _unescape(found.group(2)), local)
    if labels is None:
        return ""
    expanded = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return f"{name}{{{rest[: found.start()]}{expanded}{rest[found.end() :]}"


def istio_names(text: str, local: Mapping[str, str] | None = None) -> str:
    """Envoy's `envoy_istiocustom_istio_requests_total{istio="source|http|..."}` -> Istio's
    `istio_requests_total{reporter="source",...}`: Istio's names and labels (gossamer/telemetry/peer.py:
    one packed tag per stat; `local`: the reporting proxy's own side, `peer_values`). Per scrape, one
    pass over the lines of Istio's metrics."""
    if ENVOY_ISTIO_PREFIX not in text:
        return text
    out = []
    for line in text.split("\n"):
        if line.startswith(ENVOY_ISTIO_PREFIX):
            line = _istio_sample(line, local)
            if not line:
                continue
        elif line.startswith(f"# TYPE {ENVOY_ISTIO_PREFIX}"):
            line = "# TYPE " + line.removeprefix(f"# TYPE {ENVOY_ISTIO_PREFIX}")
        out.append(line)
    return "\n".join(out)


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def merge_expositions(texts: Iterable[str], *, prefix: str = "istio_") -> str:
    """Prometheus text expositions -> one, the samples of equal name and labels summed (families
    whose name starts with `prefix` only)."""
    kinds: dict[str, str] = {}
    series: dict[str, dict[str, float]] = {}
    for text in texts:
        family = ""
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                parts = line.split(" ")
                family = parts[2] if len(parts) >= 4 and parts[2].startswith(prefix) else ""
                if family:
                    kinds.setdefault(family, parts[3])
                    series.setdefault(family, {})
            elif family and line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                try:
                    number = float(value)
                except ValueError:
                    continue
                bucket = series[family]
                bucket[key] = bucket.get(key, 0.0) + number
    out: list[str] = []
    for family in sorted(series):
        out.append(f"# TYPE {family} {kinds[family]}")
        out.extend(f"{key} {_number(value)}" for key, value in series[family].items())
    return "\n".join(out) + ("\n" if out else "")


@dataclass(frozen=True)
class ScrapeTarget:
    namespace: str
    pod: str
    ip: str


class MeshScraper:
    """Every proxy's Istio metrics, summed across pods; a scrape at most every `max_age_s`."""

    def __init__(
        self,
        targets: Callable[[], list[ScrapeTarget]],
        *,
        port: int = MERGED_METRICS_PORT,
        path: str = MERGED_PATH,
        max_age_s: float = 1.0,
    ) -> None:
        self._targets = targets
        self._url = f"http://{{ip}}:{port}{path}?filter=istiocustom"
        self._max_age_s = max_age_s
        self._text = ""
        self._at = 0.0
        self._lock = asyncio.Lock()
        self.scrapes = 0
        self.failures: dict[str, str] = {}

    async def _one(self, session: aiohttp.ClientSession, target: ScrapeTarget) -> str:
        try:
            async with session.get(self._url.format(ip=target.ip)) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}")
                self.failures.pop(f"{target.namespace}/{target.pod}", None)
                return istio_names(await resp.text())
        except (TimeoutError, aiohttp.ClientError, RuntimeError) as e:
            self.failures[f"{target.namespace}/{target.pod}"] = str(e) or type(e).__name__
            return ""

    async def text(self) -> str:
        """Istio's metrics of the whole mesh, in Prometheus' text format."""
        async with self._lock:
            if time.monotonic() - self._at < self._max_age_s:
                return self._text
            targets = [t for t in self._targets() if t.ip]
            timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                texts = await asyncio.gather(*(self._one(session, t) for t in targets))
            self._text = merge_expositions(texts)
            self._at = time.monotonic()
            self.scrapes += 1
            return self._text
