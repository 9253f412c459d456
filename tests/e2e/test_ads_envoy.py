"""A real Envoy driven by the Gossamer ADS server: ACK, NACK with Envoy's error, recovery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf.message import Message

from gossamer.xds.cache import ConfigCache
from gossamer.xds.server import AdsServer, serve
from gossamer.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.e2e.envoy_helper import EnvoyProcess, envoy_binary, fetch_body, fetch_until, free_port, start_envoy_on_ads

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(envoy_binary() is None, reason="no envoy binary")]

NODE = "sidecar~127.0.0.1~test.default~default.svc.cluster.local"
GROUP = "default"


def eds_cluster(name: str) -> cluster_pb2.Cluster:
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    c.connect_timeout.seconds = 1
    c.eds_cluster_config.eds_config.ads.SetInParent()
    c.eds_cluster_config.eds_config.resource_api_version = config_source_pb2.V3
    return c


def cla(name: str, port: int) -> endpoint_pb2.ClusterLoadAssignment:
    a = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    sa = a.endpoints.add().lb_endpoints.add().endpoint.address.socket_address
    sa.address = "127.0.0.1"
    sa.port_value = port
    return a


def http_listener(name: str, port: int, route_name: str, *, duplicate_chain: bool = False) -> listener_pb2.Listener:
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix=name)
    hcm.rds.route_config_name = route_name
    hcm.rds.config_source.ads.SetInParent()
    hcm.rds.config_source.resource_api_version = config_source_pb2.V3
    hcm.http_filters.add(name="envoy.filters.http.router").typed_config.Pack(router_pb2.Router())
    lis = listener_pb2.Listener(name=name)
    lis.address.socket_address.address = "127.0.0.1"
    lis.address.socket_address.port_value = port
    for _ in range(2 if duplicate_chain else 1):
        # Two chains with identical (empty) matches: Envoy rejects the listener.
        lis.filter_chains.add().filters.add(name="envoy.filters.network.http_connection_manager").typed_config.Pack(hcm)
    return lis


def direct_route(name: str, body: str) -> route_pb2.RouteConfiguration:
    rc = route_pb2.RouteConfiguration(name=name)
    vh = rc.virtual_hosts.add(name="all", domains=["*"])
    r = vh.routes.add()
    r.match.prefix = "/"
    r.direct_response.status = 200
    r.direct_response.body.inline_string = body
    return rc


def config(port: int, body: str, *, bad_listener: bool = False) -> dict[str, Mapping[str, Message]]:
    return {
        CLUSTER: {"backend": eds_cluster("backend")},
        ENDPOINT: {"backend": cla("backend", 1)},
        LISTENER: {"web": http_listener("web", port, "web-routes", duplicate_chain=bad_listener)},
        ROUTE: {"web-routes": direct_route("web-routes", body)},
    }


@dataclass
class Setup:
    cache: ConfigCache
    ads: AdsServer
    envoy: EnvoyProcess
    port: int
    server: grpc.aio.Server
    xds_sock: Path
    delta: bool


@pytest.fixture(params=[False, True], ids=["sotw", "delta"])
async def setup(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Setup]:
    cache = ConfigCache()
    port = free_port()

    async def group_for_node(node: base_pb2.Node) -> str:
        # Like the control plane: translate a brand-new group before answering.
        if not cache.has_group(GROUP):
            cache.set_group(GROUP, config(port, "v1"))
        return GROUP

    ads = AdsServer(cache, group_for_node, authenticate=False)  # plaintext: no identity to check
    xds_sock = tmp_path / "xds.sock"
    server: grpc.aio.Server = await serve(ads, f"unix:{xds_sock}")
    envoy = await start_envoy_on_ads(NODE, xds_sock, tmp_path, delta=request.param)
    try:
        s = Setup(cache, ads, envoy, port, server, xds_sock, request.param)
        yield s
    finally:
        envoy.stop()
        await s.server.stop(None)


async def test_envoy_ack_nack_and_recover(setup: Setup) -> None:
    s = setup
    assert await s.ads.wait_synced([NODE], 20), s.envoy.log()
    (st,) = s.ads.proxies()
    assert st.node_id == NODE and st.group == GROUP and st.delta is s.delta
    assert set(st.types) == {CLUSTER, ENDPOINT, LISTENER, ROUTE}
    assert set(st.synced.values()) == {"SYNCED"}
    assert await fetch_until(s.port, "v1") == "v1"

    # Invalid listener: Envoy NACKs with its error text and keeps serving the old one.
    good_lds = s.cache.version(GROUP, LISTENER)
    assert s.cache.set_group(GROUP, config(s.port, "v1", bad_listener=True)) == {LISTENER}
    for _ in range(100):
        if st.synced[LISTENER] == "NACKED":
            break
        await asyncio.sleep(0.1)
    lds = st.types[LISTENER]
    assert st.synced[LISTENER] == "NACKED", s.envoy.log()
    assert lds.acked_version == good_lds and lds.nacked_version == s.cache.version(GROUP, LISTENER)
    assert lds.error and "web" in lds.error and "filter chain" in lds.error, lds.error
    assert not await s.ads.wait_synced([NODE], 0.5)
    assert await asyncio.to_thread(fetch_body, s.port) == "v1"

    # A valid change (new route body, listener fixed) is ACKed and served.
    s.cache.set_group(GROUP, config(s.port, "v2"))
    assert await s.ads.wait_synced([NODE], 20), s.envoy.log()
    assert st.types[LISTENER].error is None
    assert await fetch_until(s.port, "v2") == "v2"

    # EDS fast path reaches Envoy.
    s.cache.set_endpoints(GROUP, {"backend": cla("backend", 2)})
    assert await s.ads.wait_synced([NODE], 20)
    dump = await asyncio.to_thread(s.envoy.admin, "/clusters")
    assert "backend::127.0.0.1:2::" in dump[1]


async def test_envoy_reconnects_after_control_plane_restart(setup: Setup) -> None:
    """A restarted control plane (same cache content, new server) gets Envoy back in sync."""
    s = setup
    assert await s.ads.wait_synced([NODE], 20), s.envoy.log()
    await s.server.stop(None)
    for _ in range(100):
        if not s.ads.proxies():
            break
        await asyncio.sleep(0.05)
    assert s.ads.proxies() == []
    assert await fetch_until(s.port, "v1") == "v1"  # Envoy keeps its config meanwhile

    disconnected: list[str] = []
    ads2 = AdsServer(
        s.cache, lambda node: _group(), on_disconnect=lambda st: disconnected.append(st.node_id), authenticate=False
    )
    s.server = await serve(ads2, f"unix:{s.xds_sock}")  # the old socket file is replaced
    assert await ads2.wait_synced([NODE], 30), s.envoy.log()
    s.cache.set_group(GROUP, config(s.port, "v3"))
    assert await ads2.wait_synced([NODE], 20), s.envoy.log()
    assert await fetch_until(s.port, "v3") == "v3"

    s.envoy.stop()
    for _ in range(100):
        if disconnected:
            break
        await asyncio.sleep(0.05)
    assert disconnected == [NODE] and ads2.proxies() == []


async def _group() -> str:
    return GROUP
