"""The Envoy bootstrap written by gossamer.agent: shape, and the real Envoy accepts it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gossamer.agent import (
    build_bootstrap,
    envoy_args,
    envoy_binary,
    proxy_metadata,
    service_cluster,
    write_bootstrap,
)
from gossamer.agent.envoy import as_proxy_user
from gossamer.mesh import PROXY_GROUP, node_id


def _bootstrap(tmp_path: Path, proxy_type: str = "sidecar", sds: bool = False) -> dict[str, Any]:
    labels = {"app": "reviews", "version": "v1"}
    meta = proxy_metadata(
        pod="reviews-v1-abc",
        namespace="default",
        ip="10.244.0.7",
        labels=labels,
        service_account="bookinfo-reviews",
        workload="reviews-v1",
        proxy_type=proxy_type,  # type: ignore[arg-type]
    )
    return build_bootstrap(
        node_id=node_id(proxy_type, "10.244.0.7", "reviews-v1-abc", "default"),
        cluster=service_cluster(labels, "reviews-v1", "default"),
        metadata=meta,
        xds_socket=tmp_path / "xds.sock",
        admin_socket=tmp_path / "admin.sock",
        sds_socket=tmp_path / "sds.sock" if sds else None,
    )


def test_ads_over_mtls_with_the_workload_certificate_when_the_pod_has_an_agent(tmp_path: Path) -> None:
    def xds_cluster(b: dict[str, Any]) -> dict[str, Any]:
        return next(c for c in b["static_resources"]["clusters"] if c["name"] == "xds-grpc")

    assert "transport_socket" not in xds_cluster(_bootstrap(tmp_path))
    tls = xds_cluster(_bootstrap(tmp_path, sds=True))["transport_socket"]["typed_config"]
    assert tls["sni"] == "istiod.istio-system.svc"
    common = tls["common_tls_context"]
    assert [s["name"] for s in common["tls_certificate_sds_secret_configs"]] == ["default"]
    validation = common["combined_validation_context"]
    assert validation["validation_context_sds_secret_config"]["name"] == "ROOTCA"
    assert validation["default_validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "istiod.istio-system.svc"}}
    ]
    sds_source = common["tls_certificate_sds_secret_configs"][0]["sds_config"]["api_config_source"]
    assert sds_source["grpc_services"] == [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]


def test_node_identity(tmp_path: Path) -> None:
    b = _bootstrap(tmp_path)
    node = b["node"]
    assert node["id"] == "sidecar~10.244.0.7~reviews-v1-abc.default~default.svc.cluster.local"
    assert node["cluster"] == "reviews.default"
    meta = node["metadata"]
    assert meta["NAMESPACE"] == "default"
    assert meta["NAME"] == meta["POD_NAME"] == "reviews-v1-abc"
    assert meta["LABELS"] == {"app": "reviews", "version": "v1"}
    assert meta["SERVICE_ACCOUNT"] == "bookinfo-reviews"
    assert meta["INSTANCE_IPS"] == "10.244.0.7"
    assert meta["WORKLOAD_NAME"] == "reviews-v1"
    assert meta["CLUSTER_ID"] == "Kubernetes"
    assert meta["MESH_ID"] == "cluster.local"
    assert "GOSSAMER_HOST_NETNS" not in meta
    assert all(isinstance(v, str) for k, v in meta.items() if k != "LABELS")


def test_service_cluster_falls_back_to_workload() -> None:
    assert service_cluster({}, "ratings-v1", "ns1") == "ratings-v1.ns1"


def test_router_metadata(tmp_path: Path) -> None:
    b = _bootstrap(tmp_path, "router")
    assert b["node"]["id"].startswith("router~10.244.0.7~")
    meta = b["node"]["metadata"]
    # A gateway binds in its own pod only (the runtime forwards the host's ports): nothing about the host.
    assert meta["INTERCEPTION_MODE"] == "NONE"
    assert not [k for k in meta if k.startswith(("GOSSAMER_HOST", "GOSSAMER_INGRESS"))], meta


def test_ads_and_static_resources(tmp_path: Path) -> None:
    b = _bootstrap(tmp_path)
    dyn = b["dynamic_resources"]
    ads = dyn["ads_config"]
    assert ads["api_type"] == "DELTA_GRPC" and ads["transport_api_version"] == "V3"  # incremental, as Istio
    # A restarted control plane is reconnected to within half a second (Envoy's default back-off: up to 30 s).
    assert ads["grpc_services"] == [
        {
            "envoy_grpc": {
                "cluster_name": "xds-grpc",
                "retry_policy": {"retry_back_off": {"base_interval": "0.1s", "max_interval": "0.5s"}},
            }
        }
    ]
    assert ads["set_node_on_first_message_only"] is True
    for key in ("lds_config", "cds_config"):
        assert dyn[key]["ads"] == {} and dyn[key]["resource_api_version"] == "V3"
    clusters = {c["name"]: c for c in b["static_resources"]["clusters"]}
    xds = clusters["xds-grpc"]
    assert xds["type"] == "STATIC" and xds["connect_timeout"] == "1s"
    opts = xds["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert opts["explicit_http_config"] == {"http2_protocol_options": {}}
    ep = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert ep["address"] == {"pipe": {"path": str(tmp_path / "xds.sock")}}
    assert b["admin"]["address"]["pipe"]["path"] == str(tmp_path / "admin.sock")
    prom = clusters["prometheus_stats"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert prom["address"]["pipe"]["path"] == str(tmp_path / "admin.sock")
    ports = {ls["address"]["socket_address"]["port_value"] for ls in b["static_resources"]["listeners"]}
    assert ports == {15090, 15021}


def test_envoy_command_line(tmp_path: Path) -> None:
    argv = as_proxy_user(envoy_args(tmp_path / "envoy.json", binary=Path("/bin/envoy")), 1337000005)
    assert argv[:7] == ["setpriv", "--reuid", "1337000005", "--regid", "1337000005", "--groups", str(PROXY_GROUP)]
    assert "--bounding-set=-all" in argv and "--no-new-privs" in argv
    assert argv[argv.index("-c") + 1] == str(tmp_path / "envoy.json")
    assert "--disable-hot-restart" in argv
    assert argv[argv.index("--concurrency") + 1] == "1"


@pytest.mark.parametrize("proxy_type", ["sidecar", "router"])
@pytest.mark.parametrize("sds", [False, True], ids=["plain", "mtls"])
def test_envoy_validates_bootstrap(tmp_path: Path, proxy_type: str, sds: bool) -> None:
    try:
        binary = envoy_binary()
    except FileNotFoundError:
        pytest.skip("envoy binary not installed")
    path = write_bootstrap(tmp_path / "envoy.json", _bootstrap(tmp_path, proxy_type, sds))
    assert json.loads(path.read_text())["node"]["cluster"] == "reviews.default"
    result = subprocess.run(
        [str(binary), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr
