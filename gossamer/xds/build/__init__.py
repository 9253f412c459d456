"""IR -> Envoy protos, one module per feature. Pure functions."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar, cast

from google.protobuf.message import Message

from gossamer.ir.types import Cluster, EndpointSet, Listener, ProxyConfig
from gossamer.xds.build.clusters import build_cluster, build_endpoints
from gossamer.xds.build.listeners import build_listener
from gossamer.xds.build.routes import build_route_table
from gossamer.xds.build.security import build_secret
from gossamer.xds.cache import Packed, pack
from gossamer.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET

T = TypeVar("T")
R = TypeVar("R")

# IR values are frozen and hashable, and most of them are identical across the proxy groups of a
# push (every sidecar of a namespace gets the same outbound clusters and endpoints): build each
# distinct one once. The protos are shared, so nothing may modify them after building.
_cluster = lru_cache(maxsize=16384)(build_cluster)
_endpoints = lru_cache(maxsize=16384)(build_endpoints)


def build_resources(config: ProxyConfig) -> dict[str, dict[str, Message]]:
    """type_url -> resource name -> proto, for one proxy group. Clusters and endpoint sets shared by many
    proxies (translate_proxy hands out the same objects) are built once, found by identity."""
    out: dict[str, dict[str, Message]] = {
        LISTENER: {lis.name: build_listener(lis) for lis in config.listeners},
        ROUTE: {t.name: build_route_table(t) for t in config.route_tables},
        CLUSTER: {c.name: _built(c, _cluster) for c in config.clusters},
        ENDPOINT: build_endpoint_resources(config.endpoints),
    }
    if config.secrets:  # (absent and empty are the same to the cache)
        out[SECRET] = {s.name: build_secret(s) for s in config.secrets}
    return out


def build_endpoint_resources(endpoints: tuple[EndpointSet, ...]) -> dict[str, Message]:
    return {e.cluster: _built(e, _endpoints) for e in endpoints}


_built_by_identity: dict[int, tuple[object, Any]] = {}


def _by_identity_of(memo: dict[int, tuple[object, Any]], value: T, make: Callable[[T], R]) -> R:
    """`make(value)`, remembered by the identity of `value` (hashing a frozen IR value walks all of it)."""
    found = memo.get(id(value))
    if found is not None and found[0] is value:
        return cast(R, found[1])
    made = make(value)
    if len(memo) > 50_000:
        memo.clear()
    memo[id(value)] = (value, made)  # holds `value`: its id cannot be reused meanwhile
    return made


def _built(value: T, build: Callable[[T], Message]) -> Message:
    return _by_identity_of(_built_by_identity, value, build)


# Built and packed (serialized once, with its per-resource version), for the cache. Clusters and
# endpoints are remembered across snapshots: an unchanged one costs a lookup, not a build - first by
# identity (a value carried over from the previous snapshot is the same object; hashing a frozen IR value
# walks all of it), then by value.
@lru_cache(maxsize=65536)
def _packed_cluster(cluster: Cluster) -> Packed:
    return pack(CLUSTER, cluster.name, _cluster(cluster))


@lru_cache(maxsize=65536)
def _packed_endpoints(endpoints: EndpointSet) -> Packed:
    return pack(ENDPOINT, endpoints.cluster, _endpoints(endpoints))


_by_identity: dict[int, tuple[object, Any]] = {}


def _remembered(value: T, pack_value: Callable[[T], Packed]) -> Packed:
    return _by_identity_of(_by_identity, value, pack_value)


def packed_cluster(cluster: Cluster) -> Packed:
    return _remembered(cluster, _packed_cluster)


def packed_endpoints(endpoints: EndpointSet) -> Packed:
    return _remembered(endpoints, _packed_endpoints)


def packed_listener(listener: Listener) -> Packed:
    return pack(LISTENER, listener.name, build_listener(listener))
