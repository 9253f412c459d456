"""Tracing of HTTP connection managers: Envoy's Zipkin tracer, as Istio configures it.

Spans go, JSON v2 over HTTP, to the bootstrap's static cluster `zipkin` (a unix socket: the
control plane's collector, gossamer/telemetry/tracing.py), so no Python is on the request path:
Envoy buffers spans and posts them in batches. Istio's settings: 128-bit trace ids, client and
server spans with their own span ids (`shared_span_context: false`: a sidecar's inbound span is
the child of the caller's outbound span), every request with `x-client-trace-id` or an upstream
sampling decision traced (client/overall sampling 100%), `random_sampling` for the others.
"""

from __future__ import annotations

from envoy.config.core.v3 import grpc_service_pb2, http_service_pb2, http_uri_pb2
from envoy.config.trace.v3 import http_tracer_pb2, opentelemetry_pb2, zipkin_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.type.tracing.v3 import custom_tag_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from gossamer.ir.types import Tracing, TracingProvider, TracingTag
from gossamer.xds.build.common import pack

ZIPKIN_CLUSTER = "zipkin"  # the bootstrap's static cluster to the collector (agent/bootstrap.py)
ZIPKIN_ENDPOINT = "/api/v2/spans"
ZIPKIN_TRACER = "envoy.tracers.zipkin"
OTEL_TRACER = "envoy.tracers.opentelemetry"


def zipkin_provider(provider: TracingProvider | None = None) -> http_tracer_pb2.Tracing.Http:
    """The built-in collector (None), or a mesh config `zipkin` provider's service."""
    config = zipkin_pb2.ZipkinConfig(
        collector_cluster=provider.cluster if provider is not None else ZIPKIN_CLUSTER,
        collector_endpoint=provider.path if provider is not None else ZIPKIN_ENDPOINT,
        collector_endpoint_version=zipkin_pb2.ZipkinConfig.HTTP_JSON,
        trace_id_128bit=True,
        shared_span_context=wrappers_pb2.BoolValue(value=False),
    )
    if provider is not None:
        config.collector_hostname = provider.host
    return http_tracer_pb2.Tracing.Http(name=ZIPKIN_TRACER, typed_config=pack(config))


def opentelemetry_provider(provider: TracingProvider) -> http_tracer_pb2.Tracing.Http:
    """A mesh config `opentelemetry` provider: OTLP over gRPC, or over HTTP when it says `http:`."""
    config = opentelemetry_pb2.OpenTelemetryConfig(service_name=provider.service_name)
    if provider.grpc:
        config.grpc_service.CopyFrom(
            grpc_service_pb2.GrpcService(
                envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
                    cluster_name=provider.cluster, authority=provider.host
                )
            )
        )
    else:
        config.http_service.CopyFrom(
            http_service_pb2.HttpService(
                http_uri=http_uri_pb2.HttpUri(
                    uri=f"http://{provider.host}:{provider.port}{provider.path}",
                    cluster=provider.cluster,
                    timeout=duration_pb2.Duration(seconds=1),
                )
            )
        )
    return http_tracer_pb2.Tracing.Http(name=OTEL_TRACER, typed_config=pack(config))


def custom_tag(tag: TracingTag) -> custom_tag_pb2.CustomTag:
    out = custom_tag_pb2.CustomTag(tag=tag.tag)
    if tag.kind == "literal":
        out.literal.value = tag.value
    elif tag.kind == "header":
        out.request_header.CopyFrom(custom_tag_pb2.CustomTag.Header(name=tag.value, default_value=tag.default))
    else:
        out.environment.CopyFrom(custom_tag_pb2.CustomTag.Environment(name=tag.value, default_value=tag.default))
    return out


def hcm_tracing(tracing: Tracing) -> hcm_pb2.HttpConnectionManager.Tracing:
    out = hcm_pb2.HttpConnectionManager.Tracing(
        client_sampling=percent_pb2.Percent(value=100.0),
        random_sampling=percent_pb2.Percent(value=tracing.sampling),
        overall_sampling=percent_pb2.Percent(value=100.0),
    )
    out.custom_tags.extend(custom_tag(t) for t in tracing.tags)
    out.provider.CopyFrom(
        opentelemetry_provider(tracing.provider)
        if tracing.provider is not None and tracing.provider.kind == "opentelemetry"
        else zipkin_provider(tracing.provider)
    )
    if tracing.spawn_upstream_span:
        out.spawn_upstream_span.CopyFrom(wrappers_pb2.BoolValue(value=True))
    return out
