"""Access logs and Istio's standard metrics, both computed inside Envoy.

* The text line: Istio's access log format on stdout, or the mesh config's accessLogFile /
  accessLogEncoding / accessLogFormat (Telemetry `accessLogging` turns it off).
* Istio's standard metrics (`istio_requests_total`, `istio_request_duration_milliseconds`,
  `istio_request_bytes`, `istio_response_bytes`, `istio_tcp_*`, Istio's labels, both reporters):
  Envoy's stats access logger (`envoy.access_loggers.stats`) counts each request / connection in
  counters and histograms whose tags come from access-log command operators. Nothing leaves the
  proxy per request: the stats are scraped (the pod's :15020, gossamer/telemetry/merge.py).

Where each label comes from (nothing outside Envoy per request):

* the reporting proxy's own side: not formatted per request; the pod's :15020 adds it when it
  unpacks the stats (gossamer/telemetry/peer.py `unpack_labels`); the destination principal on an
  mTLS chain is the pod's (its certificate's), as Istio's.
* the destination of a client-side request (`reporter="source"`, sidecar outbound and gateways):
  the upstream endpoint's metadata `istio` (workload, namespace, principal, app, version, cluster;
  set on every endpoint we build) and the cluster's metadata `istio` (service, service_name,
  service_namespace; on clusters without our endpoints, e.g. passthrough, the workload keys after them).
* the destination service of a server-side request: its chain's service (one per inbound port),
  literal in the tag (`service_group`); the inbound passthrough's is Istio's passthrough naming.
* the source of a server-side request (`reporter="destination"`): the peer metadata header the
  client's sidecar (or gateway) added (`x-istio-peer-metadata`, five values joined), kept in filter
  state by the first HTTP filter and removed before anything decides on it or the app sees it
  (`peer_metadata_filters`, `guard_peer_header`);
  the source principal from the client certificate (mTLS filter chains only; Istio's
  `connection_security_policy`).
* TCP has no headers: a server-side TCP connection knows its source by its certificate only.

The stat names carry the prefix `istiocustom.` (as in Istio's proxies). Each stat has one tag,
`istio`, holding all of Istio's labels packed in one format (`packed_format`; the formatter and the
series lookup run once per stat instead of once per label): Envoy exposes
`envoy_istiocustom_istio_requests_total{istio="source|http|..."}`, which the pod's merged endpoint
turns into Istio's `istio_requests_total{reporter="source",...}` (gossamer/telemetry/scrape.py).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import base_pb2, substitution_format_string_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.data.accesslog.v3 import accesslog_pb2 as data_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2
from envoy.extensions.filters.common.set_filter_state.v3 import value_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.filters.http.set_filter_state.v3 import set_filter_state_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import any_pb2, struct_pb2
from xds.type.v3 import typed_struct_pb2

from gossamer.ir.types import STDOUT_ACCESS_LOG, AccessLogFile, Cluster, Endpoint
from gossamer.telemetry.peer import (
    DEFAULT_CLUSTER,
    GROUP_SEPARATOR,
    LOCAL_SOURCE,
    PACKED_TAG,
    PEER_FILTER_STATE_KEY,
    PEER_HEADER,
    PEER_HEADER_ENV,
    PEER_HEADER_KEYS,
    PEER_KEYS,
    PEER_METADATA,
    SEPARATOR,
    SERVICE_METADATA,
    STATS_METADATA_NAMESPACE,
    UNKNOWN,
    packed_slots,
    service_labels,
    unknown_peer,
)
from gossamer.xds.build.common import pack

Direction = Literal["outbound", "inbound", "gateway"]

STATS_LOGGER = "envoy.access_loggers.stats"
STATS_CONFIG_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.stats.v3.Config"
# Istio's proxies name their stats `istiocustom.istio_requests_total`; so do ours.
STATS_SCOPE = "istiocustom"
# Labels come partly from what clients send (peer headers): a cap per logger on distinct series
# keeps a client making up label values from growing the proxy's memory without bound.
MAX_SERIES_PER_LOGGER = 10_000
# The server side's first HTTP filter (a set_filter_state; named for what it does, as Istio names its
# istio.metadata_exchange) and, where needed, the one after it that removes the header.
PEER_FILTER = "gossamer.peer_metadata"
PEER_HEADER_REMOVAL = "gossamer.peer_metadata_removal"
ROUTER_FILTER = "envoy.filters.http.router"
GRPC_CONTENT_TYPE = "application/grpc"

# Istio's default access log line, plus the peers' identities (URI SANs) at the end.
ACCESS_LOG_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
    "%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME% %DOWNSTREAM_PEER_URI_SAN% %UPSTREAM_PEER_URI_SAN%\n"
)


# Istio's JSON access log (accessLogEncoding: JSON), key -> command operator.
JSON_ACCESS_LOG_FORMAT = {
    "start_time": "%START_TIME%",
    "route_name": "%ROUTE_NAME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "connection_termination_details": "%CONNECTION_TERMINATION_DETAILS%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration": "%DURATION%",
    "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "x_forwarded_for": "%REQ(X-FORWARDED-FOR)%",
    "user_agent": "%REQ(USER-AGENT)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "authority": "%REQ(:AUTHORITY)%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER_RAW%",
    "upstream_local_address": "%UPSTREAM_LOCAL_ADDRESS%",
    "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "requested_server_name": "%REQUESTED_SERVER_NAME%",
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
        text_format_source=base_pb2.DataSource(inline_string=text or ACCESS_LOG_FORMAT)
    )


def stdout_access_log(*, tcp: bool = False, file: AccessLogFile = STDOUT_ACCESS_LOG) -> accesslog_pb2.AccessLog:
    """The text access log: Envoy's stdout logger for /dev/stdout (the proxy's log), else a file logger."""
    fmt = _log_format(file)
    if file.path == "/dev/stdout":
        out = accesslog_pb2.AccessLog(
            name="envoy.access_loggers.stdout", typed_config=pack(stream_pb2.StdoutAccessLog(log_format=fmt))
        )
    else:
        out = accesslog_pb2.AccessLog(
            name="envoy.access_loggers.file", typed_config=pack(file_pb2.FileAccessLog(path=file.path, log_format=fmt))
        )
    if tcp:
        # TCP proxies also log when the upstream connects (for istio_tcp_connections_opened_total):
        # the text log keeps one line per connection, at its end.
        out.filter.log_type_filter.CopyFrom(
            accesslog_pb2.LogTypeFilter(types=[data_pb2.AccessLogType.TcpUpstreamConnected], exclude=True)
        )
    return out


# -- labels --------------------------------------------------------------------------------------


# Endpoint metadata where we built the endpoints; absent ("") otherwise, and then the cluster's
# service value carries the destination's labels (passthrough, original destination, blackhole).
DESTINATION_FORMAT = f"%UPSTREAM_METADATA({STATS_METADATA_NAMESPACE}:{PEER_METADATA})%"
SERVICE_FORMAT = f"%CLUSTER_METADATA({STATS_METADATA_NAMESPACE}:{SERVICE_METADATA})%"


def _env(name: str) -> str:
    return f"%ENVIRONMENT({name})%"


def local_side() -> str:
    """This proxy's workload, namespace, app, version and cluster, joined: the peer header's value."""
    return _env(PEER_HEADER_ENV)


def source_side(direction: Direction, *, mtls: bool, tcp: bool) -> str:
    """The format of the packed tag's end (gossamer/telemetry/peer.py): the source's principal, then
    its workload, namespace, app, version and cluster. A client is the source: left empty, the pod's
    :15020 fills in its own. A server knows the principal from the client certificate (mTLS chains)
    and reads the rest from the peer header (absent: the one value `unknown`, which unpacks as unknown
    for all five); TCP has no headers."""
    if direction != "inbound":
        return LOCAL_SOURCE
    principal = "%DOWNSTREAM_PEER_URI_SAN%" if mtls else UNKNOWN
    if tcp:
        return SEPARATOR.join([principal, *[UNKNOWN] * len(PEER_HEADER_KEYS)])
    # Absent header (a client without a sidecar): no filter state, formatted "", unpacked as unknown.
    return SEPARATOR.join([principal, f"%FILTER_STATE({PEER_FILTER_STATE_KEY}:PLAIN)%"])


def peer_slots(direction: Direction, *, mtls: bool, service: str = "") -> dict[str, str]:
    """The packed tag's slots (gossamer/telemetry/peer.py) that say who the destination is, as formats:
    its labels and its service's in one slot each (one metadata lookup, not six). A server is the
    destination: left empty, the pod's :15020 fills in its own (the principal its certificate's on
    mTLS chains).
    `service`: the service group as a literal (`service_group`), when the chain has one cluster
    (the server side's inbound chains): else read from the cluster's metadata per request."""
    if direction == "inbound":
        return {
            "reporter": "destination",
            "connection_security_policy": "mutual_tls" if mtls else "none",
            "destination": "",
            "service": service or SERVICE_FORMAT,
        }
    return {
        "reporter": "source",
        "connection_security_policy": UNKNOWN,
        "destination": DESTINATION_FORMAT,
        "service": service or SERVICE_FORMAT,
    }


def packed_format(slots: dict[str, str], source: str, order: tuple[str, ...]) -> str:
    """One format for all of Istio's labels, the source's principal (the last slot) and side last
    (gossamer/telemetry/peer.py: why they are packed)."""
    return SEPARATOR.join([*(slots[slot] for slot in order[:-1]), source])


def _stat(name: str, tag: str) -> dict[str, object]:
    return {"name": name, "tags": [{"name": PACKED_TAG, "value_format": tag}]}


def _stats_logger(
    counters: list[dict[str, object]],
    histograms: list[dict[str, object]],
    log_filter: accesslog_pb2.AccessLogFilter | None = None,
) -> accesslog_pb2.AccessLog:
    # A TypedStruct: the generated protos lag Envoy 1.40's stats_scope (stat_prefix is deprecated).
    config = struct_pb2.Struct()
    config.update(
        {
            # A scope per logger: when a config change replaces a listener, its loggers' series restart from
            # zero once the old listener has drained (Prometheus' rate() takes counter resets in its stride).
            # Envoy 1.40's `sharing_name` would keep them, but crashes Envoy on shutdown.
            "stats_scope": {
                "prefix": STATS_SCOPE,
                "max_counters": MAX_SERIES_PER_LOGGER,
                "max_histograms": MAX_SERIES_PER_LOGGER,
            },
            "counters": counters,
            "histograms": histograms,
        }
    )
    typed = any_pb2.Any()
    typed.Pack(typed_struct_pb2.TypedStruct(type_url=STATS_CONFIG_TYPE, value=config))
    out = accesslog_pb2.AccessLog(name=STATS_LOGGER, typed_config=typed)
    if log_filter is not None:
        out.filter.CopyFrom(log_filter)
    return out


def _content_type_filter(grpc: bool) -> accesslog_pb2.AccessLogFilter:
    """Istio's request_protocol: grpc when the request's content-type says so, else http."""
    matcher = rc.HeaderMatcher(
        name="content-type",
        string_match=string_pb2.StringMatcher(prefix=GRPC_CONTENT_TYPE),
        invert_match=not grpc,
        treat_missing_header_as_empty=True,
    )
    return accesslog_pb2.AccessLogFilter(header_filter=accesslog_pb2.HeaderFilter(header=matcher))


def http_stats_loggers(direction: Direction, *, mtls: bool, service: str = "") -> list[accesslog_pb2.AccessLog]:
    out = []
    for protocol in ("http", "grpc"):
        slots = {
            **peer_slots(direction, mtls=mtls, service=service),
            "request_protocol": protocol,
            "response_flags": "%RESPONSE_FLAGS%",
            "response_code": "%RESPONSE_CODE%",
            # Envoy formats a gRPC status only for gRPC requests (content-type application/grpc...):
            # the http logger's requests never have one.
            "grpc_response_status": "%GRPC_STATUS_NUMBER%" if protocol == "grpc" else "",
        }
        tag = packed_format(slots, source_side(direction, mtls=mtls, tcp=False), packed_slots("istio_requests_total"))
        out.append(
            _stats_logger(
                counters=[{"stat": _stat("istio_requests_total", tag), "value_fixed": 1}],
                histograms=[
                    {
                        "stat": _stat("istio_request_duration_milliseconds", tag),
                        "unit": "Milliseconds",
                        "value_format": "%DURATION%",
                    },
                    # Headers and body, as Istio's request.total_size / response.total_size.
                    {
                        "stat": _stat("istio_request_bytes", tag),
                        "unit": "Bytes",
                        "value_format": "%DOWNSTREAM_WIRE_BYTES_RECEIVED%",
                    },
                    {
                        "stat": _stat("istio_response_bytes", tag),
                        "unit": "Bytes",
                        "value_format": "%DOWNSTREAM_WIRE_BYTES_SENT%",
                    },
                ],
                log_filter=_content_type_filter(protocol == "grpc"),
            )
        )
    return out


def _log_types(*types: int, exclude: bool = False) -> accesslog_pb2.LogTypeFilter:
    return accesslog_pb2.LogTypeFilter(types=list(types), exclude=exclude)


def tcp_stats_loggers(direction: Direction, *, mtls: bool, service: str = "") -> list[accesslog_pb2.AccessLog]:
    """Opened when the upstream connects; closed, bytes sent and received when the connection ends
    (no periodic entries are asked for, so nothing counts twice)."""
    slots = {
        **peer_slots(direction, mtls=mtls, service=service),
        "request_protocol": "tcp",
        "response_flags": "%RESPONSE_FLAGS%",
    }
    tag = packed_format(
        slots, source_side(direction, mtls=mtls, tcp=True), packed_slots("istio_tcp_connections_opened_total")
    )
    opened = _stats_logger(
        counters=[{"stat": _stat("istio_tcp_connections_opened_total", tag), "value_fixed": 1}],
        histograms=[],
        log_filter=accesslog_pb2.AccessLogFilter(
            log_type_filter=_log_types(data_pb2.AccessLogType.TcpUpstreamConnected)
        ),
    )
    closed = _stats_logger(
        counters=[
            {"stat": _stat("istio_tcp_connections_closed_total", tag), "value_fixed": 1},
            {"stat": _stat("istio_tcp_sent_bytes_total", tag), "value_format": "%BYTES_SENT%"},
            {"stat": _stat("istio_tcp_received_bytes_total", tag), "value_format": "%BYTES_RECEIVED%"},
        ],
        histograms=[],
        log_filter=accesslog_pb2.AccessLogFilter(log_type_filter=_log_types(data_pb2.AccessLogType.TcpConnectionEnd)),
    )
    return [opened, closed]


def http_access_logs(
    direction: Direction,
    *,
    logs: bool = True,
    metrics: bool = True,
    mtls: bool = False,
    file: AccessLogFile = STDOUT_ACCESS_LOG,
    service: str = "",
) -> list[accesslog_pb2.AccessLog]:
    """An HTTP connection manager's loggers: the text line (Telemetry accessLogging, the mesh
    config's accessLogFile/Encoding/Format) and Istio's metrics (Telemetry metrics). `mtls`: the
    chain terminates mesh mTLS (server side). `service`: see peer_slots."""
    return [
        *([stdout_access_log(file=file)] if logs else []),
        *(http_stats_loggers(direction, mtls=mtls, service=service) if metrics else []),
    ]


def tcp_access_logs(
    direction: Direction,
    *,
    logs: bool = True,
    metrics: bool = True,
    mtls: bool = False,
    file: AccessLogFile = STDOUT_ACCESS_LOG,
    service: str = "",
) -> list[accesslog_pb2.AccessLog]:
    return [
        *([stdout_access_log(tcp=True, file=file)] if logs else []),
        *(tcp_stats_loggers(direction, mtls=mtls, service=service) if metrics else []),
    ]


# -- peer metadata exchange ----------------------------------------------------------------------


def peer_metadata_filters() -> list[hcm_pb2.HttpFilter]:
    """Server side, first HTTP filter: the client proxy's peer header, kept as filter state for the
    metrics (nothing when absent: a client without a sidecar). The header itself is removed by the
    inbound route (the app never sees it) or, when a filter between could decide on it, right after
    this one (`guard_peer_header`)."""
    fmt = substitution_format_string_pb2.SubstitutionFormatString(
        text_format_source=base_pb2.DataSource(inline_string=f"%REQ({PEER_HEADER})%"), omit_empty_values=True
    )
    state = value_pb2.FilterStateValue(
        object_key=PEER_FILTER_STATE_KEY, factory_key="envoy.string", format_string=fmt, skip_if_empty=True
    )
    config = set_filter_state_pb2.Config(on_request_headers=[state])
    return [hcm_pb2.HttpFilter(name=PEER_FILTER, typed_config=pack(config))]


def _peer_header_removal() -> hcm_pb2.HttpFilter:
    mutation = mutation_rules_pb2.HeaderMutation(remove=PEER_HEADER)
    config = header_mutation_pb2.HeaderMutation(mutations=header_mutation_pb2.Mutations(request_mutations=[mutation]))
    return hcm_pb2.HttpFilter(name=PEER_HEADER_REMOVAL, typed_config=pack(config))


def guard_peer_header(filters: Any) -> None:
    """Istio's peer metadata filter removes the header as it reads it: no later filter (JWT, RBAC, an
    EnvoyFilter's) sees it. When anything but the router (or a filter disabled until a route enables
    it) follows the reader, the removal goes right after it; otherwise the inbound route's removal
    comes first and saves a filter per request. `filters`: an HCM's http_filters, changed in place."""
    names = [f.name for f in filters]
    if PEER_FILTER not in names or PEER_HEADER_REMOVAL in names:
        return
    at = names.index(PEER_FILTER) + 1
    if any(f.name != ROUTER_FILTER and not f.disabled for f in list(filters)[at:]):
        filters.insert(at, _peer_header_removal())


def peer_request_headers() -> list[base_pb2.HeaderValueOption]:
    """Client side (mesh virtual hosts of sidecars and gateways): this proxy's identity for the
    server's labels, overwriting whatever the app (or an outside client) sent under that name."""
    return [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=PEER_HEADER, value=local_side()),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
        )
    ]


def add_peer_headers(vhost: rc.VirtualHost) -> None:
    vhost.request_headers_to_add.extend(peer_request_headers())


# -- what the client side's labels read: endpoint and cluster metadata ---------------------------

# Clusters whose hosts we do not build (original destination, blackhole): their traffic goes to a
# destination nobody knows; Istio names the service after the cluster.
PASSTHROUGH_KINDS = ("original_dst", "blackhole")


def apply_endpoint_peer(lb_endpoint: endpoint_components_pb2.LbEndpoint, endpoint: Endpoint) -> None:
    labels = dict(endpoint.labels)
    values = {
        "workload": endpoint.workload or UNKNOWN,
        "namespace": endpoint.workload_namespace or UNKNOWN,
        "principal": endpoint.principal or UNKNOWN,
        "app": labels.get("app") or UNKNOWN,
        "version": labels.get("version") or UNKNOWN,
        "cluster": DEFAULT_CLUSTER if endpoint.workload else UNKNOWN,
    }
    lb_endpoint.metadata.filter_metadata[STATS_METADATA_NAMESPACE].update({PEER_METADATA: _group(values, PEER_KEYS)})


def _group(values: dict[str, str], keys: tuple[str, ...]) -> str:
    return GROUP_SEPARATOR.join(values[k] for k in keys)


SERVICE_KEYS = ("service", "service_name", "service_namespace")


def service_group(host: str, name: str = "", namespace: str = "") -> str:
    """A service's destination_service labels as the packed tag's service slot holds them."""
    return _group(service_labels(host, name, namespace), SERVICE_KEYS)


def passthrough_service_group(cluster_name: str) -> str:
    """The service slot of traffic to a destination nobody knows: Istio names it after the cluster."""
    return _group({**service_labels(""), "service_name": cluster_name}, SERVICE_KEYS)


def apply_cluster_service(out: cluster_pb2.Cluster, cluster: Cluster) -> None:
    """The cluster's service labels (and, for clusters without our endpoints, `unknown` for the
    destination workload's after them), in one metadata value (gossamer/telemetry/peer.py)."""
    if cluster.service_host:
        service = service_group(cluster.service_host, cluster.service_name, cluster.service_namespace)
    elif cluster.kind in PASSTHROUGH_KINDS:
        service = passthrough_service_group(cluster.name)
    else:
        return
    if cluster.kind in PASSTHROUGH_KINDS:  # no endpoint metadata: the destination's labels follow (peer.py)
        service = GROUP_SEPARATOR.join([service, _group(unknown_peer(), PEER_KEYS)])
    out.metadata.filter_metadata[STATS_METADATA_NAMESPACE].update({SERVICE_METADATA: service})
