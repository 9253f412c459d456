"""LocalRuntime pods driven by the real Gossamer ADS server over the unix socket.

* a sidecar Envoy (uid 1337, behind the capture rules) gets LDS/CDS, goes LIVE -> proxy_ready;
  the app's outbound TCP to another pod is redirected to the 15001 listener;
* an ingress gateway Envoy (its pod's proxy user) listens on 0.0.0.0:8080 in its pod, and the runtime
  forwards the host's 127.0.0.1:<ingress port> to it once the listener is there.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import urllib.request
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from gossamer.runtime.local import LocalRuntime
from gossamer.runtime.types import DeploymentSpec

from .test_runtime_support import eventually, http_server_deployment, in_pod, requires_root_netns, short_run_dir

xds = pytest.importorskip("gossamer.xds.server")
pytest.importorskip("gossamer.xds.cache")
from envoy.config.cluster.v3 import cluster_pb2  # noqa: E402
from envoy.config.core.v3 import base_pb2  # noqa: E402
from envoy.config.listener.v3 import listener_pb2  # noqa: E402
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: E402
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: E402
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.message import Message  # noqa: E402

from gossamer.xds.cache import ConfigCache  # noqa: E402
from gossamer.xds.server import AdsServer, serve  # noqa: E402
from gossamer.xds.types import CLUSTER, LISTENER  # noqa: E402

pytestmark = [pytest.mark.e2e, requires_root_netns]


def direct_listener(name: str, address: str, port: int, body: str) -> listener_pb2.Listener:
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix=name)
    vh = hcm.route_config.virtual_hosts.add(name="all", domains=["*"])
    r = vh.routes.add()
    r.match.prefix = "/"
    r.direct_response.status = 200
    r.direct_response.body.inline_string = body
    hcm.http_filters.add(name="envoy.filters.http.router").typed_config.Pack(router_pb2.Router())
    lis = listener_pb2.Listener(name=name)
    lis.address.socket_address.address = address
    lis.address.socket_address.port_value = port
    lis.filter_chains.add().filters.add(name="envoy.filters.network.http_connection_manager").typed_config.Pack(hcm)
    return lis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[LocalRuntime, ConfigCache, int]]:
    run_dir = short_run_dir()
    ingress_port = free_port()
    cache = ConfigCache()
    blackhole = cluster_pb2.Cluster(name="BlackHoleCluster", type=cluster_pb2.Cluster.STATIC)
    blackhole.connect_timeout.seconds = 1

    async def group_for_node(node: base_pb2.Node) -> str:
        resources: dict[str, Mapping[str, Message]]
        if node.id.startswith("router~"):
            # Named as the gateway translation names its listeners: the runtime forwards those.
            resources = {
                CLUSTER: {"BlackHoleCluster": blackhole},
                LISTENER: {"0.0.0.0_8080": direct_listener("0.0.0.0_8080", "0.0.0.0", 8080, "via-gateway")},
            }
        else:
            resources = {
                CLUSTER: {"BlackHoleCluster": blackhole},
                LISTENER: {"virtualOutbound": direct_listener("virtualOutbound", "0.0.0.0", 15001, "via-sidecar")},
            }
        cache.set_group(node.id, resources)
        return str(node.id)

    ads = AdsServer(cache, group_for_node, authenticate=False)  # plaintext: no identity to check
    xds_socket = run_dir / "xds.sock"
    server = await serve(ads, f"unix:{xds_socket}")
    rt = LocalRuntime(state_dir=tmp_path / "state", run_dir=run_dir, xds_socket=xds_socket, ingress_port=ingress_port)
    await rt.start()
    try:
        yield rt, cache, ingress_port
    finally:
        await rt.stop()
        await server.stop(None)
        shutil.rmtree(run_dir, ignore_errors=True)


async def test_sidecar_goes_live_and_captures_outbound(cluster: tuple[LocalRuntime, ConfigCache, int]) -> None:
    rt, _, _ = cluster
    await rt.apply(
        [
            http_server_deployment("meshed", 9000, inject_sidecar=True, probe="tcp"),
            http_server_deployment("plain", 8000),
        ],
        [],
    )
    await eventually(lambda: all(p.ready for p in rt.pods()) and len(rt.pods()) == 2, what="both pods ready")
    meshed = rt.pod("deploy/meshed")
    assert meshed.proxy_ready and meshed.has_sidecar
    code, body = await rt.admin_get(meshed.name, "default", "/ready")
    assert (code, body.strip()) == (200, "LIVE")
    plain = rt.pod("deploy/plain")
    ns = rt.netns_name(meshed.name, "default")
    # The app's outbound connection lands on Envoy's 15001 listener instead of the plain pod.
    r = await asyncio.to_thread(in_pod, ns, "curl", "-sS", "-m", "5", f"http://{plain.ip}:8000/")
    assert r.stdout == "via-sidecar", r
    # Prometheus stats through the static :15090 listener (not captured: excluded inbound port).
    plain_ns = rt.netns_name(plain.name, "default")
    r = await asyncio.to_thread(
        in_pod, plain_ns, "curl", "-sS", "-m", "5", f"http://{meshed.ip}:15090/stats/prometheus"
    )
    assert "envoy_server_live" in r.stdout, r
    r = await asyncio.to_thread(in_pod, plain_ns, "curl", "-sS", "-m", "5", f"http://{meshed.ip}:15021/healthz/ready")
    assert r.stdout.strip() == "LIVE", r


async def test_ingress_gateway_on_the_hosts_loopback(cluster: tuple[LocalRuntime, ConfigCache, int]) -> None:
    rt, _, ingress_port = cluster
    gw = DeploymentSpec(
        name="istio-ingressgateway",
        namespace="istio-system",
        replicas=1,
        labels=(("app", "istio-ingressgateway"), ("istio", "ingressgateway")),
        annotations=(),
        service_account="istio-ingressgateway-service-account",
        containers=(),
        proxy_type="router",
    )
    await rt.apply([gw], [])
    await eventually(lambda: rt.pods()[0].ready, what="gateway ready")

    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{ingress_port}/", timeout=2) as resp:  # noqa: S310
            return str(resp.read().decode())

    assert await asyncio.to_thread(get) == "via-gateway"
