"""VHDS: a sidecar's route tables split on the wire (fallback over RDS, every other virtual host over VHDS,
versioned by its own bytes), and the VHDS streams that serve them, over a real grpc.aio server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2, wrappers_pb2

from gossamer.ir.types import RouteTable, VirtualHost
from gossamer.xds import vhds
from gossamer.xds.build.routes import build_route_table, route_table_header, virtual_host_entry
from gossamer.xds.cache import ConfigCache, SharedResources, pack
from gossamer.xds.server import AdsServer, serve
from gossamer.xds.types import LISTENER, ROUTE, VIRTUAL_HOST, vhds_key
from gossamer.xds.vhds import ROUTE_CONFIG_METADATA, RouteSplitter, SidecarRouteSplit, remember_parts

SIDECAR = "sidecar/default/app=web"
GATEWAY = "router/istio-system/istio=ingressgateway"
TIMEOUT = 5.0


def vhost(name: str, domain: str, body: str = "") -> rc.VirtualHost:
    vh = rc.VirtualHost(name=name, domains=[domain, f"{domain}:8000"])
    r = vh.routes.add()
    r.match.prefix = "/"
    r.direct_response.status = 200
    r.direct_response.body.inline_string = body or name
    return vh


def table(name: str = "8000", **hosts: str) -> route_pb2.RouteConfiguration:
    out = route_pb2.RouteConfiguration(name=name, validate_clusters=wrappers_pb2.BoolValue(value=False))
    out.virtual_hosts.append(vhost("allow_any", "*"))
    out.virtual_hosts.extend(vhost(h, f"{h}.test", body) for h, body in hosts.items())
    return out


def routes(*tables: route_pb2.RouteConfiguration) -> SharedResources:
    return SharedResources((t.name, pack(ROUTE, t.name, t)) for t in tables)


def test_split_keeps_the_fallback_and_names_virtual_hosts_after_their_table() -> None:
    wire, vhosts = RouteSplitter().split("8000", pack(ROUTE, "8000", table(a="A", b="B")))
    sent = route_pb2.RouteConfiguration.FromString(wire[0].value)
    assert sent.name == "8000" and sent.validate_clusters.value is False
    assert [v.name for v in sent.virtual_hosts] == ["allow_any"]
    api = sent.vhds.config_source.api_config_source
    assert api.api_type == config_source_pb2.ApiConfigSource.DELTA_GRPC  # Envoy refuses VHDS over ADS
    assert api.grpc_services[0].envoy_grpc.cluster_name == "xds-grpc"
    assert [(m.key, m.value) for m in api.grpc_services[0].initial_metadata] == [(ROUTE_CONFIG_METADATA, "8000")]
    # Reconnected like ADS after a control plane restart (Envoy's default back-off grows to 30 s, and until the
    # stream is back the proxy gets no change of this table).
    back_off = api.grpc_services[0].envoy_grpc.retry_policy.retry_back_off
    assert (back_off.base_interval.ToMilliseconds(), back_off.max_interval.ToMilliseconds()) == (100, 500)
    assert sorted(vhosts) == ["8000/a", "8000/b"]
    got = rc.VirtualHost.FromString(vhosts["8000/a"][0].value)
    want = vhost("a", "a.test", "A")
    want.name = "8000/a"  # Envoy removes a virtual host by its name, and takes only its table's prefix
    assert got == want and vhosts["8000/a"][0].type_url == VIRTUAL_HOST


def test_split_of_a_table_serialized_from_pieces() -> None:
    """The pusher serializes a table as a header and one entry per virtual host: split the same."""
    hosts = (
        VirtualHost(name="allow_any", domains=("*",), routes=()),
        VirtualHost(name="reviews.default.svc.cluster.local:9080", domains=("reviews", "reviews:9080"), routes=()),
    )
    ir = RouteTable(name="9080", virtual_hosts=hosts)
    data = route_table_header(ir) + b"".join(virtual_host_entry(v) for v in hosts)
    whole = build_route_table(ir)
    wire, vhosts = RouteSplitter().split("9080", pack(ROUTE, "9080", route_pb2.RouteConfiguration.FromString(data)))
    sent = route_pb2.RouteConfiguration.FromString(wire[0].value)
    assert [v.name for v in sent.virtual_hosts] == ["allow_any"]
    assert list(sent.request_headers_to_add) == list(whole.request_headers_to_add)
    (name,) = vhosts
    assert name == "9080/reviews.default.svc.cluster.local:9080"
    got = rc.VirtualHost.FromString(vhosts[name][0].value)
    assert list(got.domains) == ["reviews", "reviews:9080"] and got.name == name


def test_a_change_to_one_virtual_host_versions_only_it() -> None:
    cache = ConfigCache(route_split=SidecarRouteSplit())
    cache.set_group(SIDECAR, {ROUTE: {"8000": table(a="A", b="B")}})
    cache.set_group(GATEWAY, {ROUTE: {"8000": table(a="A", b="B")}})
    rds = cache.version(SIDECAR, ROUTE)
    assert cache.vhds_keys(SIDECAR) == [vhds_key("8000")] and cache.vhds_keys(GATEWAY) == []

    changed = cache.set_group_packed(SIDECAR, {ROUTE: routes(table(a="A2", b="B"))}, partial=True)
    assert changed == {vhds_key("8000")}  # the table's fallback and fields did not change: no RDS
    assert cache.version(SIDECAR, ROUTE) == rds
    snap = cache.snapshot(SIDECAR, vhds_key("8000"))
    assert snap is not None and snap.changed == {"8000/a"} and not snap.removed

    cache.set_group_packed(SIDECAR, {ROUTE: routes(table(a="A2"))}, partial=True)
    snap = cache.snapshot(SIDECAR, vhds_key("8000"))
    assert snap is not None and snap.removed == {"8000/b"} and not snap.changed

    # A new table has its own virtual hosts; a table gone takes its virtual hosts with it.
    cache.set_group_packed(SIDECAR, {ROUTE: routes(table("9080", r="R"))}, partial=True)
    assert cache.vhds_keys(SIDECAR) == [vhds_key("9080")]
    assert not cache.get(SIDECAR, vhds_key("8000"))[1]

    # The debugging tools see whole tables; the gateway got its table whole.
    _, given = cache.given(SIDECAR, ROUTE)
    assert [v.name for v in route_pb2.RouteConfiguration.FromString(given["9080"].value).virtual_hosts] == [
        "allow_any",
        "r",
    ]
    gateway = route_pb2.RouteConfiguration.FromString(cache.get(GATEWAY, ROUTE)[1]["8000"].value)
    assert len(gateway.virtual_hosts) == 3 and not gateway.HasField("vhds")


def test_groups_of_a_scope_share_the_split() -> None:
    """A scope's shared route tables are split once: its groups get the same mappings, the same versions."""
    cache = ConfigCache(route_split=SidecarRouteSplit())
    shared = routes(table(a="A"))
    cache.set_group_packed(SIDECAR, {ROUTE: shared})
    cache.set_group_packed(SIDECAR + ",v=2", {ROUTE: shared})
    for key in (ROUTE, vhds_key("8000")):
        one, two = cache.snapshot(SIDECAR, key), cache.snapshot(SIDECAR + ",v=2", key)
        assert one is not None and two is not None and one.packed is two.packed and one.version == two.version


# ---- the VHDS stream ------------------------------------------------------------------------------


def _node(node_id: str, namespace: str = "default") -> base_pb2.Node:
    node = base_pb2.Node(id=node_id)
    node.metadata.fields["NAMESPACE"].CopyFrom(struct_pb2.Value(string_value=namespace))
    return node


class Stream:
    def __init__(self, call: Any) -> None:
        self.call = call
        self.responses: asyncio.Queue[Any] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while (resp := await self.call.read()) is not grpc.aio.EOF:
            await self.responses.put(resp)

    async def send(self, type_url: str, node: base_pb2.Node | None = None, nonce: str = "") -> None:
        req = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, response_nonce=nonce)
        if node is not None:
            req.node.CopyFrom(node)
        await self.call.write(req)

    async def recv(self) -> discovery_pb2.DeltaDiscoveryResponse:
        resp: discovery_pb2.DeltaDiscoveryResponse = await asyncio.wait_for(self.responses.get(), TIMEOUT)
        return resp


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[ConfigCache, AdsServer, grpc.aio.Channel]]:
    cache = ConfigCache(route_split=SidecarRouteSplit())
    cache.set_group(SIDECAR, {LISTENER: {}, ROUTE: {"8000": table(a="A", b="B")}})

    async def group_for_node(node: base_pb2.Node) -> str:
        return SIDECAR

    ads = AdsServer(cache, group_for_node, authenticate=False)
    server = await serve(ads, f"unix:{tmp_path / 'xds.sock'}")
    channel = grpc.aio.insecure_channel(f"unix:{tmp_path / 'xds.sock'}")
    try:
        yield cache, ads, channel
    finally:
        await channel.close()
        await server.stop(None)


def _open(channel: grpc.aio.Channel, service: str, method: str, route_config: str | None) -> Stream:
    call = channel.stream_stream(
        f"/{service}/{method}",
        request_serializer=discovery_pb2.DeltaDiscoveryRequest.SerializeToString,
        response_deserializer=discovery_pb2.DeltaDiscoveryResponse.FromString,
    )(metadata=((ROUTE_CONFIG_METADATA, route_config),) if route_config is not None else None)
    return Stream(call)


def _ads(channel: grpc.aio.Channel) -> Stream:
    return _open(channel, "envoy.service.discovery.v3.AggregatedDiscoveryService", "DeltaAggregatedResources", None)


def _vhds(channel: grpc.aio.Channel, route_config: str | None = "8000") -> Stream:
    return _open(channel, "envoy.service.route.v3.VirtualHostDiscoveryService", "DeltaVirtualHosts", route_config)


async def test_vhds_stream_sends_its_table_s_virtual_hosts_then_only_changes(
    served: tuple[ConfigCache, AdsServer, grpc.aio.Channel],
) -> None:
    cache, ads, channel = served
    node = _node("sidecar~10.0.0.1~web-1.default~default.svc.cluster.local")
    adsc = _ads(channel)
    await adsc.send(ROUTE, node)  # (Envoy asks RDS by name; the stream's existence is what matters here)
    vhds = _vhds(channel)
    await vhds.send(VIRTUAL_HOST, node)  # Envoy's VHDS request: wildcard, no names
    first = await vhds.recv()
    assert first.type_url == VIRTUAL_HOST and sorted(r.name for r in first.resources) == ["8000/a", "8000/b"]
    await vhds.send(VIRTUAL_HOST, nonce=first.nonce)
    key = vhds_key("8000")
    for _ in range(100):
        (status,) = ads.proxies()
        if status.synced.get(key) == "SYNCED":
            break
        await asyncio.sleep(0.02)
    assert status.synced[key] == "SYNCED"  # reported in the proxy's status, beside its ADS types

    cache.set_group_packed(SIDECAR, {ROUTE: routes(table(a="A", b="B2", c="C"))}, partial=True)
    update = await vhds.recv()
    assert sorted(r.name for r in update.resources) == ["8000/b", "8000/c"] and not update.removed_resources
    await vhds.send(VIRTUAL_HOST, nonce=update.nonce)
    cache.set_group_packed(SIDECAR, {ROUTE: routes(table(a="A", c="C"))}, partial=True)
    removal = await vhds.recv()
    assert not removal.resources and list(removal.removed_resources) == ["8000/b"]
    await vhds.send(VIRTUAL_HOST, nonce=removal.nonce, node=None)
    vhds.call.cancel()
    for _ in range(100):
        if key not in status.types:
            break
        await asyncio.sleep(0.02)
    assert key not in status.types and not status.is_synced()  # its VHDS stream is gone: not in sync
    adsc.call.cancel()


async def test_vhds_stream_must_name_its_table_and_be_its_proxy_s(
    served: tuple[ConfigCache, AdsServer, grpc.aio.Channel],
) -> None:
    _, _, channel = served
    unnamed = _vhds(channel, None)
    await unnamed.send(VIRTUAL_HOST, _node("sidecar~x"))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await asyncio.wait_for(unnamed.reader, TIMEOUT)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    node = _node("sidecar~10.0.0.2~web-2.default~default.svc.cluster.local")
    adsc = _ads(channel)
    await adsc.send(ROUTE, node)
    other = _vhds(channel)
    await other.send(VIRTUAL_HOST, _node(node.id, namespace="other"))  # the node, but not its identity
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await asyncio.wait_for(other.reader, TIMEOUT)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    adsc.call.cancel()


def test_a_table_split_by_the_parts_it_was_serialized_from_is_split_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pusher tells the splitter a table's parts (remember_parts): the split is the one of its bytes."""
    hosts = (
        VirtualHost(name="allow_any", domains=("*",), routes=()),
        VirtualHost(name="reviews.default.svc.cluster.local:9080", domains=("reviews", "reviews:9080"), routes=()),
        VirtualHost(name="ratings.default.svc.cluster.local:9080", domains=("ratings", "ratings:9080"), routes=()),
    )
    ir = RouteTable(name="9080", virtual_hosts=hosts)
    parts = (route_table_header(ir), *(virtual_host_entry(v) for v in hosts))
    packed = pack(ROUTE, "9080", route_pb2.RouteConfiguration.FromString(b"".join(parts)))
    walked = RouteSplitter().split("9080", packed)
    remember_parts("9080", packed[1], parts)
    splitter = RouteSplitter()
    by_parts = splitter.split("9080", packed)
    assert by_parts[0] == walked[0] and by_parts[1] == walked[1]
    assert sorted(by_parts[1]) == [
        "9080/ratings.default.svc.cluster.local:9080",
        "9080/reviews.default.svc.cluster.local:9080",
    ]
    # Another version of the table (one virtual host changed): its other virtual hosts keep their packed resources.
    changed = (*hosts[:2], VirtualHost(name=hosts[2].name, domains=("ratings",), routes=()))
    parts2 = (route_table_header(ir), *(virtual_host_entry(v) for v in changed))
    packed2 = pack(ROUTE, "9080", route_pb2.RouteConfiguration.FromString(b"".join(parts2)))
    remember_parts("9080", packed2[1], parts2)
    walks: list[int] = []
    fields = vhds._fields

    def counted(data: bytes) -> Any:
        walks.append(len(data))
        return fields(data)

    monkeypatch.setattr(vhds, "_fields", counted)
    second = splitter.split("9080", packed2)
    assert walks and max(walks) < len(packed2[0].value) // 2  # the changed part read, never the whole table
    monkeypatch.undo()
    assert second == RouteSplitter().split("9080", packed2)  # (the walk of the bytes: the same)
    reviews = "9080/reviews.default.svc.cluster.local:9080"
    assert second[1][reviews] is by_parts[1][reviews]
