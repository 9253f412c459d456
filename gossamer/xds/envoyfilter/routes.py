"""EnvoyFilter patches of route tables: ROUTE_CONFIGURATION (MERGE), VIRTUAL_HOST (ADD, REMOVE, MERGE)
and HTTP_ROUTE (MERGE, ADD, REMOVE, INSERT_BEFORE, INSERT_AFTER, INSERT_FIRST), on the tables sent over
RDS and those inline in `virtualInbound` (context SIDECAR_INBOUND)."""

from __future__ import annotations

from typing import Any

from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

from gossamer.ir.envoyfilter import GATEWAY, SIDECAR_INBOUND, SIDECAR_OUTBOUND
from gossamer.mesh import is_inbound_cluster, parse_cluster_name
from gossamer.xds.envoyfilter.common import Patch, PatchSet, apply_list_ops, copy_message, merge_checked

_ACTIONS = {"ROUTE": "route", "REDIRECT": "redirect", "DIRECT_RESPONSE": "direct_response"}


def patch_route_configuration(ps: PatchSet, msg: Message, *, inbound: bool) -> Message:
    """One route table, patched in place (it is already a copy)."""
    assert isinstance(msg, route_pb2.RouteConfiguration)
    context = GATEWAY if ps.gateway else (SIDECAR_INBOUND if inbound else SIDECAR_OUTBOUND)
    for p in ps.in_context("ROUTE_CONFIGURATION", context):
        if _table_matches(ps, p, msg):
            merge_checked(msg, p, ps.errors)
    for p in ps.in_context("VIRTUAL_HOST", context):
        if not _table_matches(ps, p, msg):
            continue
        if p.operation == "ADD":
            assert p.value is not None
            msg.virtual_hosts.append(copy_message(p.value))
            continue
        keep = []
        for vh in list(msg.virtual_hosts):
            if _vhost_matches(p, vh):
                if p.operation == "REMOVE":
                    continue
                merge_checked(vh, p, ps.errors)
            keep.append(vh)
        del msg.virtual_hosts[:]
        msg.virtual_hosts.extend(keep)
    routes = [p for p in ps.in_context("HTTP_ROUTE", context) if _table_matches(ps, p, msg)]
    for vh in msg.virtual_hosts:
        mine = [p for p in routes if _vhost_matches(p, vh)]
        if mine:
            apply_list_ops(vh.routes, mine, _route_matches, _has_route_name, ps.errors)
    return msg


def _table_port(name: str, gateway: bool) -> int:
    """The port a route table name stands for: "9080"; inbound "inbound|8080||"; gateways "http.8080",
    "https.443.name.gw.ns"."""
    if gateway:
        parts = name.split(".")
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if is_inbound_cluster(name):
        parsed = parse_cluster_name(name)
        return parsed.port if parsed else 0
    return int(name) if name.isdigit() else 0


def _table_matches(ps: PatchSet, p: Patch, rc: route_pb2.RouteConfiguration) -> bool:
    rm = p.ir.route_configuration
    if rm is None:
        return True
    if rm.name and rm.name != rc.name:
        return False
    if rm.port_number and rm.port_number != _table_port(rc.name, ps.gateway):
        return False
    if ps.gateway:
        parts = rc.name.split(".")
        if rm.port_name and (len(parts) < 3 or parts[2] != rm.port_name):
            return False
        if rm.gateway and (len(parts) < 5 or rm.gateway not in (f"{parts[4]}/{parts[3]}", parts[3])):
            return False
    return True


def _vhost_matches(p: Patch, vhost: Any) -> bool:
    rm = p.ir.route_configuration
    vm = rm.vhost if rm else None
    if vm is None:
        return True
    if vm.name and vm.name != vhost.name:
        return False
    return not (vm.domain_name and vm.domain_name not in vhost.domains)


def _route_matches(p: Patch, route: Any) -> bool:
    rm = p.ir.route_configuration
    m = rm.vhost.route if rm and rm.vhost else None
    if m is None:
        return True
    if m.name and m.name != route.name:
        return False
    wanted = _ACTIONS.get(m.action)
    return wanted is None or route.WhichOneof("action") == wanted


def _has_route_name(p: Patch) -> bool:
    rm = p.ir.route_configuration
    return bool(rm and rm.vhost and rm.vhost.route and rm.vhost.route.name)
