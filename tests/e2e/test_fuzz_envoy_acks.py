"""Accepted means Envoy accepts, with a real Envoy: a sample of mutated manifests that validation
accepted (the fuzz corpus: samples and golden cases, `tests/fuzz/mutate.py`) is translated for every
proxy and pushed over ADS to one Envoy, which must ACK every resource of every proxy's config.

Listeners are sent with `bind_to_port: false` (and no host network namespace), so nothing binds on
this machine; everything else is exactly what the proxies would receive."""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from envoy.config.listener.v3 import listener_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from gossamer.agent.bootstrap import build_bootstrap, zipkin_cluster
from gossamer.xds.cache import ConfigCache
from gossamer.xds.server import AdsServer, serve
from gossamer.xds.types import LISTENER
from tests.e2e.envoy_helper import EnvoyProcess, ads_bootstrap, envoy_binary, start_envoy
from tests.fuzz import mutate, pipeline
from tests.unit.test_envoy_accepts import sds_grpc_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(envoy_binary() is None, reason="no envoy binary")]

NODE = "sidecar~127.0.0.1~fuzz.default~default.svc.cluster.local"
GROUP = "fuzz"
SAMPLE = 12  # accepted mutated manifests
Resources = dict[str, dict[str, Message]]


@functools.cache
def accepted_sample() -> list[tuple[int, str, list[Resources]]]:
    """(seed, source, built config per proxy) of the first SAMPLE mutations that validation accepts."""
    sources = mutate.corpus()
    out: list[tuple[int, str, list[Resources]]] = []
    for seed in range(20_000):
        rng = random.Random(seed)
        name, text = rng.choice(sources)
        changed = mutate.mutate(rng, text)
        if changed == text:
            continue
        outcome = pipeline.run([(name, changed)], envoy_rules=True, keep_built=True)
        if outcome.stage == "accepted" and outcome.built:
            out.append((seed, name, outcome.built))
            if len(out) == SAMPLE:
                break
    return out


def unbound(resources: Resources) -> Resources:
    """The same config with listeners that bind nothing (this machine's ports are not ours to take)."""
    out = dict(resources)
    listeners = {}
    for name, msg in resources.get(LISTENER, {}).items():
        copy = listener_pb2.Listener()
        copy.CopyFrom(msg)
        copy.bind_to_port.value = False
        copy.address.socket_address.ClearField("network_namespace_filepath")
        listeners[name] = copy
    out[LISTENER] = listeners
    return out


@dataclass
class Setup:
    cache: ConfigCache
    ads: AdsServer
    envoy: EnvoyProcess
    server: grpc.aio.Server


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    cache = ConfigCache()
    first = accepted_sample()[0][2][0]
    cache.set_group(GROUP, unbound(first))

    async def group_for_node(_node: object) -> str:
        return GROUP

    ads = AdsServer(cache, group_for_node, authenticate=False)  # plaintext: no identity to check
    xds_sock = tmp_path / "xds.sock"
    server: grpc.aio.Server = await serve(ads, f"unix:{xds_sock}")
    bootstrap = ads_bootstrap(NODE, xds_sock, tmp_path / "admin.sock", delta=True)
    # what the agent's bootstrap gives every proxy: the SDS and Zipkin clusters, RE2's program-size limit
    bootstrap["static_resources"]["clusters"] += [
        json_format.MessageToDict(sds_grpc_cluster(), preserving_proto_field_name=True),
        zipkin_cluster(tmp_path / "zipkin.sock"),
    ]
    agent = build_bootstrap(
        node_id=NODE, cluster="fuzz.default", metadata={}, xds_socket=xds_sock, admin_socket=tmp_path / "admin.sock"
    )
    bootstrap["layered_runtime"] = agent["layered_runtime"]
    envoy = await asyncio.to_thread(start_envoy, bootstrap, tmp_path / "envoy")
    try:
        yield Setup(cache, ads, envoy, server)
    finally:
        envoy.stop()
        await server.stop(None)


async def test_a_sample_of_accepted_mutations_is_acked_by_envoy(setup: Setup) -> None:
    s = setup
    assert await s.ads.wait_synced([NODE], 30), s.envoy.log()
    pushed = 0
    for seed, source, configs in accepted_sample():
        for resources in configs:
            s.cache.set_group(GROUP, unbound(resources))
            synced = await s.ads.wait_synced([NODE], 20)
            (st,) = s.ads.proxies()
            errors = {t: st.types[t].error for t in st.types if st.types[t].error}
            assert synced and not errors, f"seed {seed} ({source}): Envoy did not take it: {errors}\n{s.envoy.log()}"
            pushed += 1
    assert pushed >= SAMPLE  # every accepted config reached Envoy (one push per proxy)
