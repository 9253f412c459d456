"""Who is on each side of a request, in the words of Istio's metric labels, and how Envoy learns it.

Istio's proxies label their metrics with both peers (workload, namespace, principal, app, version,
cluster). Gossamer's proxies learn:

* their own side from the runtime, which knows the pod: the pod's :15020 adds it to every series when
  it unpacks the stats (`unpack_labels`' `local`, the values `peer_values` gives), and the peer
  header's value comes from an environment variable of Envoy's (`proxy_env`),
* a destination's side from endpoint and cluster metadata (`endpoint_metadata`, `service_metadata`),
* a client's side from the peer header its proxy adds (`PEER_HEADER`), which the server's proxy
  keeps in filter state and removes.

The stats themselves are built in gossamer/xds/build/telemetry.py.
"""

from __future__ import annotations

from collections.abc import Mapping

from gossamer.mesh import DOMAIN_SUFFIX, TRUST_DOMAIN, spiffe_id

UNKNOWN = "unknown"
DEFAULT_CLUSTER = "Kubernetes"

PEER_KEYS = ("workload", "namespace", "principal", "app", "version", "cluster")
# Endpoint/cluster metadata namespace the stats read (Istio keeps its own endpoint facts under `istio`).
STATS_METADATA_NAMESPACE = "istio"
# Joins the values of Istio's labels in the packed stats tag and in the peer header (see below);
# GROUP_SEPARATOR joins a group's labels within one of its slots.
SEPARATOR = "|"
GROUP_SEPARATOR = ";"
# What a client's proxy tells the server's proxy, in ONE header (one header to add, one to read and
# remove): its workload, namespace, app, version and cluster joined by SEPARATOR, as the packed tag
# holds them (the principal is never taken from a header: only the client certificate proves it).
PEER_HEADER = "x-istio-peer-metadata"
PEER_HEADER_KEYS = ("workload", "namespace", "app", "version", "cluster")
# Filter state object (a plain string, never shared with the upstream) the server's proxy keeps the
# header's value in: one hash lookup per stat to read, where dynamic metadata took a protobuf copy.
PEER_FILTER_STATE_KEY = "gossamer.peer_metadata"
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
    *,
    workload: str,
    namespace: str,
    service_account: str,
    labels: Mapping[str, str],
    has_sidecar: bool = True,
    trust_domain: str = TRUST_DOMAIN,
) -> dict[str, str]:
    """One workload's values for Istio's peer labels (the principal only for a proxy that holds one)."""
    return {
        "workload": workload or UNKNOWN,
        "namespace": namespace or UNKNOWN,
        "principal": spiffe_id(namespace, service_account, trust_domain)
        if has_sidecar and service_account and namespace
        else UNKNOWN,
        "app": labels.get("app") or UNKNOWN,
        "version": labels.get("version") or UNKNOWN,
        "cluster": DEFAULT_CLUSTER,
    }


# The peer header's value: the proxy's side joined as the packed tag's client side holds it.
PEER_HEADER_ENV = "GOSSAMER_PEER_METADATA"


def proxy_env(
    *, workload: str, namespace: str, service_account: str, labels: Mapping[str, str], trust_domain: str = TRUST_DOMAIN
) -> dict[str, str]:
    """The environment Envoy needs for its own side of Istio's labels (the principal in the mesh's trust
    domain when Envoy starts: a later change of the trust domain shows in this label after a restart)."""
    values = peer_values(
        workload=workload,
        namespace=namespace,
        service_account=service_account,
        labels=labels,
        trust_domain=trust_domain,
    )
    return {
        **{LOCAL_ENV[k]: v for k, v in values.items()},
        PEER_HEADER_ENV: SEPARATOR.join(values[k] for k in PEER_HEADER_KEYS),
    }


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
# peer_values' key for each side's label.
_SIDE_KEYS = dict(zip(_LABEL_SIDES, PEER_KEYS, strict=True))
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
# label values joined by `SEPARATOR` (one formatter, one tag to encode and look up), and the pod's
# :15020 unpacks it into Istio's labels per scrape (`unpack_labels`).
#
# The value is slots joined by SEPARATOR (`packed_slots`), then the client's side. A slot is one
# label, or a group of labels read from ONE metadata value, theirs joined by GROUP_SEPARATOR (an
# upstream's metadata lookup costs Envoy about as much as the rest of the tag: one per group, not
# one per label): the destination's workload labels (`DESTINATION_GROUP`, endpoint metadata
# `istio:peer`) and its service's (`SERVICE_GROUP`, cluster metadata `istio:service`). An empty
# group (no upstream host or cluster, e.g. a direct response) unpacks as "" for each label, as
# Envoy formats absent metadata. A cluster whose hosts we do not build (passthrough, original
# destination, blackhole: no endpoint metadata) has the destination's labels (all unknown) after
# its service's in its ONE value (`SERVICE_WITH_DESTINATION`): they stand in for an empty
# destination group, so no request pays a second cluster lookup for them.
#
# The reporting proxy's own side is not in the value: it is the same for every request of the pod,
# and the pod's :15020 knows it (`local`). A client-side report (reporter source: sidecars' outbound,
# gateways) leaves the source's principal and side empty (`LOCAL_SOURCE`); a server-side report
# (reporter destination) leaves its destination group empty, and its destination principal is the
# pod's on mTLS (its certificate's, as Istio's), unknown on plaintext. Each of them was a command
# operator per stat per request (the local certificate's URI SAN, ~1k instructions each).
PACKED_TAG = "istio"
DESTINATION_GROUP = tuple(f"destination_{x}" for x in _LABEL_SIDES)
SERVICE_GROUP = ("destination_service", "destination_service_name", "destination_service_namespace")
# Metadata keys (namespace STATS_METADATA_NAMESPACE) holding the groups.
PEER_METADATA = "peer"
SERVICE_METADATA = "service"
GROUPS = {"destination": DESTINATION_GROUP, "service": SERVICE_GROUP}
SERVICE_WITH_DESTINATION = len(SERVICE_GROUP) + len(DESTINATION_GROUP)
# The client's side (its workload, namespace, app, version, cluster) comes last: on a server it is
# what the client's peer header said, verbatim. No value our control plane, Envoy or a certificate
# provides contains a separator; a header value holding SEPARATOR leaves a tail that is not five
# fields, and the source is then `unknown`: no header can shift the slots before it (principal,
# response code...).
CLIENT_TAIL = tuple(f"source_{x}" for x in _LABEL_SIDES if x != "principal")
# A client-side report's source principal and side: the reporting proxy's (`local`).
LOCAL_SOURCE = SEPARATOR
# The source's principal last: on a client it and the client's side are one environment variable.
_COMMON_SLOTS = (
    "reporter",
    "request_protocol",
    "connection_security_policy",
    "response_flags",
    "destination",
    "service",
)
_TCP_SLOTS = (*_COMMON_SLOTS, "source_principal")
_HTTP_SLOTS = (*_COMMON_SLOTS, "response_code", "grpc_response_status", "source_principal")
TCP_METRIC_PREFIX = "istio_tcp_"


def packed_slots(metric: str) -> tuple[str, ...]:
    """The slots before the client's side in a metric's packed tag (TCP: no response code or gRPC status)."""
    return _TCP_SLOTS if metric.startswith(TCP_METRIC_PREFIX) else _HTTP_SLOTS


def _local_side(values: dict[str, str], side: str, local: Mapping[str, str], principal: str) -> None:
    for label, key in _SIDE_KEYS.items():
        values[f"{side}_{label}"] = principal if key == "principal" else local.get(key, UNKNOWN)


def unpack_labels(metric: str, packed: str, local: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """Istio's labels (in Istio's order) from a packed tag value; None when it has too few slots.
    `local`: the reporting proxy's own side (`peer_values`), which the value leaves out."""
    slots = packed_slots(metric)
    parts = packed.split(SEPARATOR, len(slots))
    if len(parts) != len(slots) + 1:
        return None
    values: dict[str, str] = {}
    stand_in: list[str] = []  # the destination's labels a passthrough cluster's service value carries
    for slot, value in zip(slots, parts, strict=False):
        group = GROUPS.get(slot)
        if group is None:
            values[slot] = value
            continue
        members = value.split(GROUP_SEPARATOR)
        if slot == "service" and len(members) == SERVICE_WITH_DESTINATION:
            members, stand_in = members[: len(group)], members[len(group) :]
        values.update(zip(group, members if len(members) == len(group) else [""] * len(group), strict=True))
    if stand_in and not any(values[label] for label in DESTINATION_GROUP):
        values.update(zip(DESTINATION_GROUP, stand_in, strict=True))
    tail = parts[-1].split(SEPARATOR)
    values.update(
        zip(CLIENT_TAIL, tail if len(tail) == len(CLIENT_TAIL) else [UNKNOWN] * len(CLIENT_TAIL), strict=True)
    )
    if local is not None:
        if values["reporter"] == "source" and not values["source_principal"] and parts[-1] == "":
            _local_side(values, "source", local, local.get("principal", UNKNOWN))
        elif values["reporter"] == "destination" and parts[slots.index("destination")] == "":
            mtls = values["connection_security_policy"] == "mutual_tls"
            _local_side(values, "destination", local, local.get("principal", UNKNOWN) if mtls else UNKNOWN)
    return {label: values[label] for label in (TCP_LABELS if metric.startswith(TCP_METRIC_PREFIX) else HTTP_LABELS)}
