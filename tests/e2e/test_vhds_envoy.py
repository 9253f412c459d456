"""A real Envoy gets a sidecar's route table over VHDS from the Gossamer ADS server: a changed virtual host
changes where requests go, a removed one stops routing, a rejected one is recorded as Envoy's NACK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

from gossamer.xds.cache import ConfigCache
from gossamer.xds.server import AdsServer, serve
from gossamer.xds.types import LISTENER, ROUTE, vhds_key
from gossamer.xds.vhds import SidecarRouteSplit
from tests.e2e.envoy_helper import EnvoyProcess, envoy_binary, fetch_until, free_port, start_envoy_on_ads
from tests.e2e.test_ads_envoy import http_listener

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(envoy_binary() is None, reason="no envoy binary")]

NODE = "sidecar~127.0.0.1~web.default~default.svc.cluster.local"
GROUP = "sidecar/default/app=web"  # a sidecar's group: its route tables go over VHDS
TABLE = "8000"
VHDS = vhds_key(TABLE)


def vhost(name: str, domain: str, body: str, *, regex: str = "") -> rc.VirtualHost:
    vh = rc.VirtualHost(name=name, domains=[domain])
    r = vh.routes.add()
    if regex:
        r.match.safe_regex.regex = regex
    else:
        r.match.prefix = "/"
    r.direct_response.status = 200
    r.direct_response.body.inline_string = body
    return vh


def config(port: int, **hosts: rc.VirtualHost) -> dict[str, Mapping[str, Message]]:
    table = route_pb2.RouteConfiguration(name=TABLE)
    table.virtual_hosts.append(vhost("allow_any", "*", "fallback"))
    table.virtual_hosts.extend(hosts.values())
    return {LISTENER: {"web": http_listener("web", port, TABLE)}, ROUTE: {TABLE: table}}


@dataclass
class Setup:
    cache: ConfigCache
    ads: AdsServer
    envoy: EnvoyProcess
    port: int
    server: grpc.aio.Server


@pytest.fixture(params=[False, True], ids=["sotw", "delta"])
async def setup(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Setup]:
    cache = ConfigCache(route_split=SidecarRouteSplit())
    port = free_port()
    cache.set_group(GROUP, config(port, a=vhost("a", "a.test", "A1"), b=vhost("b", "b.test", "B1")))

    async def group_for_node(node: base_pb2.Node) -> str:
        return GROUP

    ads = AdsServer(cache, group_for_node, authenticate=False)  # plaintext: no identity to check
    xds_sock = tmp_path / "xds.sock"
    server: grpc.aio.Server = await serve(ads, f"unix:{xds_sock}")
    envoy = await start_envoy_on_ads(NODE, xds_sock, tmp_path, delta=request.param)
    s = Setup(cache, ads, envoy, port, server)
    try:
        yield s
    finally:
        envoy.stop()
        await s.server.stop(None)  # (a test may have replaced it)


async def test_virtual_hosts_over_vhds(setup: Setup) -> None:
    s = setup
    assert await s.ads.wait_synced([NODE], 20), s.envoy.log()
    (st,) = s.ads.proxies()
    assert st.synced[VHDS] == "SYNCED" and st.synced[ROUTE] == "SYNCED"
    assert await fetch_until(s.port, "A1", host="a.test") == "A1"
    assert await fetch_until(s.port, "B1", host="b.test") == "B1"
    assert await fetch_until(s.port, "fallback", host="elsewhere") == "fallback"
    # Envoy got the table's fallback over RDS and the others over VHDS, named after the table.
    (dumped,) = (c["route_config"] for c in s.envoy.config_dump("dynamic_route_configs")["configs"])
    assert "vhds" in dumped
    assert sorted(v["name"] for v in dumped["virtual_hosts"]) == ["8000/a", "8000/b", "allow_any"]

    # One virtual host changed: RDS is not sent again, VHDS sends it and Envoy routes by it.
    rds_sent = st.types[ROUTE].sent_version
    s.cache.set_group(GROUP, config(s.port, a=vhost("a", "a.test", "A2"), b=vhost("b", "b.test", "B1")))
    assert await s.ads.wait_synced([NODE], 20), s.envoy.log()
    assert st.types[ROUTE].sent_version == rds_sent
    assert await fetch_until(s.port, "A2", host="a.test") == "A2"

    # A removed virtual host stops routing: its host falls to the fallback.
    s.cache.set_group(GROUP, config(s.port, a=vhost("a", "a.test", "A2")))
    assert await s.ads.wait_synced([NODE], 20), s.envoy.log()
    assert await fetch_until(s.port, "fallback", host="b.test") == "fallback"
    assert await fetch_until(s.port, "A2", host="a.test") == "A2"

    # A virtual host Envoy rejects: its NACK is in the proxy's status; Envoy keeps what it had.
    bad = vhost("c", "c.test", "C", regex="((")
    s.cache.set_group(GROUP, config(s.port, a=vhost("a", "a.test", "A2"), c=bad))
    for _ in range(100):
        if st.synced.get(VHDS) == "NACKED":
            break
        await asyncio.sleep(0.1)
    assert st.synced[VHDS] == "NACKED", s.envoy.log()
    assert "((" in (st.types[VHDS].error or ""), st.types[VHDS].error
    assert await fetch_until(s.port, "A2", host="a.test") == "A2"

    # Fixed: synced again.
    s.cache.set_group(GROUP, config(s.port, a=vhost("a", "a.test", "A3"), c=vhost("c", "c.test", "C")))
    assert await s.ads.wait_synced([NODE], 20), s.envoy.log()
    assert st.types[VHDS].error is None
    assert await fetch_until(s.port, "C", host="c.test") == "C"
    assert await fetch_until(s.port, "A3", host="a.test") == "A3"


async def test_vhds_resyncs_after_a_control_plane_restart(setup: Setup, tmp_path: Path) -> None:
    """Envoy reopens its VHDS stream to a restarted control plane (maybe before its ADS stream): the proxy is
    in sync again, and the next change reaches it."""
    s = setup
    assert await s.ads.wait_synced([NODE], 20), s.envoy.log()
    await s.server.stop(None)
    assert await fetch_until(s.port, "A1", host="a.test") == "A1"  # Envoy keeps its config meanwhile

    async def group_for_node(node: base_pb2.Node) -> str:
        return GROUP

    ads = AdsServer(s.cache, group_for_node, authenticate=False)
    s.server = await serve(ads, f"unix:{tmp_path / 'xds.sock'}")  # the old socket file is replaced
    assert await ads.wait_synced([NODE], 30), s.envoy.log()
    (st,) = ads.proxies()
    assert st.synced[VHDS] == "SYNCED"
    s.cache.set_group(GROUP, config(s.port, a=vhost("a", "a.test", "A9"), b=vhost("b", "b.test", "B1")))
    assert await ads.wait_synced([NODE], 20), s.envoy.log()
    assert await fetch_until(s.port, "A9", host="a.test") == "A9"
