"""Access logs: Istio's text line on stdout, and entries streamed over gRPC to the control plane.

The gRPC access log service (`envoy.access_loggers.http_grpc` / `tcp_grpc`) is how Gossamer gets
Istio's standard metrics without Python on the request path: Envoy buffers entries and sends them
in batches, asynchronously, over the `xds-grpc` cluster (the control plane's unix socket); the
control plane turns them into `istio_requests_total` and friends (gossamer/telemetry/).

The log name says which side of the traffic the proxy saw, which is Istio's `reporter`:
outbound (a sidecar's client side: reporter=source), inbound (a sidecar's server side:
reporter=destination) and gateway (an ingress gateway, which Istio reports as source).
"""

from __future__ import annotations

import json
from typing import Literal

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2, substitution_format_string_pb2
from envoy.data.accesslog.v3 import accesslog_pb2 as data_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2

from gossamer.ir.types import STDOUT_ACCESS_LOG, AccessLogFile
from gossamer.xds.build.common import pack, seconds

Direction = Literal["outbound", "inbound", "gateway"]

ALS_CLUSTER = "xds-grpc"  # the bootstrap's static cluster to the control plane (agent/bootstrap.py)
FLUSH_INTERVAL_S = 1.0
# gRPC status (trailers, or headers of a trailers-only response) and content-type (grpc or http).
GRPC_STATUS = "grpc-status"

# Istio's default access log line, plus the peers' identities (URI SANs) at the end.
ACCESS_LOG_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
    '%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% '
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    '%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% '
    '%REQUESTED_SERVER_NAME% %ROUTE_NAME% %DOWNSTREAM_PEER_URI_SAN% %UPSTREAM_PEER_URI_SAN%\n'
)


# Istio's JSON access log (accessLogEncoding: JSON), key -> command operator.
JSON_ACCESS_LOG_FORMAT = {
    "start_time": "%START_TIME%", "route_name": "%ROUTE_NAME%", "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "protocol": "%PROTOCOL%", "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%", "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "connection_termination_details": "%CONNECTION_TERMINATION_DETAILS%", "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%", "duration": "%DURATION%",
    "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", "x_forwarded_for": "%REQ(X-FORWARDED-FOR)%",
    "user_agent": "%REQ(USER-AGENT)%", "request_id": "%REQ(X-REQUEST-ID)%", "authority": "%REQ(:AUTHORITY)%",
    "upstream_host": "%UPSTREAM_HOST%", "upstream_cluster": "%UPSTREAM_CLUSTER_RAW%",
    "upstream_local_address": "%UPSTREAM_LOCAL_ADDRESS%", "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%", "requested_server_name": "%REQUESTED_SERVER_NAME%",
    "upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
}


def _log_format(file: AccessLogFile) -> substitution_format_string_pb2.SubstitutionFormatString:
    """The mesh config's accessLogEncoding/accessLogFormat, as Istio builds it."""
    if file.encoding == "JSON":
        fields = json.loads(file.format) if file.format else JSON_ACCESS_LOG_FORMAT  # validated at apply
        out = substitution_format_string_pb2.SubstitutionFormatString()
        out.json_format.update(fields)
        return out
    text = file.format if file.format.endswith("\n") or not file.format else file.format + "\n"
    return substitution_format_string_pb2.SubstitutionFormatString(
        text_format_source=base_pb2.DataSource(inline_string=text or ACCESS_LOG_FORMAT))


def stdout_access_log(*, tcp: bool = False, file: AccessLogFile = STDOUT_ACCESS_LOG) -> accesslog_pb2.AccessLog:
    """The text access log: Envoy's stdout logger for /dev/stdout (the proxy's log), else a file logger."""
    fmt = _log_format(file)
    if file.path == "/dev/stdout":
        out = accesslog_pb2.AccessLog(name="envoy.access_loggers.stdout",
                                      typed_config=pack(stream_pb2.StdoutAccessLog(log_format=fmt)))
    else:
        out = accesslog_pb2.AccessLog(name="envoy.access_loggers.file", typed_config=pack(
            file_pb2.FileAccessLog(path=file.path, log_format=fmt)))
    if tcp:
        # TCP proxies also log when the upstream connects (for istio_tcp_connections_opened_total):
        # the text log keeps one line per connection, at its end.
        out.filter.log_type_filter.CopyFrom(accesslog_pb2.LogTypeFilter(
            types=[data_pb2.AccessLogType.TcpUpstreamConnected], exclude=True))
    return out


def _common(direction: Direction) -> als_pb2.CommonGrpcAccessLogConfig:
    return als_pb2.CommonGrpcAccessLogConfig(
        log_name=direction,
        grpc_service=grpc_service_pb2.GrpcService(
            envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=ALS_CLUSTER)),
        transport_api_version=config_source_pb2.V3,
        buffer_flush_interval=seconds(FLUSH_INTERVAL_S),
    )


def grpc_http_access_log(direction: Direction) -> accesslog_pb2.AccessLog:
    config = als_pb2.HttpGrpcAccessLogConfig(
        common_config=_common(direction),
        additional_request_headers_to_log=["content-type"],
        additional_response_headers_to_log=[GRPC_STATUS],
        additional_response_trailers_to_log=[GRPC_STATUS],
    )
    return accesslog_pb2.AccessLog(name="envoy.access_loggers.http_grpc", typed_config=pack(config))


def grpc_tcp_access_log(direction: Direction) -> accesslog_pb2.AccessLog:
    config = als_pb2.TcpGrpcAccessLogConfig(common_config=_common(direction))
    return accesslog_pb2.AccessLog(name="envoy.access_loggers.tcp_grpc", typed_config=pack(config))


def http_access_logs(direction: Direction, *, logs: bool = True, metrics: bool = True,
                     file: AccessLogFile = STDOUT_ACCESS_LOG) -> list[accesslog_pb2.AccessLog]:
    """An HTTP connection manager's loggers: the text line (Telemetry accessLogging, the mesh
    config's accessLogFile/Encoding/Format) and the gRPC entries the control plane's metrics come
    from (Telemetry metrics)."""
    return [*([stdout_access_log(file=file)] if logs else []),
            *([grpc_http_access_log(direction)] if metrics else [])]


def tcp_access_logs(direction: Direction, *, logs: bool = True, metrics: bool = True,
                    file: AccessLogFile = STDOUT_ACCESS_LOG) -> list[accesslog_pb2.AccessLog]:
    return [*([stdout_access_log(tcp=True, file=file)] if logs else []),
            *([grpc_tcp_access_log(direction)] if metrics else [])]
