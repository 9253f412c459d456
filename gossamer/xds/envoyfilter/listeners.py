"""EnvoyFilter patches of listeners and what is in them: LISTENER (ADD, REMOVE, MERGE; matched by name
and port, the port of `virtualInbound` / `virtualOutbound` per filter chain against its
`destination_port`), FILTER_CHAIN (ADD, REMOVE, MERGE; the default filter chain too), NETWORK_FILTER
and HTTP_FILTER (MERGE, ADD, REMOVE, INSERT_BEFORE, INSERT_AFTER, INSERT_FIRST, REPLACE; without a
(sub)filter name INSERT_BEFORE inserts first and INSERT_AFTER appends). Context SIDECAR_INBOUND is
`virtualInbound` (whose inline route table takes the route patches too), SIDECAR_OUTBOUND the rest."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf.message import Message

from gossamer.ir.envoyfilter import GATEWAY, SIDECAR_INBOUND, SIDECAR_OUTBOUND
from gossamer.mesh import VIRTUAL_INBOUND_LISTENER, VIRTUAL_OUTBOUND_LISTENER
from gossamer.resources.envoyfilter_values import HCM, canonical
from gossamer.xds.build.route_actions import DISABLED_UNTIL_ROUTED
from gossamer.xds.build.telemetry import guard_peer_header
from gossamer.xds.envoyfilter.common import ROUTE_CLASS, Patch, PatchSet, apply_list_ops, copy_message, merge_checked
from gossamer.xds.envoyfilter.routes import patch_route_configuration


def patch_listeners(ps: PatchSet, listeners: dict[str, Message]) -> dict[str, Message]:
    """The listeners (copies, patched in place) without the removed ones, with the added ones."""
    out: dict[str, Message] = {}
    for name, msg in listeners.items():
        assert isinstance(msg, listener_pb2.Listener)
        if _patch_listener(ps, msg):
            out[name] = msg
    for p in ps.adds("LISTENER"):
        assert isinstance(p.value, listener_pb2.Listener)
        if not p.value.name:
            ps.errors.append(f"{p.source}: ADD of a listener without a name; skipped")
            continue
        added = copy_message(p.value)
        assert isinstance(added, listener_pb2.Listener)
        _patch_listener(ps, added, include_listener_ops=False)
        out[p.value.name] = added
    return out


def _context(ps: PatchSet, listener: listener_pb2.Listener) -> str:
    if ps.gateway:
        return GATEWAY
    return SIDECAR_INBOUND if listener.name == VIRTUAL_INBOUND_LISTENER else SIDECAR_OUTBOUND


def _names(filters: Iterable[Any]) -> list[str]:
    return [canonical(f.name) for f in filters]


def _port_of(listener: listener_pb2.Listener) -> int:
    return int(listener.address.socket_address.port_value)


def _listener_matches(p: Patch, listener: listener_pb2.Listener) -> bool:
    lm = p.ir.listener
    if lm is None:
        return True
    if lm.name and lm.name != listener.name:
        return False
    # the port of a virtual listener is matched per filter chain, except by LISTENER patches
    virtual = listener.name in (VIRTUAL_INBOUND_LISTENER, VIRTUAL_OUTBOUND_LISTENER) and p.ir.apply_to != "LISTENER"
    if lm.port_number and not virtual and lm.port_number != _port_of(listener):
        return False
    if lm.listener_filter and lm.listener_filter not in _names(listener.listener_filters):
        return False
    return True


def _chain_matches(p: Patch, listener: listener_pb2.Listener, chain: Any, *, check_filter: bool = True) -> bool:
    """The filter chain criteria of p's match; `filter.name` (the chain has that filter) unless
    check_filter is False (NETWORK_FILTER patches match it per filter)."""
    lm = p.ir.listener
    if lm is None:
        return True
    fcm = chain.filter_chain_match
    if listener.name in (VIRTUAL_INBOUND_LISTENER, VIRTUAL_OUTBOUND_LISTENER) and lm.port_number:
        if not chain.HasField("filter_chain_match") or fcm.destination_port.value != lm.port_number:
            return False
    m = lm.filter_chain
    if m is None:
        return True
    if m.name and m.name != chain.name:
        return False
    if m.sni and m.sni not in fcm.server_names:
        return False
    if m.transport_protocol and m.transport_protocol != fcm.transport_protocol:
        return False
    if m.application_protocols and any(a not in fcm.application_protocols for a in m.application_protocols):
        return False
    if m.destination_port and fcm.destination_port.value != m.destination_port:
        return False
    if check_filter and m.filter and m.filter not in _names(chain.filters):
        return False
    return True


def _patch_listener(ps: PatchSet, listener: listener_pb2.Listener, include_listener_ops: bool = True) -> bool:
    """Patch one listener in place; False: it is removed."""
    context = _context(ps, listener)
    if include_listener_ops:
        for p in ps.in_context("LISTENER", context):
            if not _listener_matches(p, listener):
                continue
            if p.operation == "REMOVE":
                return False
            if p.operation == "MERGE":
                merge_checked(listener, p, ps.errors)
    for p in ps.in_context("FILTER_CHAIN", context):
        if _listener_matches(p, listener):
            _patch_filter_chains(ps, p, listener)
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    emptied = False
    for chain in chains:
        _patch_network_filters(ps, listener, chain, context)
        emptied = emptied or not chain.filters
    if emptied:  # a chain whose filters were all removed goes too
        keep = [c for c in listener.filter_chains if c.filters]
        del listener.filter_chains[:]
        listener.filter_chains.extend(keep)
    return True


def _patch_filter_chains(ps: PatchSet, p: Patch, listener: listener_pb2.Listener) -> None:
    if p.operation == "ADD":
        assert p.value is not None
        listener.filter_chains.append(copy_message(p.value))
        return
    keep = []
    for chain in list(listener.filter_chains):
        if _chain_matches(p, listener, chain):
            if p.operation == "REMOVE":
                continue
            merge_checked(chain, p, ps.errors)
        keep.append(chain)
    del listener.filter_chains[:]
    listener.filter_chains.extend(keep)
    if listener.HasField("default_filter_chain") and _chain_matches(p, listener, listener.default_filter_chain):
        if p.operation == "REMOVE":
            listener.ClearField("default_filter_chain")
        else:
            merge_checked(listener.default_filter_chain, p, ps.errors)


def _filter_name(p: Patch) -> str:
    lm = p.ir.listener
    return lm.filter_chain.filter if lm and lm.filter_chain else ""


def _sub_filter_name(p: Patch) -> str:
    lm = p.ir.listener
    return lm.filter_chain.sub_filter if lm and lm.filter_chain else ""


def _patch_network_filters(ps: PatchSet, listener: listener_pb2.Listener, chain: Any, context: str) -> None:
    relevant = [
        p
        for p in ps.in_context("NETWORK_FILTER", context)
        if _listener_matches(p, listener) and _chain_matches(p, listener, chain, check_filter=False)
    ]
    if relevant:
        apply_list_ops(
            chain.filters,
            relevant,
            lambda p, f: not _filter_name(p) or canonical(f.name) == _filter_name(p),
            lambda p: bool(_filter_name(p)),
            ps.errors,
        )
    http = [
        p
        for p in ps.in_context("HTTP_FILTER", context)
        if _listener_matches(p, listener) and _chain_matches(p, listener, chain)
    ]
    inbound_routes = context == SIDECAR_INBOUND and ps.has(*ROUTE_CLASS)
    if not http and not inbound_routes:
        return
    for f in chain.filters:
        if canonical(f.name) != HCM or not f.HasField("typed_config"):
            continue
        hcm = hcm_pb2.HttpConnectionManager()
        if not f.typed_config.Unpack(hcm):
            continue
        if http:
            _patch_http_filters(ps, hcm, [p for p in http if _filter_name(p) in ("", HCM)])
        if inbound_routes and hcm.HasField("route_config"):
            patched = patch_route_configuration(ps, hcm.route_config, inbound=True)
            hcm.route_config.CopyFrom(patched)
        f.typed_config.Pack(hcm)


def _patch_http_filters(ps: PatchSet, hcm: hcm_pb2.HttpConnectionManager, patches: list[Patch]) -> None:
    apply_list_ops(
        hcm.http_filters,
        patches,
        lambda p, f: not _sub_filter_name(p) or canonical(f.name) == _sub_filter_name(p),
        lambda p: bool(_sub_filter_name(p)),
        ps.errors,
    )
    _enable_merged_filters(hcm, patches)
    guard_peer_header(hcm.http_filters)  # a filter inserted after the peer reader must not see its header


def _enable_merged_filters(hcm: hcm_pb2.HttpConnectionManager, patches: list[Patch]) -> None:
    """The fault and CORS filters are disabled unless a route enables them (`DISABLED_UNTIL_ROUTED`); Istio
    keeps them enabled with an empty config, so a MERGE into one (e.g. a fault for every route) takes
    effect there on every route: here too, unless the patch itself says `disabled`."""
    merged = {
        _sub_filter_name(p)
        for p in patches
        if p.operation == "MERGE" and p.value is not None and not getattr(p.value, "disabled", False)
    }
    for f in hcm.http_filters:
        if f.disabled and f.name in DISABLED_UNTIL_ROUTED and canonical(f.name) in merged:
            f.disabled = False
