"""`up --ingress-port-map HOST:GATEWAY`: where the ingress gateway's TCP and TLS-passthrough servers are
on the host's loopback when their own number will not do (issue 11 point 6)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gossamer.cli.main import CliError, _ingress_port_map
from gossamer.cli.up import UpOptions, child_argvs
from gossamer.controlplane.paths import Paths
from gossamer.debug.simulate import Request, simulate
from gossamer.mesh import IngressPortMap, format_ingress_port_map, ingress_host_port, parse_ingress_port_map
from gossamer.runtime.host_ports import nat_rules
from gossamer.translate import translate_proxy
from gossamer.xds.build import build_resources
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


def replace_args(args: argparse.Namespace, **changes: object) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), **changes})


def tcp(address: str, port: int) -> Request:
    return Request(host=address, port=port, address=address)


def host_port(port: int, port_map: IngressPortMap = ()) -> int:
    return ingress_host_port(port, ingress_port=18080, ingress_tls_port=8443, port_map=port_map)


def test_a_mapped_gateway_port_is_on_the_host_at_its_host_port_only() -> None:
    # The gateway listens on 31400 in its pod whatever the map says ...
    snapshot = snapshot_from_yaml((GOLDEN / "gateway-tcp-tls" / "in.yaml").read_text())
    res = build_resources(translate_proxy(snapshot, gateway_proxy(snapshot)))
    assert simulate(res, tcp("0.0.0.0", 31400)).listener == "0.0.0.0_31400"
    # ... and the runtime forwards the host's 127.0.0.1:31401 to it, not 31400.
    assert host_port(31400, ((31400, 31401),)) == 31401
    assert nat_rules([(31401, "10.244.0.9", 31400)]).splitlines()[3] == (
        "-A GSM_INGRESS -d 127.0.0.1/32 -p tcp -m tcp --dport 31401 -j DNAT --to-destination 10.244.0.9:31400"
    )
    # The flags' ports: 8080 (servers on 80) at --ingress-port, 8443 (443) at --ingress-tls-port.
    assert (host_port(8080), host_port(8443), host_port(9000)) == (18080, 8443, 9000)
    assert ingress_host_port(8443, ingress_port=18080, ingress_tls_port=0, port_map=()) == 0  # TLS port off


def test_a_port_whose_number_a_mapping_took_is_not_on_the_host() -> None:
    # 31400 itself would be at 31400 on the host; a mapping of another gateway port took that number.
    assert host_port(31400, ((15443, 31400),)) == 0
    assert host_port(15443, ((15443, 31400),)) == 31400
