"""The control plane's own metrics, under istiod's names (prometheus-client).

* `pilot_xds_pushes{type}`: responses sent to proxies per xDS type (cds, eds, lds, rds, sds)
* `pilot_total_xds_rejects{type}`: NACKs received per type
* `pilot_xds{version}`: proxies connected now
* `pilot_push_triggers{type}`: pushes started, by what asked for them (config, endpoint, proxy)
* `pilot_xds_push_time{type}`: seconds one push took to translate, build and queue (full / eds)
* `pilot_proxy_convergence_time`: seconds from the first change a push carries to the push being
  queued to every proxy (the debounce included), as istiod measures it

istiod exposes its counters without the `_total` suffix (its dashboards query `pilot_xds_pushes`),
so they are served as untyped samples of exactly those names.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# istiod's buckets for both histograms (seconds).
BUCKETS = (0.1, 0.5, 1, 3, 5, 10, 20, 30)
PUSH_TIME_BUCKETS = (0.01, 0.1, 0.5, 1, 3, 5, 10, 20, 30)
XDS_TYPES = {
    "Cluster": "cds",
    "ClusterLoadAssignment": "eds",
    "Listener": "lds",
    "RouteConfiguration": "rds",
    "Secret": "sds",
}


def xds_type(type_url: str) -> str:
    """`type.googleapis.com/envoy.config.cluster.v3.Cluster` -> istiod's `cds`."""
    return XDS_TYPES.get(type_url.rsplit(".", 1)[-1], type_url.rsplit(".", 1)[-1].lower())


class _Counters(Collector):
    def __init__(self, metrics: PilotMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for name, doc, tally in (
            ("pilot_xds_pushes", "Pushes to proxies, per xDS type", self.metrics.pushes),
            ("pilot_total_xds_rejects", "Config rejected (NACKed) by proxies, per xDS type", self.metrics.rejects),
            ("pilot_push_triggers", "Pushes started, by trigger", self.metrics.triggers),
        ):
            family = Metric(name, doc, "unknown")
            for label, value in sorted(tally.items()):
                family.add_sample(name, {"type": label}, float(value))
            yield family
        connected = GaugeMetricFamily("pilot_xds", "Proxies connected to this control plane", labels=["version"])
        connected.add_metric(["gossamer"], float(self.metrics.connected()))
        yield connected


class PilotMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.pushes: Tally[str] = Tally()
        self.rejects: Tally[str] = Tally()
        self.triggers: Tally[str] = Tally()
        self.connected: Callable[[], int] = lambda: 0
        self.push_time = Histogram(
            "pilot_xds_push_time",
            "Seconds to translate, build and queue one push",
            ["type"],
            buckets=PUSH_TIME_BUCKETS,
            registry=self.registry,
        )
        self.convergence = Histogram(
            "pilot_proxy_convergence_time",
            "Seconds from a change to its push queued to every proxy",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Counters(self))

    def sent(self, type_url: str) -> None:
        self.pushes[xds_type(type_url)] += 1

    def rejected(self, type_url: str) -> None:
        self.rejects[xds_type(type_url)] += 1

    def triggered(self, trigger: str) -> None:
        self.triggers[trigger] += 1

    def pushed(self, *, full: bool, seconds: float, since_change: float | None) -> None:
        self.push_time.labels(type="full" if full else "eds").observe(seconds)
        if since_change is not None:
            self.convergence.observe(since_change)


# One control plane per process: the ADS server and the pusher report here, /metrics serves it.
PILOT = PilotMetrics()
