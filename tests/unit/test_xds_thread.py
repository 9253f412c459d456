"""The ADS server on a thread of its own (controlplane/xds_thread.py), as the control plane runs it: the cache
written on the main loop, the streams served and told of changes on the xDS thread's loop."""

from __future__ import annotations

import asyncio
import functools
import threading
from pathlib import Path

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc

from gossamer.controlplane.xds_thread import XdsThread, run_on
from gossamer.xds.cache import ConfigCache
from gossamer.xds.server import AdsServer, serve
from gossamer.xds.types import CLUSTER, LISTENER
from tests.unit.test_ads import Client, cluster, config

TIMEOUT = 5.0


async def test_post_runs_in_order_on_the_thread_and_call_returns_its_result() -> None:
    xds = XdsThread()
    xds.start()
    try:
        seen: list[tuple[int, str]] = []

        def record(i: int) -> None:
            seen.append((i, threading.current_thread().name))

        for i in range(100):
            xds.post(functools.partial(record, i))

        async def last() -> list[tuple[int, str]]:
            return list(seen)

        got = await xds.call(last())  # after every callback posted before it
        assert got == [(i, "xds") for i in range(100)]
    finally:
        await asyncio.to_thread(xds.stop)
    assert not xds.running


async def test_streams_on_the_xds_thread_get_what_the_main_loop_writes(tmp_path: Path) -> None:
    main = asyncio.get_running_loop()
    main_thread = threading.current_thread()
    cache = ConfigCache()
    cache.set_group("default", config())
    asked_on: list[threading.Thread] = []
    disconnected_on: list[threading.Thread] = []

    async def group_on_main(node: base_pb2.Node) -> str:
        asked_on.append(threading.current_thread())
        return "default"

    async def group_for_node(node: base_pb2.Node) -> str:
        return await run_on(main, group_on_main(node))

    ads = AdsServer(
        cache,
        group_for_node,
        on_disconnect=lambda _status: disconnected_on.append(threading.current_thread()),
        authenticate=False,
    )
    xds = XdsThread()
    xds.start()
    cache.notify_through(xds.post)
    sock = tmp_path / "xds.sock"
    server = await xds.call(serve(ads, f"unix:{sock}"))
    channel = grpc.aio.insecure_channel(f"unix:{sock}")  # the proxy: on the main loop
    try:
        c = Client(ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel), delta=True)
        await c.send_delta(CLUSTER)
        r = await c.recv()
        assert sorted(x.name for x in r.resources) == ["c1", "c2"]
        assert asked_on == [main_thread]  # the group was worked out on the main loop
        await c.send_delta(CLUSTER, nonce=r.nonce)
        await c.send_delta(LISTENER)
        lr = await c.recv()
        await c.send_delta(LISTENER, nonce=lr.nonce)
        assert await xds.call(ads.wait_synced(None, TIMEOUT))
        assert [p.node_id for p in ads.proxies()] == ["sidecar~1"]  # read from the main thread

        # A change written here (the pusher's thread) reaches the stream on the xDS thread.
        cache.set_group("default", config(cds={"c1": cluster("c1"), "c2": cluster("c2", 5)}))
        r2 = await c.recv()
        assert [x.name for x in r2.resources] == ["c2"]
        assert not await xds.call(ads.wait_synced(None, 0.2))  # not ACKed yet
        await c.send_delta(CLUSTER, nonce=r2.nonce)
        assert await xds.call(ads.wait_synced(None, TIMEOUT))
        await c.close()
        for _ in range(100):
            if disconnected_on:
                break
            await asyncio.sleep(0.02)
        assert [t.name for t in disconnected_on] == ["xds"]  # the control plane hops back to its loop itself
    finally:
        await channel.close()
        await xds.call(server.stop(None))
        await asyncio.to_thread(xds.stop)
