"""ADS server + config cache, driven over a real grpc.aio server on a unix socket."""

from __future__ import annotations

import asyncio
import gc
import os
import stat
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import message, struct_pb2
from google.rpc import status_pb2

from gossamer.mesh import PROXY_GROUP
from gossamer.xds.cache import ConfigCache, Layered, SharedResources, pack
from gossamer.xds.proxy_status import ProxyStatus
from gossamer.xds.server import AdsServer, serve
from gossamer.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

TIMEOUT = 5.0


def cluster(name: str, timeout_s: int = 1) -> cluster_pb2.Cluster:
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    c.connect_timeout.seconds = timeout_s
    return c


def cla(name: str, port: int = 80) -> endpoint_pb2.ClusterLoadAssignment:
    a = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    lb = a.endpoints.add().lb_endpoints.add()
    lb.endpoint.address.socket_address.address = "10.0.0.1"
    lb.endpoint.address.socket_address.port_value = port
    return a


def listener(name: str, port: int = 8080) -> listener_pb2.Listener:
    lis = listener_pb2.Listener(name=name)
    lis.address.socket_address.address = "127.0.0.1"
    lis.address.socket_address.port_value = port
    return lis


def route(name: str, prefix: str = "/") -> route_pb2.RouteConfiguration:
    rc = route_pb2.RouteConfiguration(name=name)
    vh = rc.virtual_hosts.add(name="all", domains=["*"])
    r = vh.routes.add()
    r.match.prefix = prefix
    r.direct_response.status = 200
    return rc


def config(**overrides: Mapping[str, message.Message]) -> dict[str, Mapping[str, message.Message]]:
    base: dict[str, Mapping[str, message.Message]] = {
        CLUSTER: {"c1": cluster("c1"), "c2": cluster("c2")},
        ENDPOINT: {"c1": cla("c1"), "c2": cla("c2")},
        LISTENER: {"l1": listener("l1")},
        ROUTE: {"r1": route("r1"), "r2": route("r2")},
    }
    key = {"cds": CLUSTER, "eds": ENDPOINT, "lds": LISTENER, "rds": ROUTE}
    for k, v in overrides.items():
        base[key[k]] = v
    return base


@dataclass
class Env:
    cache: ConfigCache
    ads: AdsServer
    channel: grpc.aio.Channel
    stub: ads_pb2_grpc.AggregatedDiscoveryServiceStub
    socket: Path
    statuses: list[ProxyStatus]
    disconnected: list[ProxyStatus]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    cache = ConfigCache()
    cache.set_group("default", config())
    statuses: list[ProxyStatus] = []
    disconnected: list[ProxyStatus] = []

    async def group_for_node(node: base_pb2.Node) -> str:
        group = node.metadata.fields["GROUP"].string_value or "default"
        if not cache.has_group(group):  # the control plane translates a new group here
            cache.set_group(group, config(lds={"other": listener("other")}))
        return group

    ads = AdsServer(
        cache, group_for_node, on_status_change=statuses.append, on_disconnect=disconnected.append, authenticate=False
    )  # the protocol; identity: test_xds_identity.py
    sock = tmp_path / "xds.sock"
    server = await serve(ads, f"unix:{sock}")
    channel = grpc.aio.insecure_channel(f"unix:{sock}")
    try:
        yield Env(
            cache, ads, channel, ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel), sock, statuses, disconnected
        )
    finally:
        await channel.close()
        await server.stop(None)


class Client:
    """One ADS stream; responses are collected by a background reader."""

    def __init__(
        self,
        stub: ads_pb2_grpc.AggregatedDiscoveryServiceStub,
        node_id: str = "sidecar~1",
        group: str = "",
        delta: bool = False,
    ) -> None:
        self.call: Any = stub.DeltaAggregatedResources() if delta else stub.StreamAggregatedResources()
        self.node = base_pb2.Node(id=node_id, cluster="test")
        if group:
            self.node.metadata.fields["GROUP"].CopyFrom(struct_pb2.Value(string_value=group))
        self.first = True
        self.responses: asyncio.Queue[Any] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            resp = await self.call.read()
            if resp is grpc.aio.EOF:
                return
            await self.responses.put(resp)

    async def send(
        self, type_url: str, names: tuple[str, ...] = (), version: str = "", nonce: str = "", error: str | None = None
    ) -> None:
        req = discovery_pb2.DiscoveryRequest(
            type_url=type_url, resource_names=names, version_info=version, response_nonce=nonce
        )
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        if self.first:
            req.node.CopyFrom(self.node)
            self.first = False
        await self.call.write(req)

    async def send_delta(
        self,
        type_url: str,
        subscribe: tuple[str, ...] = (),
        unsubscribe: tuple[str, ...] = (),
        nonce: str = "",
        error: str | None = None,
        initial: Mapping[str, str] | None = None,
    ) -> None:
        req = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=subscribe,
            resource_names_unsubscribe=unsubscribe,
            response_nonce=nonce,
            initial_resource_versions=initial or {},
        )
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        if self.first:
            req.node.CopyFrom(self.node)
            self.first = False
        await self.call.write(req)

    async def recv(self) -> Any:
        return await asyncio.wait_for(self.responses.get(), TIMEOUT)

    async def expect_nothing(self, wait: float = 0.3) -> None:
        await asyncio.sleep(wait)
        assert self.responses.empty(), f"unexpected response: {self.responses.get_nowait()}"

    async def ack(self, resp: Any, names: tuple[str, ...] = ()) -> None:
        await self.send(resp.type_url, names, version=resp.version_info, nonce=resp.nonce)

    async def close(self) -> None:
        await self.call.done_writing()
        self.call.cancel()
        self.reader.cancel()


def names_of(resp: discovery_pb2.DiscoveryResponse) -> list[str]:
    out = []
    for a in resp.resources:
        if a.type_url == CLUSTER:
            m: Any = cluster_pb2.Cluster()
        elif a.type_url == ENDPOINT:
            m = endpoint_pb2.ClusterLoadAssignment()
        elif a.type_url == LISTENER:
            m = listener_pb2.Listener()
        else:
            m = route_pb2.RouteConfiguration()
        a.Unpack(m)
        out.append(m.cluster_name if a.type_url == ENDPOINT else m.name)
    return out


async def until(cond: Callable[[], bool]) -> None:
    for _ in range(100):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met")


async def acked(env: Env, resp: Any, node_id: str = "sidecar~1") -> None:
    """Wait until the server recorded the ACK of `resp` (before racing it with a cache change)."""
    await until(lambda: proxy(env, node_id).types[resp.type_url].acked_version == resp.version_info)


def proxy(env: Env, node_id: str = "sidecar~1") -> ProxyStatus:
    (st,) = [p for p in env.ads.proxies() if p.node_id == node_id]
    return st


# ---- cache --------------------------------------------------------------------


def test_cache_versions_change_only_with_content() -> None:
    cache = ConfigCache()
    changed = cache.set_group("g", config())
    assert changed >= {CLUSTER, ENDPOINT, LISTENER, ROUTE}
    v = {t: cache.get("g", t)[0] for t in (CLUSTER, ENDPOINT, LISTENER, ROUTE)}
    # Same content built from fresh objects: nothing changes.
    assert cache.set_group("g", config()) == set()
    assert {t: cache.get("g", t)[0] for t in v} == v
    # Only routes change.
    assert cache.set_group("g", config(rds={"r1": route("r1", "/x")})) == {ROUTE}
    assert int(cache.get("g", ROUTE)[0]) > int(v[ROUTE])
    assert cache.get("g", CLUSTER)[0] == v[CLUSTER]
    # EDS fast path.
    assert cache.set_endpoints("g", {"c1": cla("c1", 81)}) is True
    assert cache.set_endpoints("g", {"c1": cla("c1", 81)}) is False
    assert list(cache.get("g", ENDPOINT)[1]) == ["c1"]
    # Unknown group / type.
    assert cache.get("nope", CLUSTER) == ("", {})
    cache.remove_group("g")
    assert not cache.has_group("g")
    # Re-adding never reuses a version.
    cache.set_group("g", config())
    assert int(cache.get("g", CLUSTER)[0]) > int(v[CLUSTER])


def test_cache_rejects_wrong_type_and_notifies() -> None:
    cache = ConfigCache()
    with pytest.raises(ValueError):
        cache.set_group("g", {CLUSTER: {"x": listener("x")}})
    seen: list[tuple[str, frozenset[str]]] = []
    cancel = cache.watch("g", lambda g, t: seen.append((g, t)))
    cache.set_group("g", config())
    cache.set_group("g", config(cds={"c1": cluster("c1", 2)}))
    cancel()
    cache.set_group("g", config())
    assert len(seen) == 2 and seen[1] == ("g", frozenset({CLUSTER}))


def test_a_shared_mapping_is_written_to_many_groups_as_one_snapshot_and_one_notification() -> None:
    """set_shared (an endpoint push: one endpoint scope's groups): the groups that held the same content get one
    new snapshot, compared once; a mapping made by replacing entries (replaced) is compared in those only."""
    endpoints = SharedResources({n: pack(ENDPOINT, n, cla(n)) for n in ("c1", "c2", "c3")})
    cache = ConfigCache()
    for g in ("g1", "g2", "g3"):
        cache.set_group_packed(g, {ENDPOINT: endpoints})
    before = cache.version("g1", ENDPOINT)
    posted: list[Callable[[], None]] = []
    cache.notify_through(posted.append)
    seen: list[str] = []
    cache.watch_all(lambda g, t: seen.append(g))
    # c2 replaced with other content, c3 with the same: only c2 changed.
    new = endpoints.replaced({"c2": pack(ENDPOINT, "c2", cla("c2", 81)), "c3": pack(ENDPOINT, "c3", cla("c3"))})
    assert new.base is not None and new.base[0]() is endpoints
    assert cache.set_shared(["g1", "g2", "g3", "unknown"], ENDPOINT, new) == ["g1", "g2", "g3"]
    snaps = [cache.snapshot(g, ENDPOINT) for g in ("g1", "g2", "g3")]
    assert snaps[0] is snaps[1] is snaps[2] and snaps[0] is not None
    assert (snaps[0].changed, snaps[0].removed) == (frozenset({"c2"}), frozenset())
    assert snaps[0].packed is new and snaps[0].previous == before != snaps[0].version
    # One hand-over to the streams' thread for all three groups.
    assert len(posted) == 1 and not seen
    posted[0]()
    assert seen == ["g1", "g2", "g3"]
    # Again: nothing changed, nobody told.
    assert cache.set_shared(["g1", "g2", "g3"], ENDPOINT, new) == [] and len(posted) == 1
    # A replaced mapping does not keep the one it was made from (a pod change's would keep all before it).
    first = SharedResources({"c1": pack(ENDPOINT, "c1", cla("c1"))})
    second = first.replaced({"c1": pack(ENDPOINT, "c1", cla("c1", 82))})
    third = second.replaced({"c1": pack(ENDPOINT, "c1", cla("c1", 83))})
    del first
    gc.collect()
    assert second.base is not None and second.base[0]() is None
    assert third.base is not None and third.base[0]() is second
    # Route configurations may be split per group: not written this way.
    with pytest.raises(ValueError):
        ConfigCache(route_split=lambda _g, _r: None).set_shared(["g1"], ROUTE, {})


def test_layered_resources_read_as_one_mapping_and_changes_are_found_per_layer() -> None:
    """Groups given a scope's clusters under their own (Layered): each reads as the union (its own first),
    and a change of either layer is seen exactly, for every group that shares the other."""

    def packed(**clusters: int) -> dict[str, Any]:
        return {n: pack(CLUSTER, n, cluster(n, t)) for n, t in clusters.items()}

    shared = SharedResources(packed(a=1, b=1, c=1))
    own = {"g1": packed(inbound1=1), "g2": packed(inbound2=1, b=9)}
    cache = ConfigCache()
    for g in own:
        cache.set_group_packed(g, {CLUSTER: Layered(shared, own[g])})
    _, g2 = cache.get("g2", CLUSTER)
    assert sorted(g2) == ["a", "b", "c", "inbound2"] and len(g2) == 4
    assert g2["b"] == own["g2"]["b"][0] and "inbound2" in g2 and "inbound1" not in g2
    assert sorted(cache.get("g1", CLUSTER)[1]) == ["a", "b", "c", "inbound1"]
    versions = {g: cache.version(g, CLUSTER) for g in own}

    # The same layers in a new Layered: nothing changed.
    assert cache.set_group_packed("g1", {CLUSTER: Layered(shared, own["g1"])}, partial=True) == set()
    # The shared layer changes (b modified, c gone, d new): g2 keeps its own b.
    shared2 = SharedResources({**packed(a=1, b=2, d=1)})
    for g in own:
        assert cache.set_group_packed(g, {CLUSTER: Layered(shared2, own[g])}, partial=True) == {CLUSTER}
        assert cache.version(g, CLUSTER) != versions[g]
    snap1, snap2 = cache.snapshot("g1", CLUSTER), cache.snapshot("g2", CLUSTER)
    assert snap1 is not None and (snap1.changed, snap1.removed) == (frozenset("bd"), frozenset("c"))
    assert snap2 is not None and (snap2.changed, snap2.removed) == (frozenset("d"), frozenset("c"))
    # Only a group's own layer changes: its inbound cluster replaced.
    assert cache.set_group_packed("g1", {CLUSTER: Layered(shared2, packed(inbound1=5))}, partial=True) == {CLUSTER}
    snap1 = cache.snapshot("g1", CLUSTER)
    assert snap1 is not None and (snap1.changed, snap1.removed) == (frozenset({"inbound1"}), frozenset())
    assert sorted(snap1.hashes) == ["a", "b", "d", "inbound1"]


# ---- SotW ---------------------------------------------------------------------


async def test_initial_request_ack_and_status(env: Env) -> None:
    c = Client(env.stub)
    await c.send(CLUSTER)
    resp = await c.recv()
    assert resp.type_url == CLUSTER and resp.nonce and resp.version_info == env.cache.get("default", CLUSTER)[0]
    assert sorted(names_of(resp)) == ["c1", "c2"]
    st = proxy(env)
    assert st.group == "default" and st.types[CLUSTER].sent_version == resp.version_info
    assert st.synced[CLUSTER] == "STALE"
    await c.ack(resp)
    await acked(env, resp)
    # Envoy asks for LDS only after CDS warmed: until then the proxy is not synced.
    assert await env.ads.wait_synced(["sidecar~1"], 0.2) is False
    await c.send(LISTENER)
    lds = await c.recv()
    await c.ack(lds)
    assert await env.ads.wait_synced(["sidecar~1"], TIMEOUT)
    st = proxy(env)
    assert st.types[CLUSTER].acked_version == resp.version_info
    assert st.synced == {CLUSTER: "SYNCED", LISTENER: "SYNCED"}
    assert st.types[CLUSTER].last_ack > 0 and env.statuses
    await c.close()
    for _ in range(50):
        if not env.ads.proxies():
            break
        await asyncio.sleep(0.05)
    assert env.ads.proxies() == [] and env.disconnected[0].node_id == "sidecar~1"


async def test_nack_recorded_and_not_resent(env: Env) -> None:
    c = Client(env.stub)
    await c.send(LISTENER)
    r1 = await c.recv()
    await c.ack(r1)
    await acked(env, r1)
    env.cache.set_group("default", config(lds={"l1": listener("l1", 9999)}))
    r2 = await c.recv()
    assert r2.version_info != r1.version_info
    await c.send(LISTENER, version=r1.version_info, nonce=r2.nonce, error="bad listener l1")
    await c.expect_nothing()
    assert await env.ads.wait_synced(None, 0.2) is False
    ts = proxy(env).types[LISTENER]
    assert ts.acked_version == r1.version_info
    assert ts.nacked_version == r2.version_info and ts.error == "bad listener l1"
    assert proxy(env).synced[LISTENER] == "NACKED"
    # An unrelated type change does not resend the NACKed listeners.
    env.cache.set_group("default", config(lds={"l1": listener("l1", 9999)}, cds={"c9": cluster("c9")}))
    await c.expect_nothing()
    # A new listener version is pushed and its ACK clears the error.
    env.cache.set_group("default", config(lds={"l1": listener("l1", 8081)}))
    r3 = await c.recv()
    assert r3.type_url == LISTENER and r3.version_info != r2.version_info
    await c.ack(r3)
    await acked(env, r3)
    ts = proxy(env).types[LISTENER]
    assert ts.acked_version == r3.version_info and ts.error is None and ts.nacked_version is None
    await c.close()


async def test_push_only_changed_types_in_order(env: Env) -> None:
    c = Client(env.stub)
    await c.send(CLUSTER)
    await c.ack(await c.recv())
    await c.send(ENDPOINT, ("c1",))
    await c.ack(await c.recv(), ("c1",))
    await c.send(LISTENER)
    await c.ack(await c.recv())
    await c.send(ROUTE, ("r1",))
    await c.ack(await c.recv(), ("r1",))
    await c.expect_nothing()
    # Change everything except listeners: CDS, EDS then RDS arrive in that order.
    env.cache.set_group(
        "default",
        config(cds={"c1": cluster("c1", 3)}, eds={"c1": cla("c1", 99)}, rds={"r1": route("r1", "/z")}),
    )
    got = [await c.recv() for _ in range(3)]
    assert [r.type_url for r in got] == [CLUSTER, ENDPOINT, ROUTE]
    assert names_of(got[1]) == ["c1"] and names_of(got[2]) == ["r1"]
    await c.expect_nothing()
    for r, names in zip(got, [(), ("c1",), ("r1",)], strict=True):
        await c.ack(r, names)
    assert await env.ads.wait_synced(None, TIMEOUT)
    # EDS fast path pushes only EDS.
    env.cache.set_endpoints("default", {"c1": cla("c1", 1), "c2": cla("c2")})
    r = await c.recv()
    assert r.type_url == ENDPOINT and names_of(r) == ["c1"]
    await c.expect_nothing()
    await c.close()


async def test_rds_eds_by_name_and_subscription_change(env: Env) -> None:
    c = Client(env.stub)
    await c.send(ROUTE, ("r2",))
    r = await c.recv()
    assert names_of(r) == ["r2"]
    # ACK with a bigger subscription: answered with the same version, new names.
    await c.send(ROUTE, ("r1", "r2", "missing"), version=r.version_info, nonce=r.nonce)
    r2 = await c.recv()
    assert r2.version_info == r.version_info and r2.nonce != r.nonce
    assert names_of(r2) == ["r1", "r2"]
    await c.ack(r2, ("r1", "r2", "missing"))
    await c.expect_nothing()
    await c.send(ENDPOINT, ("c2",))
    e = await c.recv()
    assert names_of(e) == ["c2"]
    await c.close()


async def test_stale_nonce_ignored(env: Env) -> None:
    c = Client(env.stub)
    await c.send(CLUSTER)
    await c.ack(await c.recv())
    await c.send(LISTENER)
    r1 = await c.recv()
    env.cache.set_group("default", config(lds={"l1": listener("l1", 1234)}))
    r2 = await c.recv()
    # ACK (and even NACK) of the superseded response changes nothing.
    await c.send(LISTENER, version=r1.version_info, nonce=r1.nonce, error="old news")
    await c.expect_nothing()
    ts = proxy(env).types[LISTENER]
    assert ts.nonce == r2.nonce and ts.acked_version == "" and ts.error is None
    await c.ack(r2)
    assert await env.ads.wait_synced(["sidecar~1"], TIMEOUT)
    await c.close()


async def test_new_group_translated_on_connect_and_many_streams(env: Env) -> None:
    clients = [Client(env.stub, node_id=f"n{i}", group="other" if i % 2 else "") for i in range(20)]
    for c in clients:
        await c.send(CLUSTER)
        await c.send(LISTENER)

    async def sync(i: int, c: Client) -> None:
        await c.ack(await c.recv())  # CDS
        r = await c.recv()
        assert names_of(r) == (["other"] if i % 2 else ["l1"])
        await c.ack(r)

    # Each client answers on its own, as Envoys do: the server serves initial syncs in waves
    # (INITIAL_SYNC_CONCURRENCY), so a client waiting on another's ACK could wait for its slot.
    await asyncio.gather(*(sync(i, c) for i, c in enumerate(clients)))
    assert await env.ads.wait_synced([f"n{i}" for i in range(20)], TIMEOUT)
    assert {p.group for p in env.ads.proxies()} == {"default", "other"}
    env.cache.set_group("other", config(lds={"other2": listener("other2")}))
    for i, c in enumerate(clients):
        if i % 2:
            assert names_of(await c.recv()) == ["other2"]
    for c in clients:
        await c.expect_nothing(0.01)
        await c.close()


async def test_first_request_without_node_is_rejected(env: Env) -> None:
    call = env.stub.StreamAggregatedResources()
    await call.write(discovery_pb2.DiscoveryRequest(type_url=CLUSTER))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await asyncio.wait_for(call.read(), TIMEOUT)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_socket_is_for_root_and_the_proxies_group_only(env: Env) -> None:
    st = os.stat(env.socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (0, PROXY_GROUP)


# ---- Delta --------------------------------------------------------------------


async def test_delta_wildcard_updates_and_removals(env: Env) -> None:
    c = Client(env.stub, delta=True)
    await c.send_delta(CLUSTER)
    r = await c.recv()
    assert sorted(x.name for x in r.resources) == ["c1", "c2"] and not r.removed_resources
    assert all(x.version for x in r.resources)
    await c.send_delta(CLUSTER, nonce=r.nonce)
    assert await env.ads.wait_synced(None, 0.2) is False  # LDS not subscribed yet
    await c.send_delta(LISTENER)
    lr = await c.recv()
    await c.send_delta(LISTENER, nonce=lr.nonce)
    assert await env.ads.wait_synced(None, TIMEOUT)
    # c2 changes, c1 is removed, c3 added: only the difference is sent.
    env.cache.set_group("default", config(cds={"c2": cluster("c2", 5), "c3": cluster("c3")}))
    r2 = await c.recv()
    assert sorted(x.name for x in r2.resources) == ["c2", "c3"]
    assert list(r2.removed_resources) == ["c1"]
    await c.send_delta(CLUSTER, nonce=r2.nonce, error="no")
    await until(lambda: proxy(env).synced[CLUSTER] == "NACKED")
    assert proxy(env).types[CLUSTER].error == "no"
    await c.expect_nothing()
    await c.close()


async def test_delta_named_subscribe_unsubscribe_and_initial_versions(env: Env) -> None:
    known = env.cache.snapshot("default", ENDPOINT)
    assert known is not None
    c = Client(env.stub, delta=True)
    # The client already has c1 at the current version (reconnect): only c2 is sent.
    await c.send_delta(ENDPOINT, subscribe=("c1", "c2"), initial={"c1": known.hashes["c1"]})
    r = await c.recv()
    assert [x.name for x in r.resources] == ["c2"]
    await c.send_delta(ENDPOINT, nonce=r.nonce, unsubscribe=("c2",))
    await c.expect_nothing()
    env.cache.set_endpoints("default", {"c1": cla("c1"), "c2": cla("c2", 7)})
    await c.expect_nothing()  # only c2 changed, and it is no longer subscribed
    assert proxy(env).synced[ENDPOINT] == "SYNCED"
    env.cache.set_endpoints("default", {"c2": cla("c2", 7)})
    r2 = await c.recv()
    assert list(r2.removed_resources) == ["c1"] and not r2.resources
    await c.close()


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_modified_cluster_gets_its_unchanged_endpoints_again(env: Env, delta: bool) -> None:
    """Envoy re-creates a modified cluster and keeps it warming (CDS un-ACKed) until EDS arrives
    for it, without changing its EDS subscription: the server must resend those endpoints."""
    c = Client(env.stub, delta=delta)

    async def subscribe(type_url: str, names: tuple[str, ...] = ()) -> None:
        if delta:
            await c.send_delta(type_url, subscribe=names)
            r = await c.recv()
            await c.send_delta(type_url, nonce=r.nonce)
        else:
            await c.send(type_url, names)
            await c.ack(await c.recv(), names)

    await subscribe(CLUSTER)
    await subscribe(ENDPOINT, ("c1", "c2"))
    await subscribe(LISTENER)
    await subscribe(ROUTE, ("r1",))
    assert await env.ads.wait_synced(None, TIMEOUT)
    env.cache.set_group("default", config(cds={"c1": cluster("c1", 3), "c2": cluster("c2")}))
    cds, eds = await c.recv(), await c.recv()
    assert cds.type_url == CLUSTER and eds.type_url == ENDPOINT
    if delta:
        assert [x.name for x in cds.resources] == ["c1"]
        assert [x.name for x in eds.resources] == ["c1"] and not eds.removed_resources
        for r in (cds, eds):
            await c.send_delta(r.type_url, nonce=r.nonce)
    else:
        assert names_of(eds) == ["c1", "c2"]
        await c.ack(cds)
        await c.ack(eds, ("c1", "c2"))
    await c.expect_nothing()
    assert await env.ads.wait_synced(None, TIMEOUT)
    # A new cluster is not "modified": Envoy subscribes to its endpoints by name.
    env.cache.set_group("default", config(cds={"c1": cluster("c1", 3), "c2": cluster("c2"), "c3": cluster("c3")}))
    cds = await c.recv()
    assert cds.type_url == CLUSTER
    await c.expect_nothing()
    await c.close()


async def test_delta_change_of_nothing_subscribed_while_a_response_is_unacked(env: Env) -> None:
    """The proxy is SYNCED once it ACKs: a change meanwhile that is none of its business needs nothing more."""
    c = Client(env.stub, delta=True)
    await c.send_delta(ENDPOINT, subscribe=("c1",))
    r = await c.recv()  # not ACKed yet
    env.cache.set_endpoints("default", {"c1": cla("c1"), "c2": cla("c2", 7)})  # only c2 changed
    await c.expect_nothing()
    await c.send_delta(ENDPOINT, nonce=r.nonce)
    await until(lambda: proxy(env).types[ENDPOINT].last_ack > 0)
    assert proxy(env).synced[ENDPOINT] == "SYNCED"
    await c.close()


def test_whether_a_subscription_covers_a_types_resources_is_worked_out_once_per_mapping_and_subscription() -> None:
    """(An endpoint change: every stream of a scope holds the scope's mapping and the same subscription; comparing
    1,400 names took ~20 us per stream.)"""

    class Counted(SharedResources):
        looked = 0

        def keys(self) -> Any:
            Counted.looked += 1
            return super().keys()

    async def group_for_node(_node: Any) -> str:
        return "g"

    server = AdsServer(ConfigCache(), group_for_node, authenticate=False)
    packed = Counted({n: pack(ENDPOINT, n, cla(n)) for n in ("c1", "c2")})
    every, fewer = frozenset({"c1", "c2", "c3"}), frozenset({"c1"})
    assert [server._covers(packed, every) for _ in range(3)] == [True, True, True] and Counted.looked == 1
    assert server._covers(packed, fewer) is False and Counted.looked == 2
    assert server._covers(Counted(packed), every) is True and Counted.looked == 3  # another mapping: looked at
