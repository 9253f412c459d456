"""`up --ingress-port-map HOST:GATEWAY`: where the ingress gateway's TCP and TLS-passthrough servers are
on the host's loopback when their own number will not do (issue 11 point 6)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import pytest

from gossamer.agent.bootstrap import proxy_metadata
from gossamer.cli.main import CliError, _ingress_port_map
from gossamer.cli.up import UpOptions, child_argvs
from gossamer.controlplane.paths import Paths
from gossamer.debug.simulate import Request, simulate
from gossamer.mesh import format_ingress_port_map, parse_ingress_port_map
from gossamer.translate import translate_proxy
from gossamer.xds.build import build_resources
from gossamer.xds.types import LISTENER
from tests.support.offline import gateway_proxy, snapshot_from_yaml

GOLDEN = Path(__file__).parent.parent / "golden"


def test_the_flags_form_kubectl_port_forward_order() -> None:
    assert parse_ingress_port_map(["31401:31400", "15444:15443,9001:9000"]) == (
        (31400, 31401),
        (15443, 15444),
        (9000, 9001),
    )
    assert format_ingress_port_map(((31400, 31401), (9000, 9001))) == "31401:31400,9001:9000"
    assert parse_ingress_port_map([]) == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("31400", "expected HOST:GATEWAY"),
        ("a:31400", "expected HOST:GATEWAY"),
        ("0:31400", "ports are 1-65535"),
        ("31401:70000", "ports are 1-65535"),
        ("9080:80", "gateway port 80 is on the host at --ingress-port / --ingress-tls-port"),
        ("9443:8443", "gateway port 8443 is on the host at --ingress-port"),
        ("31401:31400,31402:31400", "gateway port 31400 is mapped twice"),
        ("31401:31400,31401:31500", "host port 31401 is mapped twice"),
    ],
)
def test_bad_maps_are_refused_with_the_item(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ingress_port_map([value])


def test_up_checks_the_map_and_hands_it_to_the_runtime(tmp_path: Path) -> None:
    args = argparse.Namespace(ingress_port=8080, ingress_tls_port=8443, ingress_port_map=["31401:31400"])
    assert _ingress_port_map(args) == ((31400, 31401),)
    with pytest.raises(CliError, match="--ingress-port-map 8443:31400: host port 8443 is the ingress"):
        _ingress_port_map(replace_args(args, ingress_port_map=["8443:31400"]))
    with pytest.raises(CliError, match="--ingress-port-map: '31400': expected HOST:GATEWAY"):
        _ingress_port_map(replace_args(args, ingress_port_map=["31400"]))
    _, runtime = child_argvs(Paths(tmp_path, tmp_path), [], UpOptions(8080, ingress_port_map=((31400, 31401),)))
    argv = runtime(True)
    assert argv[argv.index("--ingress-port-map") + 1] == "31401:31400"
    # ... which the runtime writes into the ingress gateway's node metadata.
    meta = proxy_metadata(
        pod="gw", namespace="istio-system", ip="10.244.0.2", labels={}, service_account="gw", workload="gw",
        proxy_type="router", ingress_port=8080, ingress_port_map=((31400, 31401),),
    )  # fmt: skip
    assert meta["GOSSAMER_INGRESS_PORT_MAP"] == "31401:31400"


def replace_args(args: argparse.Namespace, **changes: object) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), **changes})


def tcp(address: str, port: int) -> Request:
    return Request(host=address, port=port, address=address)


def test_a_mapped_gateway_port_is_on_the_host_at_its_host_port_only() -> None:
    snapshot = snapshot_from_yaml((GOLDEN / "gateway-tcp-tls" / "in.yaml").read_text())
    proxy = replace(gateway_proxy(snapshot), ingress_port_map=((31400, 31401),))
    res = build_resources(translate_proxy(snapshot, proxy))
    listeners = res[LISTENER]
    assert "ingress_127.0.0.1_31401" in listeners and "ingress_127.0.0.1_31400" not in listeners
    assert listeners["ingress_127.0.0.1_31401"].address.socket_address.network_namespace_filepath
    mapped = simulate(res, tcp("127.0.0.1", 31401))
    assert mapped.listener == "ingress_127.0.0.1_31401"
    assert dict(mapped.clusters) == {
        "outbound|9000|v1|tcp-echo.default.svc.cluster.local": 80,
        "outbound|9000|v2|tcp-echo.default.svc.cluster.local": 20,
    }
    # Inside the pod network the gateway still listens on 31400; 443's passthrough keeps --ingress-tls-port.
    assert simulate(res, tcp("0.0.0.0", 31400)).listener == "0.0.0.0_31400"
    assert "ingress_127.0.0.1_8443" in listeners


def test_a_port_whose_number_a_mapping_took_is_not_on_the_host() -> None:
    snapshot = snapshot_from_yaml((GOLDEN / "gateway-tcp-tls" / "in.yaml").read_text())
    # 31400 itself would be at 31400 on the host; a mapping of another gateway port took that number.
    proxy = replace(gateway_proxy(snapshot), ingress_port_map=((15443, 31400),))
    listeners = build_resources(translate_proxy(snapshot, proxy))[LISTENER]
    assert not any(name.startswith("ingress_127.0.0.1_314") for name in listeners), sorted(listeners)
