"""EnvoyFilter patch values: which Envoy object each `applyTo` names, which operations Istio
implements for it, and a value (Envoy's JSON, `@type` in Any fields) as that object's proto.

Used where a patch is checked (resources/validation.py at apply, translate/envoyfilter.py when it
chooses a proxy's patches) and where it is applied (xds/envoyfilter/).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import descriptor_pool, json_format
from google.protobuf.message import Message

HCM = "envoy.filters.network.http_connection_manager"

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


class PatchValueError(ValueError):
    """A patch `value` that is not the Envoy object its `applyTo` names."""


def canonical(name: str) -> str:
    """Envoy's name for a filter Istio may still call by its deprecated name."""
    return LEGACY_NAMES.get(name, name)


def _ensure_types(value: Any) -> None:
    """Import the generated modules of every `@type` in `value`, so that json_format finds them
    (the xds-protos modules are only loaded when imported)."""
    if isinstance(value, dict):
        url = value.get("@type")
        if isinstance(url, str):
            ensure_type(url.rpartition("/")[2])
        for v in value.values():
            _ensure_types(v)
    elif isinstance(value, list):
        for v in value:
            _ensure_types(v)


@functools.cache
def _modules_by_package() -> dict[str, tuple[str, ...]]:
    """Proto package -> the generated modules (`*_pb2`) of xds-protos that define it, from the
    distribution's own file list: the only module names `ensure_type` ever imports."""
    out: dict[str, list[str]] = {}
    for path in importlib.metadata.files("xds-protos") or []:
        parts = path.parts
        if path.name.endswith("_pb2.py") and parts[0] not in ("test", "tests"):
            package = ".".join(parts[:-1])
            out.setdefault(package, []).append(f"{package}.{path.name[:-3]}")
    return {k: tuple(sorted(v)) for k, v in out.items()}


def ensure_type(full_name: str) -> None:
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


def message_class(type_url: str) -> type[Message] | None:
    from google.protobuf import message_factory

    try:
        desc = descriptor_pool.Default().FindMessageTypeByName(type_url.rpartition("/")[2])
    except KeyError:
        return None
    cls: type[Message] = message_factory.GetMessageClass(desc)
    return cls
