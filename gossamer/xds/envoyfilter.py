"""EnvoyFilter (networking.istio.io/v1alpha3): the last step of the pipeline, after build.

`apply_envoy_filters(snapshot, proxy, resources)` picks the EnvoyFilters that apply to a proxy (the
root namespace's for every proxy, then the proxy's own namespace's; `workloadSelector` labels), orders
them as Istio does (priority, then creation, then name) and applies their `configPatches` to copies of
the built protos (builders share their protos between proxy groups: nothing here touches an input).

Istio's semantics, object by object (`applyTo`):

* LISTENER: ADD, REMOVE, MERGE. Matched by name and port (the port of `virtualInbound` /
  `virtualOutbound` is matched per filter chain, against its `destination_port`).
* FILTER_CHAIN: ADD, REMOVE, MERGE (also the default filter chain).
* NETWORK_FILTER, HTTP_FILTER: MERGE, ADD (append), REMOVE, INSERT_BEFORE, INSERT_AFTER, INSERT_FIRST,
  REPLACE. Without a (sub)filter name, INSERT_BEFORE inserts first and INSERT_AFTER appends.
* ROUTE_CONFIGURATION: MERGE. VIRTUAL_HOST: ADD, REMOVE, MERGE. HTTP_ROUTE: MERGE, ADD, REMOVE,
  INSERT_BEFORE, INSERT_AFTER, INSERT_FIRST. Route tables sent over RDS and those inline in
  `virtualInbound` (context SIDECAR_INBOUND).
* CLUSTER: ADD, REMOVE, MERGE; matched by name, or by `service` / `subset` / `portNumber` parsed from
  `outbound|PORT|SUBSET|HOST`.

Contexts: GATEWAY for routers; on sidecars SIDECAR_INBOUND is `virtualInbound`, `inbound|...` clusters
and inbound route tables, SIDECAR_OUTBOUND everything else. MERGE is a protobuf merge of the value
(Envoy's JSON, `@type` in Any fields) into the object; Any fields of the same type are merged unpacked.
A patch that cannot be applied is skipped and reported (`PatchResult.errors`), as Istio logs and skips it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2, descriptor_pool, json_format
from google.protobuf.message import Message

from gossamer.mesh import (
    ROOT_NAMESPACE,
    TRUST_DOMAIN,
    ClusterName,
    is_inbound_cluster,
    parse_cluster_name,
)
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy
from gossamer.resources.base import Resource
from gossamer.resources.networking import EnvoyConfigObjectPatch, EnvoyFilter, EnvoyFilterSpec
from gossamer.xds.types import CLUSTER, LISTENER, ROUTE

log = logging.getLogger(__name__)

# What `match.proxy.proxyVersion` is matched against (Istio's ISTIO_VERSION of the proxy).
ISTIO_VERSION = "1.24.0"
HCM = "envoy.filters.network.http_connection_manager"
VIRTUAL_INBOUND = "virtualInbound"
VIRTUAL_OUTBOUND = "virtualOutbound"

# Istio's deprecated filter names -> Envoy's canonical ones (matched and written canonically).
LEGACY_NAMES: dict[str, str] = {
    "envoy.lua": "envoy.filters.http.lua",
    "envoy.router": "envoy.filters.http.router",
    "envoy.cors": "envoy.filters.http.cors",
    "envoy.fault": "envoy.filters.http.fault",
    "envoy.gzip": "envoy.filters.http.gzip",
    "envoy.ext_authz": "envoy.filters.http.ext_authz",
    "envoy.rate_limit": "envoy.filters.http.ratelimit",
    "envoy.health_check": "envoy.filters.http.health_check",
    "envoy.buffer": "envoy.filters.http.buffer",
    "envoy.grpc_web": "envoy.filters.http.grpc_web",
    "envoy.http_connection_manager": HCM,
    "envoy.tcp_proxy": "envoy.filters.network.tcp_proxy",
    "envoy.filters.network.rbac": "envoy.filters.network.rbac",
    "envoy.ratelimit": "envoy.filters.network.ratelimit",
    "envoy.listener.tls_inspector": "envoy.filters.listener.tls_inspector",
    "envoy.listener.original_dst": "envoy.filters.listener.original_dst",
    "envoy.listener.http_inspector": "envoy.filters.listener.http_inspector",
}

# applyTo -> the proto its `value` is.
VALUE_TYPES: dict[str, type[Message]] = {
    "LISTENER": listener_pb2.Listener,
    "FILTER_CHAIN": listener_components_pb2.FilterChain,
    "NETWORK_FILTER": listener_components_pb2.Filter,
    "HTTP_FILTER": hcm_pb2.HttpFilter,
    "ROUTE_CONFIGURATION": route_pb2.RouteConfiguration,
    "VIRTUAL_HOST": route_components_pb2.VirtualHost,
    "HTTP_ROUTE": route_components_pb2.Route,
    "CLUSTER": cluster_pb2.Cluster,
}

# applyTo -> the operations Istio implements for it.
OPERATIONS: dict[str, frozenset[str]] = {
    "LISTENER": frozenset({"ADD", "REMOVE", "MERGE"}),
    "FILTER_CHAIN": frozenset({"ADD", "REMOVE", "MERGE"}),
    "NETWORK_FILTER": frozenset({"MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE"}),
    "HTTP_FILTER": frozenset({"MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE"}),
    "ROUTE_CONFIGURATION": frozenset({"MERGE"}),
    "VIRTUAL_HOST": frozenset({"ADD", "REMOVE", "MERGE"}),
    "HTTP_ROUTE": frozenset({"MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST"}),
    "CLUSTER": frozenset({"ADD", "REMOVE", "MERGE"}),
}

LISTENER_CLASS = ("LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER")
ROUTE_CLASS = ("ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE")

Resources = dict[str, dict[str, Message]]


class PatchValueError(ValueError):
    """A patch `value` that is not the Envoy object its `applyTo` names."""


def canonical(name: str) -> str:
    return LEGACY_NAMES.get(name, name)


# ---------------------------------------------------------------------------- values


def _ensure_types(value: Any) -> None:
    """Import the generated modules of every `@type` in `value`, so that json_format finds them
    (the xds-protos modules are only loaded when imported)."""
    if isinstance(value, dict):
        url = value.get("@type")
        if isinstance(url, str):
            _ensure_type(url.rpartition("/")[2])
        for v in value.values():
            _ensure_types(v)
    elif isinstance(value, list):
        for v in value:
            _ensure_types(v)


@functools.cache
def _modules_by_package() -> dict[str, tuple[str, ...]]:
    """Proto package -> the generated modules (`*_pb2`) of xds-protos that define it, from the
    distribution's own file list: the only module names `_ensure_type` ever imports."""
    out: dict[str, list[str]] = {}
    for path in importlib.metadata.files("xds-protos") or []:
        parts = path.parts
        if path.name.endswith("_pb2.py") and parts[0] not in ("test", "tests"):
            package = ".".join(parts[:-1])
            out.setdefault(package, []).append(f"{package}.{path.name[:-3]}")
    return {k: tuple(sorted(v)) for k, v in out.items()}


def _ensure_type(full_name: str) -> None:
    """Load the message type `full_name` (an `@type` from config) into the descriptor pool. Config
    text is only a key into xds-protos' own module list: it never names what is imported."""
    pool = descriptor_pool.Default()
    try:
        pool.FindMessageTypeByName(full_name)
        return
    except KeyError:
        pass
    index = _modules_by_package()
    package = full_name
    while "." in package:
        package = package.rpartition(".")[0]  # nested messages: Outer.Inner
        for module in index.get(package, ()):
            importlib.import_module(module)
        if package in index:
            return


def _canonical_names(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return {**value, "name": canonical(value["name"])}
    return value


def value_to_proto(apply_to: str, value: dict[str, Any]) -> Message:
    """A patch value as the proto of its applyTo (Envoy's JSON, `@type` in Any fields)."""
    cls = VALUE_TYPES.get(apply_to)
    if cls is None:
        raise PatchValueError(f"applyTo {apply_to} is not supported")
    _ensure_types(value)
    if apply_to in ("NETWORK_FILTER", "HTTP_FILTER"):
        value = _canonical_names(value)
    try:
        return json_format.ParseDict(value, cls())
    except (json_format.ParseError, TypeError, ValueError, KeyError) as e:
        raise PatchValueError(f"value is not a valid {cls.DESCRIPTOR.full_name}: {e}") from e


def _copy(msg: Message) -> Message:
    out = type(msg)()
    out.CopyFrom(msg)
    return out


def merge(dst: Message, src: Message) -> None:
    """Protobuf merge (set scalars overwrite, messages merge, repeated fields append) in which an Any
    field of the same type on both sides is merged unpacked (Istio's MergeAnyWithAny)."""
    for fd, value in src.ListFields():
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            target = getattr(dst, fd.name)
            value_fd = fd.message_type.fields_by_name["value"]
            for k, v in value.items():
                if value_fd.message_type is None:
                    target[k] = v
                elif k in target:
                    _merge_message(target[k], v)
                else:
                    target[k].CopyFrom(v)
        elif fd.is_repeated:
            getattr(dst, fd.name).extend(value)
        elif fd.message_type is not None:
            _merge_message(getattr(dst, fd.name), value)
        else:
            setattr(dst, fd.name, value)


def _merge_message(dst: Message, src: Message) -> None:
    if isinstance(dst, any_pb2.Any) and isinstance(src, any_pb2.Any):
        if dst.type_url and src.type_url in (dst.type_url, ""):
            _ensure_type(dst.type_url.rpartition("/")[2])
            inner_cls = _message_class(dst.type_url)
            if inner_cls is not None:
                a, b = inner_cls(), inner_cls()
                dst.Unpack(a)
                if src.type_url:
                    src.Unpack(b)
                merge(a, b)
                dst.Pack(a)
                return
        if dst.type_url and src.type_url and dst.type_url != src.type_url:
            raise ValueError(f"cannot merge {src.type_url.rpartition('/')[2]} into {dst.type_url.rpartition('/')[2]}")
        dst.CopyFrom(src)
        return
    merge(dst, src)


def _message_class(type_url: str) -> type[Message] | None:
    from google.protobuf import message_factory

    try:
        desc = descriptor_pool.Default().FindMessageTypeByName(type_url.rpartition("/")[2])
    except KeyError:
        return None
    cls: type[Message] = message_factory.GetMessageClass(desc)
    return cls


# ---------------------------------------------------------------------------- selection


def proxy_metadata(proxy: Proxy) -> dict[str, str]:
    """The node metadata an EnvoyFilter's `match.proxy.metadata` is compared with."""
    return {
        "NAMESPACE": proxy.namespace,
        "ISTIO_VERSION": ISTIO_VERSION,
        "CLUSTER_ID": "Kubernetes",
        "MESH_ID": TRUST_DOMAIN,
    }


def envoy_filters_for(snapshot: MeshSnapshot, proxy: Proxy) -> list[Resource[Any]]:
    """The EnvoyFilters of the root namespace and of the proxy's namespace whose workloadSelector picks
    it, in Istio's order: priority, then creation, then name.namespace."""
    labels = proxy.label_map
    chosen: list[tuple[int, int, Resource[Any]]] = []
    for order, ef in enumerate(snapshot.of_kind(EnvoyFilter)):
        if ef.metadata.namespace not in (ROOT_NAMESPACE, proxy.namespace):
            continue
        spec: EnvoyFilterSpec = ef.spec
        if spec.target_refs:
            continue  # waypoints and Gateway API gateways: none here
        selector = spec.workload_selector.labels if spec.workload_selector else {}
        if any(labels.get(k) != v for k, v in selector.items()):
            continue
        chosen.append((spec.priority, order, ef))
    chosen.sort(key=lambda t: (t[0], t[1]))
    return [ef for _, _, ef in chosen]


# ---------------------------------------------------------------------------- patches


@dataclass
class _Patch:
    source: str  # "ns/name configPatches[i]"
    apply_to: str
    operation: str
    context: str
    raw: EnvoyConfigObjectPatch
    value: Message | None = None


@dataclass
class PatchResult:
    resources: Resources
    applied: list[str] = field(default_factory=list)  # "ns/name", the EnvoyFilters that apply
    errors: list[str] = field(default_factory=list)


def _proxy_matches(p: _Patch, proxy: Proxy) -> bool:
    pm = p.raw.match.proxy if p.raw.match else None
    if pm is None:
        return True
    if pm.proxy_version and not re.search(pm.proxy_version, ISTIO_VERSION):
        return False
    meta = proxy_metadata(proxy)
    return all(meta.get(k) == v for k, v in (pm.metadata or {}).items())


def _patches(filters: Iterable[Resource[Any]], proxy: Proxy, errors: list[str]) -> dict[str, list[_Patch]]:
    out: dict[str, list[_Patch]] = {}
    for ef in filters:
        spec: EnvoyFilterSpec = ef.spec
        for i, cp in enumerate(spec.config_patches):
            source = f"EnvoyFilter {ef.metadata.namespace}/{ef.metadata.name} configPatches[{i}]"
            op = cp.patch.operation if cp.patch else "INVALID"
            if cp.apply_to not in OPERATIONS or op not in OPERATIONS[cp.apply_to]:
                errors.append(f"{source}: {op} on {cp.apply_to} is not supported; skipped")
                continue
            context = cp.match.context if cp.match else "ANY"
            p = _Patch(source, cp.apply_to, op, context, cp)
            if not _proxy_matches(p, proxy):
                continue
            if op != "REMOVE":
                if not cp.patch or cp.patch.value is None:
                    errors.append(f"{source}: {op} needs a value; skipped")
                    continue
                try:
                    p.value = value_to_proto(cp.apply_to, cp.patch.value)
                except PatchValueError as e:
                    errors.append(f"{source}: {e}; skipped")
                    continue
            out.setdefault(cp.apply_to, []).append(p)
    return out


def apply_envoy_filters(snapshot: MeshSnapshot, proxy: Proxy, resources: Resources) -> PatchResult:
    """`resources` with the proxy's EnvoyFilters applied. `resources` and its protos are left as they
    are: every patched type gets a new dict of copies."""
    filters = envoy_filters_for(snapshot, proxy)
    if not filters:
        return PatchResult(resources)
    result = PatchResult(dict(resources), applied=[f"{f.metadata.namespace}/{f.metadata.name}" for f in filters])
    patches = _patches(filters, proxy, result.errors)
    ctx = _Ctx(proxy, patches, result.errors)
    out = result.resources
    if any(patches.get(a) for a in ROUTE_CLASS):
        out[ROUTE] = {
            n: _patched_route_config(ctx, m, inbound=False) for n, m in _copies(resources.get(ROUTE, {})).items()
        }
    if any(patches.get(a) for a in (*LISTENER_CLASS, *ROUTE_CLASS)):
        out[LISTENER] = ctx.patch_listeners(_copies(resources.get(LISTENER, {})))
    if patches.get("CLUSTER"):
        out[CLUSTER] = ctx.patch_clusters(_copies(resources.get(CLUSTER, {})))
    for e in result.errors:
        log.warning("proxy group %s: %s", proxy.group, e)
    return result


def _copies(items: dict[str, Message]) -> dict[str, Message]:
    return {k: _copy(v) for k, v in items.items()}


def _context_ok(p: _Patch, context: str) -> bool:
    return p.context in ("ANY", context)


def _names(filters: Iterable[Any]) -> list[str]:
    return [canonical(f.name) for f in filters]


def _insert(items: Any, p: _Patch, matches: Callable[[Any], bool], has_match: bool) -> None:
    """ADD / INSERT_FIRST / INSERT_BEFORE / INSERT_AFTER of p.value into the repeated field `items`."""
    assert p.value is not None
    new = _copy(p.value)
    current = list(items)
    if p.operation == "ADD":
        current.append(new)
    elif p.operation == "INSERT_FIRST" or (p.operation == "INSERT_BEFORE" and not has_match):
        current.insert(0, new)
    elif p.operation == "INSERT_AFTER" and not has_match:
        current.append(new)
    else:
        at = next((i for i, x in enumerate(current) if matches(x)), -1)
        if at < 0:
            return
        current.insert(at if p.operation == "INSERT_BEFORE" else at + 1, new)
    del items[:]
    items.extend(current)


def _apply_list_ops(
    items: Any,
    patches: list[_Patch],
    matches: Callable[[_Patch, Any], bool],
    has_match: Callable[[_Patch], bool],
    errors: list[str],
) -> None:
    """Istio's list operations on a repeated field of messages (filters, routes)."""
    for p in patches:
        if p.operation in ("ADD", "INSERT_FIRST", "INSERT_BEFORE", "INSERT_AFTER"):
            _insert(items, p, _bind(matches, p), has_match(p))
            continue
        keep = []
        for x in list(items):
            if not matches(p, x):
                keep.append(x)
            elif p.operation == "REMOVE":
                continue
            elif p.operation == "REPLACE":
                assert p.value is not None
                keep.append(_copy(p.value))
            else:  # MERGE
                _merge_checked(x, p, errors)
                keep.append(x)
        del items[:]
        items.extend(keep)


def _bind(matches: Callable[[_Patch, Any], bool], p: _Patch) -> Callable[[Any], bool]:
    return lambda x: matches(p, x)


def _merge_checked(target: Message, p: _Patch, errors: list[str]) -> None:
    assert p.value is not None
    candidate = _copy(target)
    try:
        merge(candidate, p.value)
    except (TypeError, ValueError) as e:
        errors.append(f"{p.source}: MERGE failed: {e}; skipped")
        return
    target.CopyFrom(candidate)


def _port_of(listener: listener_pb2.Listener) -> int:
    return int(listener.address.socket_address.port_value)


class _Ctx:
    def __init__(self, proxy: Proxy, patches: dict[str, list[_Patch]], errors: list[str]) -> None:
        self.proxy = proxy
        self.patches = patches
        self.errors = errors
        self.router = proxy.type == "router"

    def _of(self, apply_to: str, context: str) -> list[_Patch]:
        return [p for p in self.patches.get(apply_to, []) if _context_ok(p, context)]

    # -- listeners --------------------------------------------------------
    def listener_context(self, listener: listener_pb2.Listener) -> str:
        if self.router:
            return "GATEWAY"
        return "SIDECAR_INBOUND" if listener.name == VIRTUAL_INBOUND else "SIDECAR_OUTBOUND"

    def patch_listeners(self, listeners: dict[str, Message]) -> dict[str, Message]:
        out: dict[str, Message] = {}
        for name, msg in listeners.items():
            assert isinstance(msg, listener_pb2.Listener)
            if self._patch_listener(msg):
                out[name] = msg
        for p in self.patches.get("LISTENER", []):
            if p.operation == "ADD" and (p.context in ("ANY", "GATEWAY") if self.router else p.context != "GATEWAY"):
                assert isinstance(p.value, listener_pb2.Listener)
                if not p.value.name:
                    self.errors.append(f"{p.source}: ADD of a listener without a name; skipped")
                    continue
                added = _copy(p.value)
                assert isinstance(added, listener_pb2.Listener)
                self._patch_listener(added, include_listener_ops=False)
                out[p.value.name] = added
        return out

    def _listener_matches(self, p: _Patch, listener: listener_pb2.Listener) -> bool:
        lm = p.raw.match.listener if p.raw.match else None
        if lm is None:
            return True
        if lm.name and lm.name != listener.name:
            return False
        # the port of a virtual listener is matched per filter chain, except by LISTENER patches
        virtual = listener.name in (VIRTUAL_INBOUND, VIRTUAL_OUTBOUND) and p.apply_to != "LISTENER"
        if lm.port_number and not virtual and lm.port_number != _port_of(listener):
            return False
        if lm.listener_filter and canonical(lm.listener_filter) not in _names(listener.listener_filters):
            return False
        return True

    def _chain_matches(
        self, p: _Patch, listener: listener_pb2.Listener, chain: Any, *, check_filter: bool = True
    ) -> bool:
        """The filter chain criteria of p's match; `filter.name` (the chain has that filter) unless
        check_filter is False (NETWORK_FILTER patches match it per filter)."""
        lm = p.raw.match.listener if p.raw.match else None
        if lm is None:
            return True
        fcm = chain.filter_chain_match
        if listener.name in (VIRTUAL_INBOUND, VIRTUAL_OUTBOUND) and lm.port_number:
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
        if m.application_protocols and any(
            a.strip() not in fcm.application_protocols for a in m.application_protocols.split(",")
        ):
            return False
        if m.destination_port and fcm.destination_port.value != m.destination_port:
            return False
        if check_filter and m.filter and m.filter.name and canonical(m.filter.name) not in _names(chain.filters):
            return False
        return True

    def _patch_listener(self, listener: listener_pb2.Listener, include_listener_ops: bool = True) -> bool:
        """Patch one listener in place; False: it is removed."""
        context = self.listener_context(listener)
        if include_listener_ops:
            for p in self._of("LISTENER", context):
                if not self._listener_matches(p, listener):
                    continue
                if p.operation == "REMOVE":
                    return False
                if p.operation == "MERGE":
                    _merge_checked(listener, p, self.errors)
        # filter chains
        for p in self._of("FILTER_CHAIN", context):
            if not self._listener_matches(p, listener):
                continue
            if p.operation == "ADD":
                listener.filter_chains.append(_copy(p.value))
                continue
            keep = []
            for chain in list(listener.filter_chains):
                if self._chain_matches(p, listener, chain):
                    if p.operation == "REMOVE":
                        continue
                    _merge_checked(chain, p, self.errors)
                keep.append(chain)
            del listener.filter_chains[:]
            listener.filter_chains.extend(keep)
            if listener.HasField("default_filter_chain") and self._chain_matches(
                p, listener, listener.default_filter_chain
            ):
                if p.operation == "REMOVE":
                    listener.ClearField("default_filter_chain")
                else:
                    _merge_checked(listener.default_filter_chain, p, self.errors)
        chains = list(listener.filter_chains)
        if listener.HasField("default_filter_chain"):
            chains.append(listener.default_filter_chain)
        emptied = False
        for chain in chains:
            self._patch_network_filters(listener, chain, context)
            emptied = emptied or not chain.filters
        if emptied:  # a chain whose filters were all removed goes too
            keep = [c for c in listener.filter_chains if c.filters]
            del listener.filter_chains[:]
            listener.filter_chains.extend(keep)
        return True

    def _patch_network_filters(self, listener: listener_pb2.Listener, chain: Any, context: str) -> None:
        def filter_name(p: _Patch) -> str:
            lm = p.raw.match.listener if p.raw.match else None
            fm = lm.filter_chain.filter if lm and lm.filter_chain else None
            return canonical(fm.name) if fm and fm.name else ""

        relevant = [
            p
            for p in self._of("NETWORK_FILTER", context)
            if self._listener_matches(p, listener) and self._chain_matches(p, listener, chain, check_filter=False)
        ]
        if relevant:
            _apply_list_ops(
                chain.filters,
                relevant,
                lambda p, f: not filter_name(p) or canonical(f.name) == filter_name(p),
                lambda p: bool(filter_name(p)),
                self.errors,
            )
        http = [
            p
            for p in self._of("HTTP_FILTER", context)
            if self._listener_matches(p, listener) and self._chain_matches(p, listener, chain)
        ]
        inbound_routes = context == "SIDECAR_INBOUND" and any(self.patches.get(a) for a in ROUTE_CLASS)
        if not http and not inbound_routes:
            return
        for f in chain.filters:
            if canonical(f.name) != HCM or not f.HasField("typed_config"):
                continue
            hcm = hcm_pb2.HttpConnectionManager()
            if not f.typed_config.Unpack(hcm):
                continue
            if http:
                self._patch_http_filters(hcm, [p for p in http if filter_name(p) in ("", HCM)])
            if inbound_routes and hcm.HasField("route_config"):
                patched = _patched_route_config(self, hcm.route_config, inbound=True)
                hcm.route_config.CopyFrom(patched)
            f.typed_config.Pack(hcm)

    def _patch_http_filters(self, hcm: hcm_pb2.HttpConnectionManager, patches: list[_Patch]) -> None:
        def sub_name(p: _Patch) -> str:
            lm = p.raw.match.listener if p.raw.match else None
            fm = lm.filter_chain.filter if lm and lm.filter_chain else None
            return canonical(fm.sub_filter.name) if fm and fm.sub_filter and fm.sub_filter.name else ""

        _apply_list_ops(
            hcm.http_filters,
            patches,
            lambda p, f: not sub_name(p) or canonical(f.name) == sub_name(p),
            lambda p: bool(sub_name(p)),
            self.errors,
        )

    # -- clusters ---------------------------------------------------------
    def cluster_context(self, name: str) -> str:
        if self.router:
            return "GATEWAY"
        inbound = is_inbound_cluster(name) or name == "InboundPassthroughCluster"
        return "SIDECAR_INBOUND" if inbound else "SIDECAR_OUTBOUND"

    def _cluster_matches(self, p: _Patch, name: str) -> bool:
        cm = p.raw.match.cluster if p.raw.match else None
        if cm is None:
            return True
        if cm.name:
            return cm.name == name
        parsed = parse_cluster_name(name) or ClusterName("", 0, "", "")
        if cm.subset and cm.subset != parsed.subset:
            return False
        if cm.service and cm.service != parsed.host:
            return False
        return not (cm.port_number and cm.port_number != parsed.port)

    def patch_clusters(self, clusters: dict[str, Message]) -> dict[str, Message]:
        out: dict[str, Message] = {}
        for name, cluster in clusters.items():
            removed = False
            for p in self._of("CLUSTER", self.cluster_context(name)):
                if p.operation == "ADD" or not self._cluster_matches(p, name):
                    continue
                if p.operation == "REMOVE":
                    removed = True
                    break
                _merge_checked(cluster, p, self.errors)
            if not removed:
                out[name] = cluster
        for p in self.patches.get("CLUSTER", []):
            if p.operation == "ADD" and (p.context in ("ANY", "GATEWAY") if self.router else p.context != "GATEWAY"):
                assert isinstance(p.value, cluster_pb2.Cluster)
                if not p.value.name:
                    self.errors.append(f"{p.source}: ADD of a cluster without a name; skipped")
                    continue
                out[p.value.name] = _copy(p.value)
        return out


# ---------------------------------------------------------------------------- route configurations


def _route_context(ctx: _Ctx, inbound: bool) -> str:
    if ctx.router:
        return "GATEWAY"
    return "SIDECAR_INBOUND" if inbound else "SIDECAR_OUTBOUND"


def _route_port(name: str, gateway: bool) -> int:
    """The port a route table name stands for: "9080"; inbound "inbound|8080||"; gateways "http.8080",
    "https.443.name.gw.ns"."""
    if gateway:
        parts = name.split(".")
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if is_inbound_cluster(name):
        parsed = parse_cluster_name(name)
        return parsed.port if parsed else 0
    return int(name) if name.isdigit() else 0


def _route_config_matches(ctx: _Ctx, p: _Patch, rc: route_pb2.RouteConfiguration) -> bool:
    rm = p.raw.match.route_configuration if p.raw.match else None
    if rm is None:
        return True
    if rm.name and rm.name != rc.name:
        return False
    if rm.port_number and rm.port_number != _route_port(rc.name, ctx.router):
        return False
    if ctx.router:
        parts = rc.name.split(".")
        if rm.port_name and (len(parts) < 3 or parts[2] != rm.port_name):
            return False
        if rm.gateway and (len(parts) < 5 or rm.gateway not in (f"{parts[4]}/{parts[3]}", parts[3])):
            return False
    return True


def _vhost_matches(p: _Patch, vhost: Any) -> bool:
    rm = p.raw.match.route_configuration if p.raw.match else None
    vm = rm.vhost if rm else None
    if vm is None:
        return True
    if vm.name and vm.name != vhost.name:
        return False
    return not (vm.domain_name and vm.domain_name not in vhost.domains)


def _route_matches(p: _Patch, route: Any) -> bool:
    rm = p.raw.match.route_configuration if p.raw.match else None
    m = rm.vhost.route if rm and rm.vhost else None
    if m is None:
        return True
    if m.name and m.name != route.name:
        return False
    action = route.WhichOneof("action")
    wanted = {"ROUTE": "route", "REDIRECT": "redirect", "DIRECT_RESPONSE": "direct_response"}.get(m.action)
    return wanted is None or action == wanted


def _has_route_name(p: _Patch) -> bool:
    rm = p.raw.match.route_configuration if p.raw.match else None
    return bool(rm and rm.vhost and rm.vhost.route and rm.vhost.route.name)


def _patched_route_config(ctx: _Ctx, msg: Message, *, inbound: bool) -> Message:
    """One route table, patched in place (it is already a copy)."""
    assert isinstance(msg, route_pb2.RouteConfiguration)
    context = _route_context(ctx, inbound)
    for p in ctx._of("ROUTE_CONFIGURATION", context):
        if _route_config_matches(ctx, p, msg):
            _merge_checked(msg, p, ctx.errors)
    for p in ctx._of("VIRTUAL_HOST", context):
        if not _route_config_matches(ctx, p, msg):
            continue
        if p.operation == "ADD":
            msg.virtual_hosts.append(_copy(p.value))
            continue
        keep = []
        for vh in list(msg.virtual_hosts):
            if _vhost_matches(p, vh):
                if p.operation == "REMOVE":
                    continue
                _merge_checked(vh, p, ctx.errors)
            keep.append(vh)
        del msg.virtual_hosts[:]
        msg.virtual_hosts.extend(keep)
    routes = [p for p in ctx._of("HTTP_ROUTE", context) if _route_config_matches(ctx, p, msg)]
    for vh in msg.virtual_hosts:
        mine = [p for p in routes if _vhost_matches(p, vh)]
        if mine:
            _apply_list_ops(vh.routes, mine, _route_matches, _has_route_name, ctx.errors)
    return msg
