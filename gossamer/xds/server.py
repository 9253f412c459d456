"""ADS server: owns streams, nonces and ACK/NACK bookkeeping.

Split of responsibilities (as in go-control-plane): the `ConfigCache` owns
*versions* and content; this server owns *per-stream* protocol state - what was
sent, under which nonce, and what the proxy ACKed or NACKed. Each stream is
handled by one coroutine that processes requests and cache-change wake-ups from
a single queue, so per-stream state never needs locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import secrets
import stat
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import json_format

from gossamer.mesh import DEFAULT_TRUST_DOMAINS, PROXY_GROUP, TrustDomains
from gossamer.security.authz import IdentityRejected, check_node, peer_identity
from gossamer.telemetry.controlplane import PILOT
from gossamer.xds.cache import ConfigCache, TypeSnapshot
from gossamer.xds.proxy_status import ProxyStatus, ProxyTypeStatus
from gossamer.xds.streams import CHANGED, Changed, End, Turns, read_requests
from gossamer.xds.types import (
    CLUSTER,
    ENDPOINT,
    VIRTUAL_HOST,
    WILDCARD_TYPES,
    push_rank,
    short_name,
    vhds_key,
    vhds_route_config,
    wire_type,
)
from gossamer.xds.vhds import ROUTE_CONFIG_METADATA

log = logging.getLogger(__name__)

CONTROL_PLANE_ID = "gossamer"

# Nonces only need to be unique per stream, but a per-process random prefix keeps
# them unique across control-plane restarts too, which makes logs unambiguous.
_NONCE_PREFIX = secrets.token_hex(4)
_nonce_counter = itertools.count(1)
_stream_ids = itertools.count(1)


async def _check_identity(context: Any, node: base_pb2.Node, trust: TrustDomains) -> None:
    """Refuse (PERMISSION_DENIED, nothing sent) a node whose claimed namespace/service account is not
    the identity its client certificate proves (in the mesh's trust domain or an alias)."""
    try:
        identity = peer_identity(context, trust)
        check_node(identity, json_format.MessageToDict(node.metadata) if node.HasField("metadata") else {}, trust)
    except IdentityRejected as e:
        log.warning("xds: refused node %s: %s", node.id, e)
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(e))


def _next_nonce() -> str:
    return f"{_NONCE_PREFIX}-{next(_nonce_counter)}"


def _short(type_url: str) -> str:
    return short_name(type_url)


ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
VHDS_SERVICE = "envoy.service.route.v3.VirtualHostDiscoveryService"
# How long a VHDS stream waits for its proxy's ADS stream (a control plane restarted: Envoy reconnects both).
VHDS_OWNER_WAIT_SECONDS = 30.0

# Proxies getting their initial config at once (Istio's PILOT_PUSH_THROTTLE): a connection storm is served
# in waves, so the serialized config waiting in send buffers stays bounded; the others wait their turn. A
# proxy not in sync after INITIAL_SYNC_SLOT_SECONDS gives its slot up anyway.
INITIAL_SYNC_CONCURRENCY = 16
INITIAL_SYNC_SLOT_SECONDS = 10.0
# Streams gRPC core may hold before the server has taken them (see serve()): more proxies than this
# connecting within the same moment are reset.
MAX_PENDING_STREAMS = 100_000


def _serialize(message: Any) -> bytes:
    return message if isinstance(message, bytes) else bytes(message.SerializeToString())


class DeltaResponses:
    """Delta responses, serialized once and shared by every stream that gets the same update.

    A response is the concatenation of a small header (version, type, nonce, removals) and one
    pre-serialized `resources` entry per resource: concatenated protobuf messages merge, repeated
    fields append. Entries are kept per (type, name, per-resource version); whole responses per
    (type, version, names, removals) - the groups of one scope share versions (see ConfigCache), so
    after a change all their streams get the very same bytes. Nonces need only be unique per stream:
    a shared response is not reused for a stream that already holds its nonce.
    """

    MAX_BYTES = 24 * 1024 * 1024

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str], bytes] = {}
        self._entry_bytes = 0
        self._whole: OrderedDict[tuple[Any, ...], tuple[str, bytes]] = OrderedDict()
        self._whole_bytes = 0

    def delta(
        self, type_url: str, snap: TypeSnapshot, updates: list[str], removed: list[str], *, avoid: _TypeState
    ) -> tuple[str, bytes]:
        key = (type_url, snap.version, tuple(updates), tuple(removed))
        found = self._whole.get(key)
        if found is not None and found[0] not in avoid.pending and found[0] != avoid.status.nonce:
            self._whole.move_to_end(key)
            return found
        nonce = _next_nonce()
        header = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=snap.version,
            type_url=type_url,
            nonce=nonce,
            removed_resources=removed,
            control_plane=base_pb2.ControlPlane(identifier=CONTROL_PLANE_ID),
        ).SerializeToString()
        get, packed = self._entries.get, snap.packed
        parts = [header]
        for name in updates:
            parts.append(get((type_url, name, packed[name][1])) or self._entry(type_url, name, snap))
        data = b"".join(parts)
        self._whole[key] = (nonce, data)
        self._whole_bytes += len(data)
        while self._whole_bytes > self.MAX_BYTES and len(self._whole) > 1:
            _, (_, dropped) = self._whole.popitem(last=False)
            self._whole_bytes -= len(dropped)
        return nonce, data

    def _entry(self, type_url: str, name: str, snap: TypeSnapshot) -> bytes:
        resource, version = snap.packed[name]
        key = (type_url, name, version)
        entry = self._entries.get(key)
        if entry is None:
            if self._entry_bytes > self.MAX_BYTES:
                self._entries.clear()
                self._entry_bytes = 0
            entry = discovery_pb2.DeltaDiscoveryResponse(
                resources=[discovery_pb2.Resource(name=name, version=version, resource=resource)]
            ).SerializeToString()
            self._entries[key] = entry
            self._entry_bytes += len(entry)
        return entry


# ---- per-stream internal state ---------------------------------------------

_UNSET: Any = object()
_NO_VERSIONS: Mapping[str, str] = MappingProxyType({})


class KnownVersions(MutableMapping[str, str]):
    """name -> version a delta client holds: the cache's versions of the snapshot it was last brought to in
    full (a mapping shared by every stream at that snapshot) plus this stream's differences - so thousands
    of streams in sync hold no copies of it. A difference of None: the client does not have that name."""

    __slots__ = ("_base", "_over")

    def __init__(self, base: Mapping[str, str] = _NO_VERSIONS, over: dict[str, str | None] | None = None) -> None:
        self._base = base
        self._over: dict[str, str | None] = over if over is not None else {}

    def rebase(self, base: Mapping[str, str]) -> None:
        self._base, self._over = base, {}

    def get(self, name: str, default: Any = None) -> Any:
        value = self._over.get(name, _UNSET)
        if value is _UNSET:
            return self._base.get(name, default)
        return default if value is None else value

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return str(value)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __setitem__(self, name: str, version: str) -> None:
        if self._base.get(name) == version:
            self._over.pop(name, None)
        else:
            self._over[name] = version

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        if name in self._base:
            self._over[name] = None
        else:
            del self._over[name]

    def __iter__(self) -> Iterator[str]:
        over = self._over
        yield from (n for n in self._base if over.get(n, _UNSET) is not None)
        yield from (n for n, v in over.items() if v is not None and n not in self._base)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        return next(iter(self), None) is not None


@dataclass
class _TypeState:
    status: ProxyTypeStatus
    wildcard: bool = False
    names: AbstractSet[str] = field(default_factory=frozenset)  # explicit subscription
    sent_names: frozenset[str] | None = None  # SotW: subscription the last response answered
    # name -> version the client has (last sent in SotW; a KnownVersions on delta streams)
    known: MutableMapping[str, str] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)  # delta: outstanding nonce -> version
    # Delta: the cache version `known` matches for every wanted name ("" after a subscription change):
    # the next version then only needs its changed names compared, not every resource.
    base: str = ""
    modified: frozenset[str] = frozenset()  # names the last delta response replaced on the client


@dataclass
class _Stream:
    id: int
    delta: bool
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    # An ADS stream's own status; a VHDS stream's is its proxy's ADS stream's (shared: one proxy, one status).
    status: ProxyStatus | None = None
    types: dict[str, _TypeState] = field(default_factory=dict)  # by cache key (see ConfigCache)
    pending_types: set[str] = field(default_factory=set)
    vhds: str = ""  # a VHDS stream: the cache key of its route configuration's virtual hosts
    slot: list[asyncio.TimerHandle] = field(default_factory=list)  # an ADS stream's initial sync slot, held
    node_id: str = ""  # once its first request named it
    unwatch: Callable[[], None] | None = None  # ends its watch of the cache, once it has one
    turns: Turns | None = None  # its server's: a change wakes it in its turn
    idle: bool = False  # its loop waits for the next item (an ACK may be handled by its reader)

    def key(self, type_url: str) -> str:
        """The cache key of what this stream serves of TYPE_URL."""
        return self.vhds if self.vhds and type_url == VIRTUAL_HOST else type_url

    def on_cache_change(self, _group: str, changed: frozenset[str]) -> None:
        # A VHDS stream serves one route configuration's virtual hosts; an ADS stream none.
        if self.vhds:
            changed = changed & {self.vhds}
        else:
            changed = _ads_keys(changed)
        # Coalesce: several cache changes before the stream gets to run collapse
        # into one wake-up, and only the newest version of each type is pushed.
        if not changed:
            return
        wake = not self.pending_types
        self.pending_types |= changed
        if wake:
            if self.turns is not None:
                self.turns.later(self._changed)
            else:
                self._changed()

    def _changed(self) -> None:
        self.queue.put_nowait(CHANGED)


@functools.lru_cache(maxsize=64)
def _ads_keys(changed: frozenset[str]) -> frozenset[str]:
    """The keys of CHANGED an ADS stream serves (not VHDS's): worked out once per change, not per stream (the
    same set is handed to every stream of a group)."""
    return frozenset(k for k in changed if vhds_route_config(k) is None)


@dataclass
class _SyncWatch:
    """What a wait_synced() caller has yet to look at: streams that reported something, groups whose
    config changed."""

    streams: set[int] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)


def _is_delta_ack(stream: _Stream, item: Any) -> bool:
    """ITEM is an ACK (or NACK) on an open delta stream: it answers a response and changes no subscription."""
    return (
        stream.delta
        and stream.status is not None
        and not isinstance(item, Changed)
        and bool(item.response_nonce)
        and not item.resource_names_subscribe
        and not item.resource_names_unsubscribe
    )


@dataclass(frozen=True)
class _StreamKind:
    """What a kind of stream (ADS, VHDS) does in the loop every stream runs (AdsServer._serve)."""

    name: str  # in logs
    open: Callable[[_Stream, Any, Any], Awaitable[None]]  # (stream, first request, gRPC context): set its status
    on_request: Callable[[_Stream, Any], list[Any]]  # the responses to a request
    after_turn: Callable[[_Stream], None]
    close: Callable[[_Stream], None]  # the stream ended


GroupForNode = Callable[[base_pb2.Node], Awaitable[str]]
StatusCallback = Callable[[ProxyStatus], None]


class AdsServer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        cache: ConfigCache,
        group_for_node: GroupForNode,
        on_status_change: StatusCallback | None = None,
        on_disconnect: StatusCallback | None = None,
        *,
        authenticate: bool = True,
        trust: Callable[[], TrustDomains] = lambda: DEFAULT_TRUST_DOMAINS,
    ) -> None:
        """`authenticate`: serve a stream only to a client whose verified certificate (mTLS, see
        `serve(credentials=...)`) names the namespace and service account its node claims
        (security/authz.py), in the trust domain `trust()` gives (the mesh config's, now). Off only
        for tests of the protocol itself."""
        self._cache = cache
        self._authenticate = authenticate
        self._trust = trust
        self._group_for_node = group_for_node
        self._on_status_change = on_status_change
        self._on_disconnect = on_disconnect
        self._streams: dict[int, _Stream] = {}  # ADS streams
        self._ads_of_node: dict[str, _Stream] = {}  # node id -> its newest ADS stream
        self._vhds_of_node: dict[str, dict[int, _Stream]] = {}  # node id -> its VHDS streams by id
        self._responses = DeltaResponses()
        self._initial_syncs = asyncio.Semaphore(INITIAL_SYNC_CONCURRENCY)
        self._turns = Turns()
        self._name_sets: weakref.WeakValueDictionary[frozenset[str], frozenset[str]] = weakref.WeakValueDictionary()
        # (id(resources), id(names)) -> (resources, names, whether NAMES holds every name of RESOURCES): see _covers.
        self._coverage: dict[tuple[int, int], tuple[Mapping[str, Any], AbstractSet[str], bool]] = {}
        # Replaced after every status change; wait_synced() waits on the current one.
        self._changed = asyncio.Event()
        # One per wait_synced() caller: what changed since it last looked.
        self._sync_watches: list[_SyncWatch] = []
        cache.watch_all(self._mark_dirty)
        self._ads = _StreamKind(
            "xds", self._open_ads, self._on_ads_request, self._release_slot_if_synced, self._close_ads
        )
        self._vhds = _StreamKind(
            "vhds", self._open_vhds, self._on_delta_request, self._after_vhds_turn, self._close_vhds
        )

    # ---- public API ---------------------------------------------------------

    def add_to_server(self, server: grpc.aio.Server) -> None:
        # As the generated add_AggregatedDiscoveryServiceServicer_to_server, except that a response
        # may be given already serialized (delta responses shared by many streams are).
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    ADS_SERVICE,
                    {
                        "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                            self.StreamAggregatedResources,
                            request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                            response_serializer=_serialize,
                        ),
                        "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                            self.DeltaAggregatedResources,
                            request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                            response_serializer=_serialize,
                        ),
                    },
                ),
                grpc.method_handlers_generic_handler(
                    VHDS_SERVICE,
                    {
                        "DeltaVirtualHosts": grpc.stream_stream_rpc_method_handler(
                            self.DeltaVirtualHosts,
                            request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                            response_serializer=_serialize,
                        ),
                    },
                ),
            )
        )

    def proxies(self) -> list[ProxyStatus]:
        # (A copy first: the control plane reads this from its API's thread while this server's thread adds
        # and removes streams.)
        return [s.status for s in tuple(self._streams.values()) if s.status is not None]

    def _mark_dirty(self, group: str, _changed: frozenset[str] = frozenset()) -> None:
        for watch in self._sync_watches:
            watch.groups.add(group)

    def _touch(self, stream: _Stream) -> None:
        stream_id = stream.status.stream_id if stream.status is not None else stream.id  # (a VHDS stream's proxy)
        for watch in self._sync_watches:
            watch.streams.add(stream_id)

    async def wait_synced(self, node_ids: Iterable[str] | None, timeout: float) -> bool:
        """True once every given (or every connected) proxy ACKed the current config."""
        wanted = None if node_ids is None else set(node_ids)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if wanted is None:
            return await self._wait_all_synced(deadline)
        while True:
            event = self._changed  # grab before checking so no wake-up is missed
            if self._all_synced(wanted):
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return self._all_synced(wanted)

    async def _wait_all_synced(self, deadline: float) -> bool:
        """wait_synced for every proxy: after one full look, only the proxies whose stream reported something
        (an ACK, a subscription, its end) or whose group's config changed are looked at again - an ACK must
        not cost a pass over every proxy."""
        loop = asyncio.get_running_loop()
        watch = _SyncWatch()
        self._sync_watches.append(watch)
        try:
            pending = {s.stream_id: s for s in self.proxies() if not s.is_synced()}
            while True:
                event = self._changed  # grab before checking so no wake-up is missed
                touched, watch.streams = watch.streams, set()
                if watch.groups:
                    groups, watch.groups = watch.groups, set()
                    touched.update(s.stream_id for s in self.proxies() if s.group in groups)
                for stream_id in touched:
                    stream = self._streams.get(stream_id)
                    if stream is None or stream.status is None or stream.status.is_synced():
                        pending.pop(stream_id, None)
                    else:
                        pending[stream_id] = stream.status
                if not pending:
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
                await asyncio.sleep(0.005)  # one look per burst of ACKs
        finally:
            self._sync_watches.remove(watch)

    def _all_synced(self, wanted: set[str] | None) -> bool:
        statuses = self.proxies()
        if wanted is not None:
            # Newest stream per node: an old stream of a reconnecting proxy may linger.
            latest: dict[str, ProxyStatus] = {}
            for st in statuses:
                if st.node_id in wanted and (st.node_id not in latest or st.stream_id > latest[st.node_id].stream_id):
                    latest[st.node_id] = st
            if set(latest) != wanted:
                return False
            statuses = list(latest.values())
        return all(st.is_synced() for st in statuses)

    # ---- gRPC handlers ------------------------------------------------------

    async def StreamAggregatedResources(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest], context: Any
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        stream = _Stream(id=next(_stream_ids), delta=False, turns=self._turns)
        async for resp in self._serve(stream, request_iterator, context, self._ads):
            yield resp

    async def DeltaAggregatedResources(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest], context: Any
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        stream = _Stream(id=next(_stream_ids), delta=True, turns=self._turns)
        async for resp in self._serve(stream, request_iterator, context, self._ads):
            yield resp

    async def DeltaVirtualHosts(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest], context: Any
    ) -> AsyncIterator[bytes]:
        """One route configuration's virtual hosts (delta, wildcard) for a proxy that has an ADS stream: its
        group's, reported in that stream's status (as `vhds ROUTE_CONFIG`)."""
        route_config = dict(context.invocation_metadata() or ()).get(ROUTE_CONFIG_METADATA, "")
        stream = _Stream(id=next(_stream_ids), delta=True, vhds=vhds_key(route_config), turns=self._turns)
        async for resp in self._serve(stream, request_iterator, context, self._vhds):
            yield resp

    # ---- stream loop --------------------------------------------------------

    async def _serve(
        self, stream: _Stream, request_iterator: AsyncIterator[Any], context: Any, kind: _StreamKind
    ) -> AsyncIterator[Any]:
        """The loop of every stream: its requests and its cache's changes, one at a time, each in its turn.
        KIND: what an ADS or a VHDS stream does with its first request, with any request, after each turn and
        at its end."""

        def ack_inline(req: Any) -> bool:
            """An ACK while the loop waits for its next item: handled in the reader (no task step of the loop)."""
            if not (stream.idle and stream.queue.empty() and _is_delta_ack(stream, req)):
                return False
            if stream.types.get(stream.key(req.type_url)) is None:
                return False  # (not an ACK of anything sent: the loop answers it)
            kind.on_request(stream, req)  # (an ACK: no response)
            kind.after_turn(stream)
            return True

        reader = asyncio.create_task(read_requests(request_iterator, stream.queue, ack_inline))
        try:
            while True:
                stream.idle = True
                item = await stream.queue.get()
                stream.idle = False
                if isinstance(item, End):
                    if item.error is not None and not isinstance(item.error, asyncio.CancelledError):
                        log.info("%s stream %d ended: %r", kind.name, stream.id, item.error)
                    return
                # A change comes in its turn (Turns.later); an ACK is a few dict updates: no turn needed.
                if not isinstance(item, Changed) and not _is_delta_ack(stream, item):
                    await self._turns.take()  # the loop serves new streams and the others between turns
                if isinstance(item, Changed):
                    changed, stream.pending_types = stream.pending_types, set()
                    responses = self._on_change(stream, changed)
                else:
                    if stream.status is None:
                        await kind.open(stream, item, context)
                    responses = kind.on_request(stream, item)
                for resp in responses:
                    yield resp
                if responses:
                    self._status_changed(stream)
                kind.after_turn(stream)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            if stream.unwatch is not None:
                stream.unwatch()
            kind.close(stream)

    # ---- ADS streams --------------------------------------------------------

    async def _open_ads(self, stream: _Stream, first: Any, context: Any) -> None:
        """An ADS stream's first request: its node proved, its turn for the initial sync, its group, its status."""
        if not first.HasField("node") or not first.node.id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first request of a stream must carry a node")
        if self._authenticate:
            await _check_identity(context, first.node, self._trust())
        await self._initial_syncs.acquire()
        stream.slot.append(asyncio.get_running_loop().call_later(INITIAL_SYNC_SLOT_SECONDS, self._release_slot, stream))
        group = await self._group_for_node(first.node)
        stream.node_id = first.node.id
        stream.status = ProxyStatus(
            node_id=first.node.id,
            group=group,
            metadata=json_format.MessageToDict(first.node.metadata),
            connected_at=time.time(),
            stream_id=stream.id,
            delta=stream.delta,
            _cache=self._cache,
        )
        # Watch before answering: a change landing between now and the first response is then either in it or
        # pushed right after.
        stream.unwatch = self._cache.watch(group, stream.on_cache_change)
        self._streams[stream.id] = stream
        self._adopt_vhds_streams(stream)
        log.info(
            "xds %s stream %d: node %s group %s", "delta" if stream.delta else "sotw", stream.id, first.node.id, group
        )
        self._status_changed(stream)

    def _on_ads_request(self, stream: _Stream, req: Any) -> list[Any]:
        return self._on_delta_request(stream, req) if stream.delta else self._on_sotw_request(stream, req)

    def _close_ads(self, ads: _Stream) -> None:
        self._release_slot(ads)
        self._forget(ads)
        self._touch(ads)
        if ads.status is not None:
            log.info("xds stream %d: node %s disconnected", ads.id, ads.status.node_id)
            if self._on_disconnect is not None:
                try:
                    self._on_disconnect(ads.status)
                except Exception:
                    log.exception("on_disconnect callback failed")
            self._signal()

    def _release_slot(self, ads: _Stream) -> None:
        if ads.slot:
            ads.slot.pop().cancel()
            self._initial_syncs.release()

    def _release_slot_if_synced(self, ads: _Stream) -> None:
        """The proxy has its initial config (its VHDS streams' included): the next proxy may have its turn."""
        if ads.slot and ads.status is not None and ads.status.is_synced():
            self._release_slot(ads)

    def _forget(self, ads: _Stream) -> None:
        self._streams.pop(ads.id, None)
        if ads.status is not None and self._ads_of_node.get(ads.status.node_id) is ads:
            del self._ads_of_node[ads.status.node_id]

    def _adopt_vhds_streams(self, ads: _Stream) -> None:
        """The proxy's newest ADS stream carries its status: VHDS streams still open from its previous ADS
        stream (the proxy reconnected ADS only, or VHDS first) report into it."""
        assert ads.status is not None
        self._ads_of_node[ads.status.node_id] = ads
        for vhds in self._vhds_of_node.get(ads.status.node_id, {}).values():
            if vhds.status is not None and vhds.status.group != ads.status.group:
                vhds.queue.put_nowait(End())  # another group's config: Envoy opens the stream again
                continue
            vhds.status = ads.status
            for key, st in vhds.types.items():
                ads.status.types[key] = st.status

    # ---- VHDS streams -------------------------------------------------------

    async def _ads_stream_of(self, node_id: str) -> _Stream | None:
        """NODE_ID's ADS stream, once it has one (a VHDS stream may come first after a restart)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + VHDS_OWNER_WAIT_SECONDS
        while True:
            event = self._changed  # grab before checking so no wake-up is missed
            ads = self._ads_of_node.get(node_id)
            if ads is not None:
                return ads
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    async def _vhds_owner(self, context: Any, node: base_pb2.Node) -> ProxyStatus:
        """The status of the ADS stream of a VHDS stream's NODE, once the stream proved to be that node's."""
        if not node.id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first request of a stream must carry a node")
        if self._authenticate:
            await _check_identity(context, node, self._trust())
        ads = await self._ads_stream_of(node.id)
        if ads is None or ads.status is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"node {node.id} has no ADS stream")
        assert ads is not None and ads.status is not None
        # Its certificate proved the identity the node claims here; the ADS stream's proved its own.
        claimed = json_format.MessageToDict(node.metadata) if node.HasField("metadata") else {}
        if any(claimed.get(k) != ads.status.metadata.get(k) for k in ("NAMESPACE", "SERVICE_ACCOUNT")):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"node {node.id}: not its ADS stream's identity")
        return ads.status

    async def _open_vhds(self, stream: _Stream, first: Any, context: Any) -> None:
        """A VHDS stream's first request: its route configuration named, its node's ADS stream found."""
        route_config = vhds_route_config(stream.vhds)
        if not route_config:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a VHDS stream names its route configuration in its {ROUTE_CONFIG_METADATA} metadata",
            )
        stream.status = await self._vhds_owner(context, first.node)
        stream.node_id = first.node.id
        stream.unwatch = self._cache.watch(stream.status.group, stream.on_cache_change)
        self._vhds_of_node.setdefault(stream.node_id, {})[stream.id] = stream
        log.info("vhds stream %d: node %s route configuration %s", stream.id, stream.node_id, route_config)

    def _after_vhds_turn(self, stream: _Stream) -> None:
        ads = self._ads_of_node.get(stream.node_id)
        if ads is not None:
            self._release_slot_if_synced(ads)  # (this ACK may be the last its initial sync waited for)

    def _close_vhds(self, stream: _Stream) -> None:
        streams = self._vhds_of_node.get(stream.node_id)
        if streams is not None:
            streams.pop(stream.id, None)
            if not streams:
                del self._vhds_of_node[stream.node_id]
        if stream.status is not None:
            for key, st in stream.types.items():
                if stream.status.types.get(key) is st.status:
                    del stream.status.types[key]
            self._touch(stream)
            self._signal()

    def _status_changed(self, stream: _Stream) -> None:
        self._touch(stream)
        if stream.status is not None and self._on_status_change is not None:
            try:
                self._on_status_change(stream.status)
            except Exception:
                log.exception("on_status_change callback failed")
        self._signal()

    def _signal(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _on_change(self, stream: _Stream, changed: set[str]) -> list[Any]:
        assert stream.status is not None
        out: list[Any] = []
        # EDS names of clusters this push modified. Envoy re-creates a modified cluster and keeps
        # it warming until a ClusterLoadAssignment arrives for it, but its EDS subscription does
        # not change (same name), so it never asks again: as Istio does, send those endpoints
        # again even when they did not change. Otherwise the cluster stays warming (and CDS
        # un-ACKed) until Envoy's initial fetch timeout (15 s).
        refresh: frozenset[str] = frozenset()
        for type_url in sorted(changed | {ENDPOINT}, key=push_rank):  # CDS, EDS, LDS, RDS, SDS
            st = stream.types.get(type_url)
            if st is None:
                continue  # the proxy never asked for this type
            refreshed = refresh if st.wildcard else refresh & st.names
            if type_url == ENDPOINT and refreshed:
                resp = self._refresh_endpoints(stream, st, refreshed)
                if resp is not None:
                    out.append(resp)
                continue
            if type_url not in changed:
                continue
            version = self._cache.version(stream.status.group, type_url)
            # Same version as last sent (e.g. a NACKed one): never resend it.
            if not version or version == st.status.sent_version:
                continue
            if stream.delta:
                resp = self._delta_response(stream, st, force=False)
                modified = st.modified
            else:
                before = dict(st.known)
                resp = self._sotw_response(stream, st)
                modified = frozenset(n for n, h in st.known.items() if n in before and before[n] != h)
            if resp is not None:
                out.append(resp)
                if type_url == CLUSTER:
                    refresh = modified
        if not out:
            self._signal()  # cache moved on: wait_synced callers must re-evaluate
        return out

    def _refresh_endpoints(self, stream: _Stream, st: _TypeState, names: frozenset[str]) -> Any | None:
        """EDS again for `names` (subscribed, of modified clusters), with any other change."""
        if not stream.delta:
            return self._sotw_response(stream, st)
        for name in names:
            st.known.pop(name, None)  # the client's copy belongs to the replaced cluster
        return self._delta_response(stream, st, force=True, also=names)

    # ---- State of the World -------------------------------------------------

    def _on_sotw_request(
        self, stream: _Stream, req: discovery_pb2.DiscoveryRequest
    ) -> list[discovery_pb2.DiscoveryResponse]:
        assert stream.status is not None
        type_url = req.type_url
        names = frozenset(req.resource_names)
        st = stream.types.get(type_url)
        respond = False
        if st is None or not req.response_nonce:
            # First request for this type on this stream (a nonce from an earlier
            # stream means nothing here): always answer it.
            if st is None:
                st = _TypeState(status=ProxyTypeStatus(type_url=type_url))
                stream.types[type_url] = st
                stream.status.types[type_url] = st.status
            respond = True
        elif req.response_nonce != st.status.nonce:
            # Stale: answers a response that has since been superseded. Envoy will
            # ACK/NACK the newer one, so there is nothing to learn from this one.
            log.debug("xds stream %d %s: stale nonce %s", stream.id, _short(type_url), req.response_nonce)
            return []
        elif req.HasField("error_detail"):
            ts = st.status
            ts.nacked_version = ts.sent_version
            ts.error = req.error_detail.message
            PILOT.rejected(type_url)
            log.warning(
                "xds: node %s NACKed %s version %s: %s",
                stream.status.node_id,
                _short(type_url),
                ts.sent_version,
                ts.error,
            )
            self._status_changed(stream)
        else:
            ts = st.status
            ts.acked_version = req.version_info
            ts.last_ack = time.time()
            ts.nacked_version = None
            ts.error = None
            self._status_changed(stream)

        st.wildcard = type_url in WILDCARD_TYPES and (not names or "*" in names)
        st.names = set(names)
        if not st.wildcard and st.sent_names is not None and names != st.sent_names:
            respond = True  # RDS/EDS subscription changed: answer for the new names
        if not respond or not self._cache.version(stream.status.group, type_url):
            # Nothing in the cache yet: the change watch pushes once there is.
            return []
        return [self._sotw_response(stream, st)]

    def _sotw_response(self, stream: _Stream, st: _TypeState) -> discovery_pb2.DiscoveryResponse:
        assert stream.status is not None
        type_url = st.status.type_url
        version, resources = self._cache.get(stream.status.group, type_url)
        if st.wildcard:
            picked = [resources[n] for n in sorted(resources)]
        else:
            picked = [resources[n] for n in sorted(st.names) if n in resources]
        nonce = _next_nonce()
        resp = discovery_pb2.DiscoveryResponse(
            version_info=version,
            type_url=type_url,
            nonce=nonce,
            control_plane=base_pb2.ControlPlane(identifier=CONTROL_PLANE_ID),
        )
        resp.resources.extend(picked)
        snap = self._cache.snapshot(stream.status.group, type_url)
        if snap is not None:  # per-resource versions sent: tells which clusters a push modifies
            st.known = {n: snap.hashes[n] for n in (sorted(resources) if st.wildcard else st.names) if n in snap.hashes}
        ts = st.status
        ts.sent_version = version
        ts.nonce = nonce
        ts.last_sent = time.time()
        st.sent_names = frozenset(st.names)
        PILOT.sent(type_url)
        log.debug(
            "xds stream %d: push %s v%s (%d resources) nonce %s",
            stream.id,
            _short(type_url),
            version,
            len(picked),
            nonce,
        )
        return resp

    # ---- Delta (incremental) ------------------------------------------------

    def _on_delta_request(self, stream: _Stream, req: discovery_pb2.DeltaDiscoveryRequest) -> list[bytes]:
        assert stream.status is not None
        type_url = stream.key(req.type_url)  # the cache key (a VHDS stream's: its route configuration's)
        st = stream.types.get(type_url)
        fresh = st is None
        if st is None:
            st = _TypeState(status=ProxyTypeStatus(type_url=type_url))
            stream.types[type_url] = st
            stream.status.types[type_url] = st.status
            # Resources the client already has (reconnect): only send what differs.
            st.known = KnownVersions(over=dict(req.initial_resource_versions))
            # Legacy wildcard: first LDS/CDS request with no names means "everything". Envoy's VHDS
            # subscription is wildcard too: its route configuration's virtual hosts.
            st.wildcard = (type_url in WILDCARD_TYPES or bool(stream.vhds)) and not req.resource_names_subscribe

        if req.response_nonce:
            if req.response_nonce in st.pending:
                # Responses are answered in order: drop this nonce and any older ones.
                version = ""
                while st.pending:
                    nonce, version = next(iter(st.pending.items()))
                    del st.pending[nonce]
                    if nonce == req.response_nonce:
                        break
                ts = st.status
                if req.HasField("error_detail"):
                    ts.nacked_version = version
                    ts.error = req.error_detail.message
                    PILOT.rejected(wire_type(type_url))
                    log.warning(
                        "xds: node %s NACKed %s version %s: %s",
                        stream.status.node_id,
                        _short(type_url),
                        version,
                        ts.error,
                    )
                else:
                    ts.acked_version = version
                    ts.last_ack = time.time()
                    ts.nacked_version = None
                    ts.error = None
                self._status_changed(stream)
            else:
                log.debug("xds stream %d %s: stale nonce %s", stream.id, _short(type_url), req.response_nonce)

        # Subscription changes are deltas, so they apply even on a stale nonce.
        if req.resource_names_subscribe:
            st.base = ""  # newly wanted names are not in `known`: compare everything next time
        if req.resource_names_subscribe or req.resource_names_unsubscribe:
            names = set(st.names)
            for name in req.resource_names_subscribe:
                if name == "*":
                    st.wildcard = True
                else:
                    names.add(name)
            for name in req.resource_names_unsubscribe:
                if name == "*":
                    st.wildcard = False
                else:
                    names.discard(name)
                    st.known.pop(name, None)  # the client dropped it
            # Streams of one scope subscribe to the same names (every EDS cluster): one shared set.
            wanted = frozenset(names)
            st.names = self._name_sets.setdefault(wanted, wanted)
        if not fresh and not req.resource_names_subscribe:
            return []
        if not self._cache.version(stream.status.group, type_url):
            return []
        resp = self._delta_response(stream, st, force=fresh)
        return [resp] if resp is not None else []

    def _covers(self, packed: Mapping[str, Any], names: AbstractSet[str]) -> bool:
        """Whether NAMES (a subscription) holds every name of PACKED (a type's resources): once per mapping and
        subscription - the streams of a scope share both (an EDS change: 1,400 names compared ~20 us, for each of
        2000 streams at 1000 services)."""
        key = (id(packed), id(names))
        found = self._coverage.get(key)
        if found is not None and found[0] is packed and found[1] is names:
            return found[2]
        covered = packed.keys() <= names
        if len(self._coverage) >= 64:  # (it holds the mappings: a few per scope are current)
            self._coverage.clear()
        self._coverage[key] = (packed, names, covered)
        return covered

    def _delta_response(
        self, stream: _Stream, st: _TypeState, *, force: bool, also: frozenset[str] = frozenset()
    ) -> bytes | None:
        assert stream.status is not None
        type_url = st.status.type_url
        snap = self._cache.snapshot(stream.status.group, type_url)
        if snap is None:
            return None
        packed = snap.packed
        if st.base and st.base in (snap.previous, snap.version):
            # The client holds version `base`: only what changed since (and ALSO) can differ.
            candidates = also if st.base == snap.version else snap.changed | also
            updates = sorted(
                n
                for n in candidates
                if (p := packed.get(n)) is not None and (st.wildcard or n in st.names) and st.known.get(n) != p[1]
            )
            gone = () if st.base == snap.version else snap.removed
            removed = sorted(n for n in gone if n in st.known and (st.wildcard or n in st.names))
        elif not st.known:  # a new client: everything it wants
            updates = sorted(packed.keys() if st.wildcard else packed.keys() & st.names)
            removed = []
        else:
            wanted = packed.keys() if st.wildcard else st.names
            updates = sorted(n for n in wanted if (p := packed.get(n)) is not None and st.known.get(n) != p[1])
            removed = sorted(n for n in st.known if n not in packed and (st.wildcard or n in st.names))
        st.base = snap.version
        st.modified = frozenset(n for n in updates if n in st.known)
        ts = st.status
        if not updates and not removed and not force:
            # Nothing this client cares about changed: it already holds this version - or will, once it ACKs the
            # newest response it has (otherwise that ACK would record the older version: STALE until a change).
            if st.pending:
                st.pending[next(reversed(st.pending))] = snap.version
            elif ts.acked_version == ts.sent_version and ts.nacked_version is None:
                ts.acked_version = snap.version
            ts.sent_version = snap.version
            return None
        nonce, resp = self._responses.delta(wire_type(type_url), snap, updates, removed, avoid=st)
        known = st.known
        if isinstance(known, KnownVersions) and (st.wildcard or self._covers(packed, st.names)):
            # The client now holds exactly this snapshot's resources: share the cache's versions.
            known.rebase(snap.hashes)
        else:
            for name in updates:
                known[name] = packed[name][1]
            for name in removed:
                del known[name]
        st.pending[nonce] = snap.version
        ts.sent_version = snap.version
        ts.nonce = nonce
        ts.last_sent = time.time()
        PILOT.sent(wire_type(type_url))
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "xds stream %d: delta %s v%s (+%d -%d) nonce %s",
                stream.id,
                _short(type_url),
                snap.version,
                len(updates),
                len(removed),
                nonce,
            )
        return resp


class Servicer(Protocol):
    def add_to_server(self, server: grpc.aio.Server) -> None: ...


async def serve(
    server: AdsServer,
    address: str,
    *,
    others: Iterable[Servicer] = (),
    credentials: grpc.ServerCredentials | None = None,
) -> grpc.aio.Server:
    """Start a gRPC server for `server` on `address` (e.g. "unix:/run/gossamer/xds.sock"), with
    `others` (e.g. the access log service proxies stream their entries to) on the same server.
    `credentials` (security/server_tls.py): mTLS for every service on it; None: plaintext."""
    path: str | None = None
    if address.startswith("unix:") and not address.startswith("unix-abstract:"):
        path = address[len("unix:") :]
        if path.startswith("//"):
            path = path[2:]
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        # A socket left behind by a crashed control plane would make bind fail.
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)
    grpc_server = grpc.aio.server(
        options=[
            # Envoy keeps the ADS stream alive with HTTP/2 pings; don't GOAWAY it.
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            # Never GOAWAY a client for pinging "too often": under load (a connection storm) gRPC clients'
            # flow-control pings bunch up, and a proxy cut off must reconnect and sync all over again.
            ("grpc.http2.max_ping_strikes", 0),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            # A new stream waits in gRPC core's pending queue until the Python server takes it (one at a
            # time, on the event loop). Past `max_pending_requests` (default 1000) core cancels arriving
            # streams at random, rising to all of them at the hard limit (3000): when 2000 proxies connect
            # at once, a few hundred were reset and had to reconnect. A queued stream costs a few hundred
            # bytes; every proxy of a large mesh connecting at once must fit.
            ("grpc.server.max_pending_requests", MAX_PENDING_STREAMS),
            ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_STREAMS),
        ]
    )
    server.add_to_server(grpc_server)
    for other in others:
        other.add_to_server(grpc_server)
    if credentials is not None:
        grpc_server.add_secure_port(address, credentials)
    else:
        grpc_server.add_insecure_port(address)
    await grpc_server.start()
    if path is not None:
        # Envoys (each pod's own proxy user) carry the proxies' group; nobody else may connect.
        if os.geteuid() == 0:
            os.chown(path, 0, PROXY_GROUP)
        os.chmod(path, 0o660)
    return grpc_server
