"""Simulation tests for TCP and TLS traffic, ServiceEntries and Sidecar resources: where a
connection goes, through the xDS we build (listener -> filter chain -> tcp_proxy clusters)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gossamer.debug.simulate import Request, simulate
from gossamer.translate import translate_proxy
from gossamer.xds.build import build_resources
from tests.support.offline import gateway_proxy, proxy_for, snapshot_from_yaml

GOLDEN = Path(__file__).resolve().parents[1] / "golden"

OTHER_CLIENT = """
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: other}
spec:
  selector: {matchLabels: {app: other}}
  template:
    metadata: {labels: {app: other}}
    spec: {containers: [{name: other, image: x, command: ["true"]}]}
"""


def resources(case: str, deployment: str = "client", extra: str = "") -> dict[str, Any]:
    snapshot = snapshot_from_yaml((GOLDEN / case / "in.yaml").read_text() + extra)
    proxy = gateway_proxy(snapshot) if deployment == "gateway" else proxy_for(snapshot, deployment)
    return build_resources(translate_proxy(snapshot, proxy))


def vip(res: dict[str, Any], host: str, port: int) -> str:
    """The address of the outbound listener whose chains reach `host`'s cluster on `port`."""
    for name in res["type.googleapis.com/envoy.config.listener.v3.Listener"]:
        ip, _, p = name.partition("_")
        if (
            p == str(port)
            and ip not in ("0.0.0.0", "virtualOutbound", "virtualInbound")
            and host in str(simulate(res, Request(host="x", port=port, address=ip)).clusters)
        ):
            return str(ip)
    raise AssertionError(f"no listener for {host}:{port}")


def tcp(address: str, port: int) -> Request:
    return Request(host=address, port=port, address=address)


def tls(sni: str, address: str, port: int = 443) -> Request:
    return Request(host=sni, port=port, address=address, scheme="https")


# ---------------------------------------------------------------------------- tcp routes


def test_tcp_route_splits_80_20() -> None:
    res = resources("tcp-routes")
    result = simulate(res, tcp(vip(res, "tcp-echo", 9000), 9000))
    assert result.listener.endswith("_9000")
    assert dict(result.clusters) == {
        "outbound|9000|v1|tcp-echo.default.svc.cluster.local": 80,
        "outbound|9000|v2|tcp-echo.default.svc.cluster.local": 20,
    }


def test_tcp_source_labels_apply_to_matching_clients_only() -> None:
    res = resources("tcp-routes", "other", OTHER_CLIENT)
    result = simulate(res, tcp(vip(res, "tcp-echo", 9000), 9000))
    assert result.cluster == "outbound|9000|v2|tcp-echo.default.svc.cluster.local"


def test_tcp_destination_subnets_become_a_chain_match() -> None:
    res = resources("tcp-routes")
    address = vip(res, "tcp-echo", 9001)
    assert simulate(res, tcp(address, 9001)).cluster == "outbound|9001|v2|tcp-echo.default.svc.cluster.local"


def test_tcp_service_without_virtual_service_goes_to_its_cluster() -> None:
    res = resources("tcp-routes")
    result = simulate(res, tcp(vip(res, "mongo", 27017), 27017))
    assert result.cluster == "outbound|27017||mongo.default.svc.cluster.local"


def test_unknown_tcp_destination_passes_through() -> None:
    assert simulate(resources("tcp-routes"), tcp("10.244.9.9", 5555)).cluster == "PassthroughCluster"


# ---------------------------------------------------------------------------- tls routes


def test_tls_sni_routes_on_the_wildcard_listener() -> None:
    res = resources("tls-sni-passthrough")
    en = simulate(res, tls("en.wikipedia.org", "203.0.113.7"))
    assert en.listener == "0.0.0.0_443" and en.cluster == "outbound|443||*.wikipedia.org"
    assert simulate(res, tls("de.wikipedia.org", "203.0.113.7")).cluster == "outbound|8443||api.example.com"


def test_tls_unknown_sni_falls_to_passthrough() -> None:
    res = resources("tls-sni-passthrough")
    assert simulate(res, tls("example.com", "203.0.113.7")).cluster == "PassthroughCluster"
    # No SNI at all (plain TCP to port 443) too.
    assert simulate(res, tcp("203.0.113.7", 443)).cluster == "PassthroughCluster"


def test_tls_sni_on_a_service_address() -> None:
    res = resources("tls-sni-passthrough")
    address = vip(res, "secure", 443)
    secure = "secure.default.svc.cluster.local"
    assert simulate(res, tls("secure.example.com", address)).cluster == f"outbound|443|v1|{secure}"
    assert simulate(res, tls("other.example.com", address)).cluster == f"outbound|443||{secure}"


# ---------------------------------------------------------------------------- ServiceEntry


def test_http_service_entry_by_host_name() -> None:
    res = resources("service-entries")
    result = simulate(res, Request(host="external.example.com:8000", port=8000, address="10.96.0.13"))
    assert result.virtual_host == "external.example.com:8000"
    assert result.cluster == "outbound|8000||external.example.com"


def test_dns_service_entry_shares_a_port_with_other_services() -> None:
    res = resources("service-entries")
    result = simulate(res, Request(host="httpbin.example.org", port=80, address="10.96.0.14"))
    assert result.cluster == "outbound|80||httpbin.example.org"


def test_service_entry_selecting_workload_entries() -> None:
    res = resources("service-entries")
    result = simulate(res, Request(host="vm.mesh.internal:9080", port=9080, address="10.96.0.16"))
    assert result.cluster == "outbound|9080||vm.mesh.internal"
    cla = res["type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"]["outbound|9080||vm.mesh.internal"]
    addresses = [
        (e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value)
        for loc in cla.endpoints
        for e in loc.lb_endpoints
    ]
    assert addresses == [("10.244.0.1", 19080)]


def test_tcp_service_entry_addresses_and_cidrs() -> None:
    res = resources("service-entries")
    assert simulate(res, tcp("192.168.10.10", 3306)).cluster == "outbound|3306||legacy.internal"
    assert simulate(res, tcp("10.10.3.4", 3306)).cluster == "outbound|3306||legacy.internal"
    assert simulate(res, tcp("10.11.0.1", 3306)).cluster == "PassthroughCluster"


def test_service_entry_export_to_hides_it_from_other_namespaces() -> None:
    res = resources("service-entries")
    result = simulate(res, Request(host="private.example.com", port=80, address="10.96.0.99"))
    assert result.virtual_host == "allow_any"


# ---------------------------------------------------------------------------- Sidecar


def test_registry_only_blocks_unknown_http_hosts_with_502() -> None:
    res = resources("sidecar-registry-only")
    result = simulate(res, Request(host="example.com", port=80, address="203.0.113.7"))
    assert result.virtual_host == "block_all" and result.status == 502


def test_registry_only_blocks_unknown_tcp_destinations() -> None:
    res = resources("sidecar-registry-only")
    assert simulate(res, tcp("203.0.113.7", 5555)).cluster == "BlackHoleCluster"


def test_registry_only_still_reaches_registered_services() -> None:
    res = resources("sidecar-registry-only")
    assert (
        simulate(res, Request(host="reviews:9080", port=9080)).cluster
        == "outbound|9080||reviews.default.svc.cluster.local"
    )
    assert simulate(res, Request(host="external.example.com", port=80)).cluster == "outbound|80||external.example.com"


def test_sidecar_egress_hosts_hide_other_namespaces() -> None:
    res = resources("sidecar-registry-only")
    result = simulate(res, Request(host="ratings.other:9080", port=9080))
    assert result.virtual_host == "block_all" and result.status == 502


def test_workload_sidecar_wins_over_the_namespace_default() -> None:
    res = resources("sidecar-registry-only", "legacy")
    assert simulate(res, Request(host="example.com", port=80, address="203.0.113.7")).cluster == "PassthroughCluster"
    assert simulate(res, tcp("203.0.113.7", 5555)).cluster == "PassthroughCluster"
    # No egress restriction on the workload's own Sidecar: the other namespace is visible.
    assert (
        simulate(res, Request(host="ratings.other:9080", port=9080)).cluster
        == "outbound|9080||ratings.other.svc.cluster.local"
    )


# ---------------------------------------------------------------------------- gateway


def test_gateway_tcp_server_splits_80_20() -> None:
    res = resources("gateway-tcp-tls", "gateway")
    result = simulate(res, tcp("0.0.0.0", 31400))
    assert result.listener == "0.0.0.0_31400"
    assert dict(result.clusters) == {
        "outbound|9000|v1|tcp-echo.default.svc.cluster.local": 80,
        "outbound|9000|v2|tcp-echo.default.svc.cluster.local": 20,
    }


def test_gateway_tls_passthrough_by_sni() -> None:
    res = resources("gateway-tcp-tls", "gateway")
    result = simulate(res, tls("nginx.example.com", "0.0.0.0", 8443))
    assert result.cluster == "outbound|443||nginx.default.svc.cluster.local"


def test_gateway_tcp_and_tls_passthrough_servers_on_their_container_ports() -> None:
    """The ingress gateway's L4 servers listen in its pod (Istio's ingress Service ports): 31400 at its
    own number, 443's passthrough at 8443; the runtime forwards the host's 127.0.0.1 ports to them."""
    res = resources("gateway-tcp-tls", "gateway")
    tcp_pod = simulate(res, tcp("0.0.0.0", 31400))
    assert tcp_pod.listener == "0.0.0.0_31400"
    assert dict(tcp_pod.clusters) == {
        "outbound|9000|v1|tcp-echo.default.svc.cluster.local": 80,
        "outbound|9000|v2|tcp-echo.default.svc.cluster.local": 20,
    }
    tls_pod = simulate(res, tls("nginx.example.com", "0.0.0.0", 8443))
    assert tls_pod.listener == "0.0.0.0_8443"
    assert tls_pod.cluster == "outbound|443||nginx.default.svc.cluster.local"
    listeners = res["type.googleapis.com/envoy.config.listener.v3.Listener"]
    assert not any(lis.address.socket_address.network_namespace_filepath for lis in listeners.values())
