"""Telemetry: Istio's standard metrics (computed inside Envoy, gossamer/xds/build/telemetry.py;
merged per pod on :15020 and scraped, merge.py, scrape.py), the control plane's own metrics
(istiod's pilot_*, controlplane.py) and distributed tracing (the Zipkin collector, tracing.py)."""

from gossamer.telemetry.tracing import SpanStore, ZipkinCollector

__all__ = ["SpanStore", "ZipkinCollector"]
