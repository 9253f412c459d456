"""Envoy itself accepts what we build: every golden case's xDS output, as a static bootstrap,
passes `envoy --mode validate` (no sockets are bound, nothing is started).

RDS route tables are inlined into their HTTP connection managers and EDS clusters become
STATIC clusters carrying their endpoints, so listeners, routes (with their per-filter
configs) and clusters are all validated.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from gossamer.agent.bootstrap import zipkin_cluster
from gossamer.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from tests.e2e.envoy_helper import envoy_binary
from tests.golden.test_golden import CASES, build_case

ENVOY = envoy_binary()
HCM = "envoy.filters.network.http_connection_manager"


def _inline_routes(listener: listener_pb2.Listener, routes: dict[str, Message]) -> None:
    chains = [*listener.filter_chains]
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        for f in chain.filters:
            if f.name != HCM:
                continue
            hcm = hcm_pb2.HttpConnectionManager()
            f.typed_config.Unpack(hcm)
            if hcm.HasField("rds"):
                table = routes[hcm.rds.route_config_name]
                assert isinstance(table, route_pb2.RouteConfiguration)
                hcm.route_config.CopyFrom(table)
                f.typed_config.Pack(hcm)


def _static_secret_refs(listener: listener_pb2.Listener) -> None:
    """Secrets the control plane serves over ADS (gateway credentials) become references to the
    bootstrap's static secrets (a static bootstrap has no ADS), so Envoy validates their content too."""
    for chain in listener.filter_chains:
        if chain.transport_socket.name != "envoy.transport_sockets.tls":
            continue
        context = tls_pb2.DownstreamTlsContext()
        if not chain.transport_socket.typed_config.Unpack(context):
            continue
        common = context.common_tls_context
        configs = [*common.tls_certificate_sds_secret_configs]
        if common.HasField("combined_validation_context"):
            configs.append(common.combined_validation_context.validation_context_sds_secret_config)
        for config in configs:
            if config.sds_config.HasField("ads"):
                config.ClearField("sds_config")
        chain.transport_socket.typed_config.Pack(context)


def static_bootstrap(resources: dict[str, dict[str, Message]]) -> bootstrap_pb2.Bootstrap:
    out = bootstrap_pb2.Bootstrap()
    for secret in resources.get(SECRET, {}).values():
        assert isinstance(secret, secret_pb2.Secret)
        out.static_resources.secrets.append(secret)
    out.node.id = "validate"
    out.node.cluster = "gossamer-test"
    for msg in resources[LISTENER].values():
        listener = listener_pb2.Listener()
        listener.CopyFrom(msg)
        _inline_routes(listener, resources[ROUTE])
        _static_secret_refs(listener)
        out.static_resources.listeners.append(listener)
    for name, msg in resources[CLUSTER].items():
        cluster = cluster_pb2.Cluster()
        cluster.CopyFrom(msg)
        if cluster.type == cluster_pb2.Cluster.EDS:
            cluster.ClearField("eds_cluster_config")
            cluster.type = cluster_pb2.Cluster.STATIC
            assignment = resources[ENDPOINT].get(name)
            if assignment is not None:
                assert isinstance(assignment, endpoint_pb2.ClusterLoadAssignment)
                cluster.load_assignment.CopyFrom(assignment)
        out.static_resources.clusters.append(cluster)
    out.static_resources.clusters.append(sds_grpc_cluster())
    # The bootstrap's `zipkin` cluster (the control plane's span collector) that HCM tracing names.
    out.static_resources.clusters.append(
        json_format.ParseDict(zipkin_cluster(Path("/tmp/gossamer-validate-zipkin.sock")), cluster_pb2.Cluster())
    )
    return out


def sds_grpc_cluster() -> cluster_pb2.Cluster:
    """What the agent's bootstrap provides: the SDS server (a unix socket, HTTP/2) that mTLS refers to."""
    cluster = cluster_pb2.Cluster(name="sds-grpc", type=cluster_pb2.Cluster.STATIC)
    cluster.connect_timeout.FromSeconds(1)
    cluster.load_assignment.cluster_name = "sds-grpc"
    endpoint = cluster.load_assignment.endpoints.add().lb_endpoints.add().endpoint
    endpoint.address.pipe.path = "/tmp/gossamer-validate-sds.sock"
    options = http_protocol_options_pb2.HttpProtocolOptions()
    options.explicit_http_config.http2_protocol_options.SetInParent()
    cluster.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].Pack(options)
    return cluster


@pytest.mark.skipif(ENVOY is None, reason="no envoy binary")
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_envoy_accepts_golden_case(case: Path, tmp_path: Path) -> None:
    assert ENVOY is not None
    config = tmp_path / "bootstrap.json"
    config.write_text(json_format.MessageToJson(static_bootstrap(build_case(case))))
    proc = subprocess.run(
        [ENVOY, "--mode", "validate", "-c", str(config), "-l", "error"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"{case.name}: envoy rejected the config:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.skipif(ENVOY is None, reason="no envoy binary")
def test_envoy_validate_rejects_a_broken_route(tmp_path: Path) -> None:
    """The harness really validates inlined routes: a fault delay without a delay is rejected."""
    assert ENVOY is not None
    from envoy.extensions.filters.http.fault.v3 import fault_pb2

    case = next(c for c in CASES if c.name == "http-policies")
    resources = build_case(case)
    table = resources[ROUTE]["9080"]
    assert isinstance(table, route_pb2.RouteConfiguration)
    broken = fault_pb2.HTTPFault()
    broken.delay.percentage.numerator = 10  # no fixed_delay / header_delay: invalid
    table.virtual_hosts[0].routes[0].typed_per_filter_config["envoy.filters.http.fault"].Pack(broken)
    config = tmp_path / "bootstrap.json"
    config.write_text(json_format.MessageToJson(static_bootstrap(resources)))
    proc = subprocess.run(
        [ENVOY, "--mode", "validate", "-c", str(config), "-l", "error"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
