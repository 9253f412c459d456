"""Envoy's gRPC access log service (StreamAccessLogs), served next to ADS on the xDS socket."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from google.protobuf import json_format

from gossamer.security.authz import IdentityRejected, check_node, peer_identity
from gossamer.telemetry.metrics import MeshMetrics, Reporter

log = logging.getLogger(__name__)


class AccessLogServicer(als_pb2_grpc.AccessLogServiceServicer):  # type: ignore[misc]
    """One stream per proxy and log name; its first message identifies the proxy (node, log name)."""

    def __init__(self, metrics: MeshMetrics, *, authenticate: bool = True) -> None:
        self.metrics = metrics
        # As ADS (same mTLS server): a proxy reports only as the identity its certificate proves, so
        # it cannot pass its traffic off as another workload's in the metrics.
        self.authenticate = authenticate

    def add_to_server(self, server: grpc.aio.Server) -> None:
        als_pb2_grpc.add_AccessLogServiceServicer_to_server(self, server)

    async def StreamAccessLogs(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[als_pb2.StreamAccessLogsMessage], context: Any
    ) -> als_pb2.StreamAccessLogsResponse:
        reporter: Reporter | None = None
        async for msg in request_iterator:
            if msg.HasField("identifier"):
                if self.authenticate:
                    node = msg.identifier.node
                    try:
                        check_node(peer_identity(context), json_format.MessageToDict(node.metadata))
                    except IdentityRejected as e:
                        log.warning("access logs: refused node %s: %s", node.id, e)
                        await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(e))
                reporter = Reporter.from_node(msg.identifier.node, msg.identifier.log_name)
            if reporter is None:
                log.debug("access log message before an identifier: dropped")
                continue
            try:
                if msg.HasField("http_logs"):
                    self.metrics.record_http(reporter, msg.http_logs.log_entry)
                elif msg.HasField("tcp_logs"):
                    self.metrics.record_tcp(reporter, msg.tcp_logs.log_entry)
            except Exception:
                log.exception("access log entries from %s not recorded", reporter.node_id)
        return als_pb2.StreamAccessLogsResponse()
