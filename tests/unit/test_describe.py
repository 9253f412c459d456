"""`gossamer describe` (gossamer/debug/describe.py) on an offline Bookinfo snapshot."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from gossamer.cli.describe import print_describe
from gossamer.debug.describe import DescribeError, describe, find_workload
from tests.support.offline import snapshot_from_yaml

BOOKINFO = Path(__file__).resolve().parents[2] / "samples/bookinfo"
NET = BOOKINFO / "networking"

POLICIES = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default-strict, namespace: default}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-from-productpage, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/default/sa/bookinfo-productpage"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-only, namespace: default}
spec:
  selector: {matchLabels: {app: ratings}}
  action: DENY
  rules: [{}]
"""


def snapshot(*extra: str) -> Any:
    text = "\n---\n".join(
        [
            (BOOKINFO / "bookinfo.yaml").read_text(),
            (NET / "destination-rule-all.yaml").read_text(),
            (NET / "virtual-service-reviews-test-v2.yaml").read_text(),
            POLICIES,
            *extra,
        ]
    )
    return snapshot_from_yaml(text)


@pytest.fixture(scope="module")
def reviews_v2() -> dict[str, Any]:
    snap = snapshot()
    return describe(snap, find_workload(snap, "deploy/reviews-v2"))


def test_pod_identity_and_labels(reviews_v2: dict[str, Any]) -> None:
    pod = reviews_v2["pod"]
    assert pod["deployment"] == "reviews-v2"
    assert pod["labels"]["version"] == "v2"
    assert pod["serviceAccount"] == "bookinfo-reviews"
    assert pod["identity"] == "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
    assert pod["sidecar"] is True and pod["proxyType"] == "sidecar"


def test_service_virtual_service_and_destination_rule_subset(reviews_v2: dict[str, Any]) -> None:
    [svc] = reviews_v2["services"]
    assert svc["name"] == "reviews" and svc["host"] == "reviews.default.svc.cluster.local"
    assert [(p["port"], p["protocol"]) for p in svc["ports"]] == [(9080, "http")]
    assert svc["virtualServices"]["items"] == ["default/reviews"]
    assert svc["virtualServices"]["effective"] == "default/reviews"
    assert svc["virtualServices"]["warnings"] == []
    dr = svc["destinationRule"]
    assert dr["name"] == "default/reviews"
    assert [s["name"] for s in dr["subsets"]] == ["v1", "v2", "v3"]
    assert dr["podSubsets"] == ["v2"]


def test_peer_authentication_and_authorization(reviews_v2: dict[str, Any]) -> None:
    pa = reviews_v2["peerAuthentication"]
    assert pa["mode"] == "STRICT" and pa["policy"] == "default/default-strict"
    assert pa["ports"] == [{"port": 9080, "mode": "STRICT", "policy": "default/default-strict"}]
    assert reviews_v2["authorizationPolicies"] == [{"name": "default/reviews-from-productpage", "action": "ALLOW"}]
    assert reviews_v2["sidecar"] == {"name": None, "outboundTrafficPolicy": "ALLOW_ANY"}
    assert reviews_v2["gateways"] == []


def test_port_level_mtls_names_the_workload_policy() -> None:
    extra = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews-port, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  portLevelMtls:
    9080: {mode: DISABLE}
"""
    snap = snapshot(extra)
    pa = describe(snap, find_workload(snap, "deploy/reviews-v1"))["peerAuthentication"]
    assert pa["mode"] == "STRICT" and pa["policy"] == "default/default-strict"
    assert pa["ports"] == [{"port": 9080, "mode": "DISABLE", "policy": "default/reviews-port (portLevelMtls)"}]


def test_several_virtual_services_for_one_host_warn_ist0109() -> None:
    snap = snapshot((NET / "virtual-service-reviews-v3.yaml").read_text().replace("name: reviews", "name: reviews-3"))
    vss = describe(snap, find_workload(snap, "deploy/reviews-v2"))["services"][0]["virtualServices"]
    assert vss["items"] == ["default/reviews", "default/reviews-3"]
    assert vss["effective"] == "default/reviews"
    assert vss["warnings"] and vss["warnings"][0].startswith("IST0109")


def test_gateway_pod_lists_its_gateways_and_bound_virtual_services() -> None:
    text = (BOOKINFO / "bookinfo.yaml").read_text() + "\n---\n" + (BOOKINFO / "bookinfo-gateway.yaml").read_text()
    snap = snapshot_from_yaml(text)
    out = describe(snap, find_workload(snap, "deploy/istio-ingressgateway", "istio-system"))
    assert out["pod"]["proxyType"] == "router"
    [gw] = out["gateways"]
    assert gw["name"] == "default/bookinfo-gateway"
    assert gw["virtualServices"] == [{"name": "default/bookinfo", "hosts": ["*"]}]


def test_unknown_pod() -> None:
    with pytest.raises(DescribeError):
        find_workload(snapshot(), "deploy/nope")


def test_printing_keeps_long_names_whole(reviews_v2: dict[str, Any]) -> None:
    buf = io.StringIO()
    print_describe(Console(file=buf, width=40), reviews_v2)
    out = buf.getvalue()
    assert "spiffe://cluster.local/ns/default/sa/bookinfo-reviews" in out
    assert "default/reviews-from-productpage" in out
    assert "STRICT" in out and "v2" in out


MESH_CONFIG = """
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    outboundTrafficPolicy: {mode: REGISTRY_ONLY}
    accessLogEncoding: JSON
    defaultConfig:
      tracing: {sampling: 10}
      holdApplicationUntilProxyStarts: true
"""


def test_mesh_config_options_and_where_they_come_from(reviews_v2: dict[str, Any]) -> None:
    default = reviews_v2["meshConfig"]
    assert default["source"] is None
    assert default["options"]["outboundTrafficPolicy.mode"] == "ALLOW_ANY"
    assert default["options"]["pathNormalization.normalization"] == "BASE"
    snap = snapshot(MESH_CONFIG)
    body = describe(snap, find_workload(snap, "deploy/reviews-v2"))
    mesh = body["meshConfig"]
    assert mesh["source"].startswith("ConfigMap istio-system/istio (")
    assert mesh["options"]["outboundTrafficPolicy.mode"] == "REGISTRY_ONLY"
    assert body["sidecar"]["outboundTrafficPolicy"] == "REGISTRY_ONLY"  # no Sidecar: the mesh config decides
    assert body["telemetry"]["tracing"]["client"] == {"sampling": 10.0, "spans": False}  # no Telemetry: no tracer
    buf = io.StringIO()
    print_describe(Console(file=buf, width=40), body)
    out = buf.getvalue()
    for line in (
        "outboundTrafficPolicy.mode: REGISTRY_ONLY",
        "accessLogEncoding: JSON",
        "defaultConfig.tracing.sampling: 10.0",
        "defaultConfig.holdApplicationUntilProxyStarts: true",
        "trustDomain: cluster.local",
        'accessLogFile: ""',  # Istio's default profile: no access log
    ):
        assert f"   {line}\n" in out, out


def test_secret_summary_shows_the_certificate_not_the_key(tmp_path: Path) -> None:
    import json
    from datetime import UTC, datetime, timedelta

    from gossamer.agent.sds import SdsStreamStatus, issue_workload_certificate
    from gossamer.agent.secret import secret_summary
    from gossamer.cli.describe import print_secret
    from gossamer.security import CertificateAuthority

    identity = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
    cert = issue_workload_certificate(CertificateAuthority(tmp_path / "ca"), identity, timedelta(hours=1))
    out = secret_summary(cert, [SdsStreamStatus(1, "sidecar~x", ("default",), "3", "3")])
    assert out["certificate"]["identity"] == identity
    assert datetime.fromisoformat(out["certificate"]["notAfter"]) > datetime.now(UTC)
    assert int(out["certificate"]["serial"], 16) == cert.serial
    assert len(out["root"]["sha256"].split(":")) == 32
    assert out["streams"][0]["ackedVersion"] == "3"
    assert "PRIVATE KEY" not in json.dumps(out)
    buf = io.StringIO()
    print_secret(Console(file=buf, width=40), {**out, "pod": "reviews-v2-0", "namespace": "default"})
    assert identity in buf.getvalue() and "ACKED" in buf.getvalue()
