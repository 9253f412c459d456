"""EnvoyFilter patches of clusters: CLUSTER (ADD, REMOVE, MERGE), matched by name, or by `service`,
`subset` and `portNumber` parsed from `outbound|PORT|SUBSET|HOST`. Context SIDECAR_INBOUND is the
`inbound|...` clusters and InboundPassthroughCluster, SIDECAR_OUTBOUND the rest; GATEWAY on gateways."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf.message import Message

from gossamer.ir.envoyfilter import GATEWAY, SIDECAR_INBOUND, SIDECAR_OUTBOUND
from gossamer.mesh import INBOUND_PASSTHROUGH_CLUSTER, is_inbound_cluster, parse_cluster_name
from gossamer.xds.envoyfilter.common import Patch, PatchSet, copy_message, merge_checked


def patch_clusters(ps: PatchSet, clusters: dict[str, Message]) -> dict[str, Message]:
    """The clusters (copies, patched in place) without the removed ones, with the added ones."""
    out: dict[str, Message] = {}
    for name, cluster in clusters.items():
        removed = False
        for p in ps.in_context("CLUSTER", _context(ps, name)):
            if p.operation == "ADD" or not _matches(p, name):
                continue
            if p.operation == "REMOVE":
                removed = True
                break
            merge_checked(cluster, p, ps.errors)
        if not removed:
            out[name] = cluster
    for p in ps.adds("CLUSTER"):
        assert isinstance(p.value, cluster_pb2.Cluster)
        if not p.value.name:
            ps.errors.append(f"{p.source}: ADD of a cluster without a name; skipped")
            continue
        out[p.value.name] = copy_message(p.value)
    return out


def _context(ps: PatchSet, name: str) -> str:
    if ps.gateway:
        return GATEWAY
    return SIDECAR_INBOUND if is_inbound_cluster(name) or name == INBOUND_PASSTHROUGH_CLUSTER else SIDECAR_OUTBOUND


def _matches(p: Patch, name: str) -> bool:
    cm = p.ir.cluster
    if cm is None:
        return True
    if cm.name:
        return cm.name == name
    parsed = parse_cluster_name(name)
    subset, host, port = (parsed.subset, parsed.host, parsed.port) if parsed else ("", "", 0)
    if cm.subset and cm.subset != subset:
        return False
    if cm.service and cm.service != host:
        return False
    return not (cm.port_number and cm.port_number != port)
