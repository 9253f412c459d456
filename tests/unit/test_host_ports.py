"""The runtime's forwarding of the host's 127.0.0.1 ports to the ingress gateway (runtime/host_ports.py):
the rules it writes and the listeners it forwards (the kernel's side is tests/e2e/test_gateway_privilege.py)."""

from __future__ import annotations

from gossamer.runtime.host_ports import guard_rules, ingress_forwards, listener_ports, nat_rules


def test_one_dnat_per_host_port_and_the_loopback_source_takes_the_bridges_address() -> None:
    rules = nat_rules(
        [(18080, "10.244.0.3", 8080), (31400, "10.244.0.3", 31400)], bridge="gsm0", bridge_ip="10.244.0.1"
    )
    assert rules.splitlines() == [
        "*nat",
        ":GSM_INGRESS - [0:0]",
        ":GSM_INGRESS_SNAT - [0:0]",
        "-A GSM_INGRESS -d 127.0.0.1/32 -p tcp -m tcp --dport 18080 -j DNAT --to-destination 10.244.0.3:8080",
        "-A GSM_INGRESS -d 127.0.0.1/32 -p tcp -m tcp --dport 31400 -j DNAT --to-destination 10.244.0.3:31400",
        "-A GSM_INGRESS_SNAT -s 127.0.0.0/8 -o gsm0 -j SNAT --to-source 10.244.0.1",
        "COMMIT",
    ]


def test_two_ingress_pods_share_a_port_as_kube_proxy_would() -> None:
    lines = nat_rules([(18080, "10.244.0.4", 8080), (18080, "10.244.0.3", 8080)]).splitlines()
    assert lines[3:5] == [
        "-A GSM_INGRESS -d 127.0.0.1/32 -p tcp -m tcp --dport 18080 -m statistic --mode random "
        "--probability 0.5000000000 -j DNAT --to-destination 10.244.0.3:8080",
        "-A GSM_INGRESS -d 127.0.0.1/32 -p tcp -m tcp --dport 18080 -j DNAT --to-destination 10.244.0.4:8080",
    ]


def test_nothing_from_the_bridge_to_or_from_the_loopback_network() -> None:
    assert guard_rules("gsm0").splitlines()[2:4] == [
        "-A GSM_INGRESS -i gsm0 -d 127.0.0.0/8 -j DROP",
        "-A GSM_INGRESS -i gsm0 -s 127.0.0.0/8 -j DROP",
    ]


def test_only_the_gateways_own_listeners_are_forwarded() -> None:
    admin = {
        "listener_statuses": [
            {"name": "gossamer_prometheus", "local_address": {"socket_address": {"port_value": 15090}}},
            {"name": "gossamer_health", "local_address": {"socket_address": {"port_value": 15021}}},
            {"name": "0.0.0.0_8080", "local_address": {"socket_address": {"port_value": 8080}}},
            {"name": "0.0.0.0_31400", "local_address": {"socket_address": {"port_value": 31400}}},
        ]
    }
    assert listener_ports(admin) == {8080, 31400}
    assert listener_ports({}) == set()


def test_the_ports_up_names_are_forwarded_from_the_start_the_others_once_listened_on() -> None:
    def forwards(ports: frozenset[int], tls: int = 8443) -> list[tuple[int, str, int]]:
        pods = [("10.244.0.3", ports)]
        return ingress_forwards(pods, ingress_port=18080, ingress_tls_port=tls, port_map=((31500, 31501),))

    # A new gateway pod: --ingress-port, --ingress-tls-port and the map, before any listener exists.
    assert forwards(frozenset()) == [
        (18080, "10.244.0.3", 8080),
        (8443, "10.244.0.3", 8443),
        (31501, "10.244.0.3", 31500),
    ]
    # A TCP server's listener on 31400: at its own number, once there; the TLS port off: 8443 is not.
    assert (31400, "10.244.0.3", 31400) in forwards(frozenset({31400}), tls=0)
    assert not [f for f in forwards(frozenset({31400}), tls=0) if f[2] == 8443]
