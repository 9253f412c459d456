"""Who is on each side of a request, in the words of Istio's metric labels, and how Envoy learns it.

Istio's proxies label their metrics with both peers (workload, namespace, principal, app, version,
cluster). Gossamer's proxies learn:

* their own side from environment variables (`proxy_env`, set by the runtime when it starts Envoy),
* a destination's side from endpoint and cluster metadata (`endpoint_metadata`, `service_metadata`),
* a client's side from the peer header its proxy adds (`PEER_HEADER`), which the server's proxy
  turns into dynamic metadata and removes.

The stats themselves are built in gossamer/xds/build/telemetry.py.
"""

from __future__ import annotations

from collections.abc import Mapping

from gossamer.mesh import DOMAIN_SUFFIX, spiffe_id

UNKNOWN = "unknown"
DEFAULT_CLUSTER = "Kubernetes"

PEER_KEYS = ("workload", "namespace", "principal", "app", "version", "cluster")
# Endpoint/cluster metadata namespace the stats read (Istio keeps its own endpoint facts under `istio`).
STATS_METADATA_NAMESPACE = "istio"
# Joins the values of Istio's labels in the packed stats tag and in the peer header (see below).
SEPARATOR = "|"
# Dynamic metadata namespace of the client's side, filled from the peer headers.
PEER_METADATA_NAMESPACE = "istio.peer"
# What a client's proxy tells the server's proxy, in ONE header (one header to add, one to read and
# remove): its workload, namespace, app, version and cluster joined by SEPARATOR, as the packed tag
# holds them (the principal is never taken from a header: only the client certificate proves it).
PEER_HEADER = "x-istio-peer-metadata"
PEER_HEADER_KEYS = ("workload", "namespace", "app", "version", "cluster")
# Dynamic metadata key (in PEER_METADATA_NAMESPACE) the server's proxy moves the header's value to.
PEER_METADATA_KEY = "peer"
# The Envoy process's environment: the proxy's own side (resolved once, at config load).
LOCAL_ENV = {
    "workload": "GOSSAMER_WORKLOAD_NAME",
    "namespace": "GOSSAMER_WORKLOAD_NAMESPACE",
    "principal": "GOSSAMER_PRINCIPAL",
    "app": "GOSSAMER_APP",
    "version": "GOSSAMER_VERSION",
    "cluster": "GOSSAMER_CLUSTER_ID",
}


def peer_values(
    *, workload: str, namespace: str, service_account: str, labels: Mapping[str, str], has_sidecar: bool = True
) -> dict[str, str]:
    """One workload's values for Istio's peer labels (the principal only for a proxy that holds one)."""
    return {
        "workload": workload or UNKNOWN,
        "namespace": namespace or UNKNOWN,
        "principal": spiffe_id(namespace, service_account)
        if has_sidecar and service_account and namespace
        else UNKNOWN,
        "app": labels.get("app") or UNKNOWN,
        "version": labels.get("version") or UNKNOWN,
        "cluster": DEFAULT_CLUSTER,
    }


def proxy_env(*, workload: str, namespace: str, service_account: str, labels: Mapping[str, str]) -> dict[str, str]:
    """The environment Envoy needs for its own side of Istio's labels."""
    values = peer_values(workload=workload, namespace=namespace, service_account=service_account, labels=labels)
    return {LOCAL_ENV[k]: v for k, v in values.items()}


def unknown_peer() -> dict[str, str]:
    return dict.fromkeys(PEER_KEYS, UNKNOWN)


def service_labels(host: str, name: str = "", namespace: str = "") -> dict[str, str]:
    """destination_service / _name / _namespace for a service host ("" host: unknown)."""
    if not host:
        return {"service": UNKNOWN, "service_name": UNKNOWN, "service_namespace": UNKNOWN}
    if not name:
        parts = host.split(".")
        if host.endswith("." + DOMAIN_SUFFIX) and len(parts) == 5:
            name, namespace = parts[0], parts[1]
        else:
            name = host
    return {"service": host, "service_name": name, "service_namespace": namespace or UNKNOWN}


# Istio's label names of the standard metrics (TCP ones have no response code or gRPC status).
_LABEL_SIDES = ("workload", "workload_namespace", "principal", "app", "version", "cluster")
TCP_LABELS = (
    "reporter",
    *(f"source_{x}" for x in _LABEL_SIDES),
    *(f"destination_{x}" for x in _LABEL_SIDES),
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "connection_security_policy",
    "response_flags",
    "request_protocol",
)
HTTP_LABELS = (*TCP_LABELS, "response_code", "grpc_response_status")


# -- Istio's labels travel packed in one stat tag ---------------------------------------------------
#
# Envoy's stats access logger formats every tag of every stat it records, per request, and finds the
# series by all of them: 20-odd labels on each of a request's four stats cost a sidecar about as
# much CPU as proxying the request. So each stat carries ONE tag, `PACKED_TAG`, whose value is the
# label values joined by `SEPARATOR` in `packed_fields` order (one formatter, one tag to encode and
# look up), and the pod's :15020 unpacks it into Istio's labels per scrape (`unpack_labels`).
PACKED_TAG = "istio"
# The client's side (its workload, namespace, app, version, cluster) comes last: on a server it is
# what the client's peer header said, verbatim. No value our control plane, Envoy or a certificate provides
# contains the separator; a header value that does leaves a tail that is not five fields, and the
# source is then `unknown`: no header can shift the fields before it (principal, response code...).
_CLIENT_TAIL = tuple(f"source_{x}" for x in _LABEL_SIDES if x != "principal")
_TCP_HEAD = tuple(label for label in TCP_LABELS if label not in _CLIENT_TAIL)
TCP_PACKED = (*_TCP_HEAD, *_CLIENT_TAIL)
HTTP_PACKED = (*_TCP_HEAD, "response_code", "grpc_response_status", *_CLIENT_TAIL)
TCP_METRIC_PREFIX = "istio_tcp_"


def packed_fields(metric: str) -> tuple[str, ...]:
    """The labels packed in a metric's tag, in order (TCP metrics have no response code or gRPC status)."""
    return TCP_PACKED if metric.startswith(TCP_METRIC_PREFIX) else HTTP_PACKED


def unpack_labels(metric: str, packed: str) -> dict[str, str] | None:
    """Istio's labels (in Istio's order) from a packed tag value; None when it has too few fields."""
    fields = packed_fields(metric)
    head = len(fields) - len(_CLIENT_TAIL)
    parts = packed.split(SEPARATOR, head)
    if len(parts) != head + 1:
        return None
    tail = parts[head].split(SEPARATOR)
    if len(tail) != len(_CLIENT_TAIL):
        tail = [UNKNOWN] * len(_CLIENT_TAIL)
    values = dict(zip(fields, [*parts[:head], *tail], strict=True))
    return {label: values[label] for label in (TCP_LABELS if metric.startswith(TCP_METRIC_PREFIX) else HTTP_LABELS)}
