"""VHDS: a route configuration delivered in pieces, so that a change to one virtual host sends one.

Translation, the golden files and the debugging tools keep a route configuration whole. Only on the wire
(ConfigCache, for the groups it is told to) it becomes:

* over RDS, the RouteConfiguration without its virtual hosts, except the fallback ones (domain `*`: a
  sidecar's `allow_any` / `block_all`), plus `vhds`: a delta gRPC subscription on the bootstrap's
  `xds-grpc` cluster (Envoy refuses VHDS over ADS), whose gRPC metadata names the route configuration;
* over VHDS, every other virtual host as a resource of its own, named `<route configuration>/<virtual
  host>` - and so is the VirtualHost itself: Envoy takes only resources with its route configuration's
  prefix and removes a virtual host by its name.

Everything here works on serialized bytes (a route configuration of a thousand virtual hosts is split by
walking its top-level fields, not by parsing it), so a change re-packs only what changed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from functools import lru_cache

from envoy.config.core.v3 import config_source_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2

from gossamer.mesh import XDS_CLUSTER, XDS_RETRY_BASE_SECONDS, XDS_RETRY_MAX_SECONDS
from gossamer.xds.cache import Packed, SharedResources, resource_hash
from gossamer.xds.types import ROUTE, VIRTUAL_HOST

# The gRPC metadata of a VHDS stream that names its route configuration.
ROUTE_CONFIG_METADATA = "x-gossamer-route-config"
FALLBACK_DOMAIN = "*"

_LEN = 2  # protobuf wire type of strings, bytes and messages
_NAME = 1  # RouteConfiguration.name, VirtualHost.name
_VIRTUAL_HOSTS = 2  # RouteConfiguration.virtual_hosts
_DOMAINS = 2  # VirtualHost.domains


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _fields(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """(field number, start of the field, start of its value, end of the field) of each top-level field;
    the value of a length-delimited field is data[value start:end]."""
    pos, end = 0, len(data)
    while pos < end:
        start = pos
        tag, pos = _varint(data, pos)
        wire = tag & 7
        if wire == 0:
            _, pos = _varint(data, pos)
            value = pos
        elif wire == 1:
            value = pos
            pos += 8
        elif wire == _LEN:
            size, value = _varint(data, pos)
            pos = value + size
        elif wire == 5:
            value = pos
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire}")
        if pos > end:
            raise WireError("truncated field")
        yield tag >> 3, start, value, pos


def _string_field(number: int, value: bytes) -> bytes:
    return _encode_varint(number << 3 | _LEN) + _encode_varint(len(value)) + value


def _virtual_host_head(data: bytes) -> tuple[str, bool, int]:
    """(name, whether a domain is `*`, end of the name field when it is the first field, else 0)."""
    name, fallback, name_end = "", False, 0
    for number, start, value, end in _fields(data):
        if number == _NAME:
            name = data[value:end].decode()
            name_end = end if start == 0 else 0
        elif number == _DOMAINS and data[value:end] == b"*":
            fallback = True
        elif number > _DOMAINS:
            break  # deterministic serialization: fields in number order (routes are many)
    return name, fallback, name_end


def _renamed(data: bytes, name: str, name_end: int) -> bytes:
    """The VirtualHost DATA named NAME (its name field first, as deterministic serialization puts it)."""
    rest = data[name_end:] if name_end else b"".join(data[s:e] for n, s, _, e in _fields(data) if n != _NAME)
    return _string_field(_NAME, name.encode()) + rest


@lru_cache(maxsize=4096)
def vhds_source(route_config: str) -> route_pb2.Vhds:
    """`vhds` of ROUTE_CONFIG: a delta gRPC subscription on the control plane's cluster, its stream named."""
    vhds = route_pb2.Vhds()
    source = vhds.config_source
    source.resource_api_version = config_source_pb2.V3
    api = source.api_config_source
    api.api_type = config_source_pb2.ApiConfigSource.DELTA_GRPC
    api.transport_api_version = config_source_pb2.V3
    api.set_node_on_first_message_only = True  # ACKs without the node: thousands of them per change
    grpc = api.grpc_services.add()
    grpc.envoy_grpc.cluster_name = XDS_CLUSTER
    # ADS's back-off: with Envoy's default one a stream closed by a control plane restart stayed closed for up
    # to ~20 s after ADS was back in sync (the proxy got no route change meanwhile; `apply --wait` timed out).
    back_off = grpc.envoy_grpc.retry_policy.retry_back_off
    back_off.base_interval.FromMilliseconds(round(XDS_RETRY_BASE_SECONDS * 1000))
    back_off.max_interval.FromMilliseconds(round(XDS_RETRY_MAX_SECONDS * 1000))
    grpc.initial_metadata.add(key=ROUTE_CONFIG_METADATA, value=route_config)
    return vhds


def vhost_resource_name(route_config: str, virtual_host: str) -> str:
    return f"{route_config}/{virtual_host}"


# Route configurations as the pusher serialized them, by (name, per-resource version): their top-level parts
# (the table's own fields, then one `virtual_hosts` entry per virtual host: the same bytes object while its virtual
# host stays). The splitter looks a table up here before walking its bytes: a VirtualService change then splits
# its tables (a thousand virtual hosts each at 1000 services) with one dict lookup per virtual host, ~45 ms less
# on the change's way to the proxies.
_PARTS: dict[tuple[str, str], tuple[bytes, ...]] = {}
MAX_PARTS = 256


def remember_parts(name: str, version: str, parts: tuple[bytes, ...]) -> None:
    """The route configuration NAME at VERSION is the concatenation of PARTS (see above)."""
    _PARTS[(name, version)] = parts
    while len(_PARTS) > MAX_PARTS:
        _PARTS.pop(next(iter(_PARTS)), None)


class RouteSplitter:
    """Splits route configurations for VHDS, remembering the pieces: a route configuration met again (the
    same bytes, e.g. given to another group of the scope) is not split again, and a virtual host met again
    keeps its packed resource."""

    # Bounds: route configurations (a scope's tables, each version) and virtual hosts remembered. Live ones at
    # 1000 services: a few tens of tables, ten thousand virtual hosts.
    MAX_CONFIGS = 128
    MAX_VHOSTS = 50_000

    def __init__(self) -> None:
        self._configs: OrderedDict[tuple[str, str], tuple[Packed, SharedResources]] = OrderedDict()
        # (table, one of its parts) -> (resource name, packed virtual host), or ("", the part) for what RDS keeps
        self._parts: dict[tuple[str, bytes], tuple[str, Packed | bytes]] = {}

    def split(self, name: str, packed: Packed) -> tuple[Packed, SharedResources]:
        """(the route configuration as RDS sends it, its other virtual hosts by resource name)."""
        key = (name, packed[1])
        found = self._configs.get(key)
        if found is None:
            parts = _PARTS.pop(key, None)  # (taken: the split is remembered below)
            found = self._split(name, packed[0].value) if parts is None else self._split_parts(name, parts)
            self._configs[key] = found
            if len(self._configs) > self.MAX_CONFIGS:
                self._configs.popitem(last=False)
        else:
            self._configs.move_to_end(key)
        return found

    def _split(self, name: str, data: bytes) -> tuple[Packed, SharedResources]:
        """Split the serialized table DATA: its top-level fields are its parts (as remember_parts gives them)."""
        return self._split_parts(name, tuple(data[start:end] for _, start, _, end in _fields(data)))

    def _split_parts(self, name: str, parts: tuple[bytes, ...]) -> tuple[Packed, SharedResources]:
        """The table PARTS make up (its top-level fields): a part met before is looked up, not walked."""
        kept: list[bytes] = []
        vhosts = SharedResources()
        memo = self._parts
        if len(memo) > self.MAX_VHOSTS:
            memo.clear()
        for part in parts:
            found = memo.get((name, part))
            if found is None:
                found = memo[(name, part)] = self._piece(name, part)
            if found[0]:
                vhosts[found[0]] = found[1]  # type: ignore[assignment]
            else:
                kept.append(part)
        return _for_rds(name, kept), vhosts

    @staticmethod
    def _piece(name: str, part: bytes) -> tuple[str, Packed | bytes]:
        """What a part of NAME is on the wire: a virtual host of its own (resource name, packed), or ("", PART)
        for what RDS keeps (the table's own fields, a fallback virtual host)."""
        fields = list(_fields(part))
        if len(fields) != 1 or fields[0][0] != _VIRTUAL_HOSTS:
            return "", part
        _, _, value, end = fields[0]
        vhost = part[value:end]
        vhost_name, fallback, name_end = _virtual_host_head(vhost)
        if fallback:
            return "", part
        resource_name = vhost_resource_name(name, vhost_name)
        renamed = _renamed(vhost, resource_name, name_end)
        return resource_name, (any_pb2.Any(type_url=VIRTUAL_HOST, value=renamed), resource_hash(renamed))


def _for_rds(name: str, kept: list[bytes]) -> Packed:
    """The route configuration NAME as RDS sends it: the KEPT fields, and its VHDS subscription."""
    config = route_pb2.RouteConfiguration.FromString(b"".join(kept))
    config.vhds.CopyFrom(vhds_source(name))
    wire = config.SerializeToString(deterministic=True)
    return any_pb2.Any(type_url=ROUTE, value=wire), resource_hash(wire)


class SidecarRouteSplit:
    """The cache's RouteSplit (see ConfigCache): sidecars get their route configurations over VHDS (their
    outbound route tables hold a virtual host per service they see: thousands); gateways get them whole.
    A mapping given to many groups (a scope's) is split once for all of them."""

    MAX_MAPPINGS = 64  # (each holds a scope's route tables: at 1000 services 0.7 MB)

    def __init__(self) -> None:
        self._splitter = RouteSplitter()
        self._last: OrderedDict[int, tuple[Mapping[str, Packed], SharedResources, dict[str, SharedResources]]] = (
            OrderedDict()
        )

    def __call__(
        self, group: str, routes: Mapping[str, Packed]
    ) -> tuple[SharedResources, dict[str, SharedResources]] | None:
        if not group.startswith("sidecar/"):
            return None
        found = self._last.get(id(routes))
        if found is not None and found[0] is routes:
            return found[1], found[2]
        wire = SharedResources()
        vhosts: dict[str, SharedResources] = {}
        for name, packed in routes.items():
            wire[name], vhosts[name] = self._splitter.split(name, packed)
        if isinstance(routes, SharedResources):
            self._last[id(routes)] = (routes, wire, vhosts)  # holds `routes`: its id cannot be reused meanwhile
            if len(self._last) > self.MAX_MAPPINGS:
                self._last.popitem(last=False)
        return wire, vhosts
