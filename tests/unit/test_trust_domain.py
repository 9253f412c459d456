"""The mesh config's trustDomain and trustDomainAliases (issue 11 point 5): Istio's trust domain bundle
rules for principals, the SANs clients accept, inbound mTLS, the ADS identity check, and an agent that
renews its certificate when the trust domain changes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from gossamer.agent.sds import SdsServer
from gossamer.debug.simulate import Request, simulate
from gossamer.ir.authorization import AuthzField
from gossamer.mesh import TrustDomains
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.security import CertificateAuthority, CsrRejected
from gossamer.security.authz import IdentityRejected, check_node
from gossamer.translate import translate_proxy
from gossamer.translate.authorization import authorization_policies
from gossamer.translate.security import trust_domains
from gossamer.xds.build import build_resources
from gossamer.xds.types import CLUSTER, LISTENER
from tests.support.offline import proxy_for, snapshot_from_yaml

MIGRATING = TrustDomains("td2", ("td1",))

BASE = (Path(__file__).parent.parent / "golden" / "authz-allow-deny" / "in.yaml").read_text().split("\n---\n# Mesh")[0]

MESH = """
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    trustDomain: new-td
    trustDomainAliases: [%s]
"""

POLICY = """
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-sleep, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [%s]
"""


# ------------------------------------------------------------------------------------ the bundle


def test_principals_as_istio_rewrites_them() -> None:
    assert MIGRATING.principals(["td1/ns/foo/sa/bar"]) == ["td2/ns/foo/sa/bar", "td1/ns/foo/sa/bar"]
    assert MIGRATING.principals(["td2/ns/foo/sa/bar"]) == ["td2/ns/foo/sa/bar", "td1/ns/foo/sa/bar"]
    # cluster.local in a policy is a pointer to the local trust domain (and its aliases).
    assert MIGRATING.principals(["cluster.local/ns/foo/sa/bar"]) == ["td2/ns/foo/sa/bar", "td1/ns/foo/sa/bar"]
    # Another trust domain matches only itself; `*` and other shapes do not check the trust domain.
    assert MIGRATING.principals(["td3/ns/foo/sa/bar"]) == ["td3/ns/foo/sa/bar"]
    assert MIGRATING.principals(["*/ns/foo/sa/bar", "foo/bar", "*"]) == ["*/ns/foo/sa/bar", "foo/bar", "*"]
    # A `*` prefix keeps the principal for the domains it matches, and rewrites it for the others.
    assert TrustDomains("new-td", ("old-td", "x")).principals(["*-td/ns/a/sa/b"]) == ["*-td/ns/a/sa/b", "x/ns/a/sa/b"]
    # Without aliases nothing but cluster.local moves.
    assert TrustDomains("td2").principals(["td1/ns/a/sa/b", "cluster.local/ns/a/sa/b"]) == [
        "td1/ns/a/sa/b",
        "td2/ns/a/sa/b",
    ]
    assert TrustDomains().principals(["cluster.local/ns/a/sa/b"]) == ["cluster.local/ns/a/sa/b"]


def test_identities_and_what_is_accepted() -> None:
    assert MIGRATING.spiffe_id("ns", "sa") == "spiffe://td2/ns/ns/sa/sa"  # never issued in an alias
    assert MIGRATING.identities("ns", "sa") == ("spiffe://td2/ns/ns/sa/sa", "spiffe://td1/ns/ns/sa/sa")
    assert MIGRATING.accepts("spiffe://td1/ns/a/sa/b") and not MIGRATING.accepts("spiffe://td3/ns/a/sa/b")
    assert not MIGRATING.accepts("spiffe://td1") and not MIGRATING.accepts("spiffe://td10/ns/a/sa/b")
    assert MIGRATING.expand_identities(["spiffe://td2/ns/a/sa/b", "spiffe://x/ns/c/sa/d"]) == (
        "spiffe://td2/ns/a/sa/b",
        "spiffe://td1/ns/a/sa/b",
        "spiffe://x/ns/c/sa/d",
    )


# ------------------------------------------------------------------------------------ translation


def _snapshot(aliases: str = "", principal: str = "new-td/ns/default/sa/sleep") -> MeshSnapshot:
    return snapshot_from_yaml(BASE + MESH % aliases + POLICY % principal)


def _principals(snapshot: MeshSnapshot) -> list[AuthzField]:
    policies = authorization_policies(snapshot, proxy_for(snapshot, "httpbin", has_sds=True))
    (policy,) = [p for p in policies if p.name == "default/only-sleep"]
    return [f for rule in policy.rules for src in rule.sources for f in src]


def test_policy_principals_follow_the_trust_domain_and_aliases() -> None:
    assert _principals(_snapshot()) == [AuthzField("principal", ("new-td/ns/default/sa/sleep",))]
    assert _principals(_snapshot(principal="old-td/ns/default/sa/sleep")) == [
        AuthzField("principal", ("old-td/ns/default/sa/sleep",))
    ]
    assert _principals(_snapshot("old-td", "old-td/ns/default/sa/sleep")) == [
        AuthzField("principal", ("new-td/ns/default/sa/sleep", "old-td/ns/default/sa/sleep"))
    ]
    # serviceAccounts are identities of the local trust domain (and its aliases).
    snap = snapshot_from_yaml(BASE + MESH % "old-td" + POLICY.replace("principals: [%s]", "serviceAccounts: [sleep]"))
    assert _principals(snap) == [AuthzField("principal", ("new-td/ns/default/sa/sleep", "old-td/ns/default/sa/sleep"))]


def _inbound(peer: str) -> Request:
    return Request(
        host="httpbin:8000",
        path="/",
        port=8080,
        address="10.244.1.11",
        inbound=True,
        peer_principal=peer,
        source_ip="10.244.1.13",
    )


def _resources(snapshot: MeshSnapshot, deployment: str) -> dict[str, Any]:
    return build_resources(translate_proxy(snapshot, proxy_for(snapshot, deployment, has_sds=True)))


def test_rbac_allows_the_new_domain_denies_the_old_one_unless_it_is_an_alias() -> None:
    new, old = "spiffe://new-td/ns/default/sa/sleep", "spiffe://old-td/ns/default/sa/sleep"
    policy_in_new = _resources(_snapshot(), "httpbin")
    assert simulate(policy_in_new, _inbound(new)).status is None
    assert simulate(policy_in_new, _inbound(old)).status == 403
    assert (
        simulate(_resources(_snapshot(principal="old-td/ns/default/sa/sleep"), "httpbin"), _inbound(new)).status == 403
    )
    migrating = _resources(_snapshot("old-td", "old-td/ns/default/sa/sleep"), "httpbin")
    assert simulate(migrating, _inbound(new)).status is None
    assert simulate(migrating, _inbound(old)).status is None


def _san_matchers(message: Any) -> list[tuple[str, str]]:
    """(exact or prefix, value) of every URI SAN matcher in a proto (its JSON form)."""
    from google.protobuf import json_format

    found: list[tuple[str, str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("sanType") == "URI":
                ((kind, value),) = node["matcher"].items()
                found.append((kind, value))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json_format.MessageToDict(message))
    return found


def test_clients_expect_the_new_domain_and_aliases_and_servers_accept_them() -> None:
    snapshot = _snapshot("old-td")
    assert trust_domains(snapshot) == TrustDomains("new-td", ("old-td",))
    sleep = _resources(snapshot, "sleep")
    cluster = sleep[CLUSTER]["outbound|8000||httpbin.default.svc.cluster.local"]
    assert set(_san_matchers(cluster)) == {
        ("exact", "spiffe://new-td/ns/default/sa/httpbin"),
        ("exact", "spiffe://old-td/ns/default/sa/httpbin"),
    }
    inbound = _resources(snapshot, "httpbin")[LISTENER]["virtualInbound"]
    assert set(_san_matchers(inbound)) == {("prefix", "spiffe://new-td/"), ("prefix", "spiffe://old-td/")}
    # The default mesh: cluster.local, as before.
    default = _resources(snapshot_from_yaml(BASE), "httpbin")[LISTENER]["virtualInbound"]
    assert set(_san_matchers(default)) == {("prefix", "spiffe://cluster.local/")}


# ------------------------------------------------------------------------------------ identity


def test_ads_identity_check_accepts_the_trust_domain_and_its_aliases() -> None:
    meta = {"NAMESPACE": "default", "SERVICE_ACCOUNT": "curl"}
    check_node("spiffe://td2/ns/default/sa/curl", meta, MIGRATING)
    check_node("spiffe://td1/ns/default/sa/curl", meta, MIGRATING)
    for proved in ("spiffe://td3/ns/default/sa/curl", "spiffe://cluster.local/ns/default/sa/curl"):
        with pytest.raises(IdentityRejected, match="node claims spiffe://td2/ns/default/sa/curl"):
            check_node(proved, meta, MIGRATING)
    with pytest.raises(IdentityRejected):
        check_node("spiffe://td2/ns/default/sa/other", meta, MIGRATING)


def test_the_ca_signs_in_the_trust_domain_it_is_set_to(tmp_path: Path) -> None:
    from tests.unit.test_ca import make_csr

    ca = CertificateAuthority(tmp_path / "ca")
    ca.set_trust(TrustDomains("new-td", ("cluster.local",)))
    assert "BEGIN CERTIFICATE" in ca.sign_csr(make_csr("spiffe://new-td/ns/a/sa/b")[1], "spiffe://new-td/ns/a/sa/b")
    with pytest.raises(CsrRejected, match="not a SPIFFE id in trust domain new-td"):
        ca.sign_csr(make_csr("spiffe://cluster.local/ns/a/sa/b")[1], "spiffe://cluster.local/ns/a/sa/b")


async def test_an_agent_given_a_new_identity_serves_a_certificate_for_it_at_once(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    old, new = "spiffe://cluster.local/ns/default/sa/web", "spiffe://new-td/ns/default/sa/web"
    server = SdsServer(identity=old, signer=ca, socket_path=tmp_path / "sds.sock", ttl=timedelta(hours=24))
    await server.start()
    try:
        first = server.certificate
        ca.set_trust(TrustDomains("new-td"))
        server.set_identity(new)
        assert await server.wait_for(lambda s: s.certificate.identity == new, 5)
        cert = x509.load_pem_x509_certificate(server.certificate.cert_pem.encode())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [new]
        assert server.certificate.serial != first.serial and server.rotations == 1
    finally:
        await server.stop()


def test_a_new_pods_envoy_labels_its_metrics_with_its_principal_in_the_trust_domain(tmp_path: Path) -> None:
    from gossamer.runtime.pods import Pod, PodContext
    from gossamer.runtime.state import StateRecord
    from gossamer.runtime.types import ContainerSpec, DeploymentSpec

    ctx = PodContext(
        record=StateRecord(tmp_path), state_dir=tmp_path, run_dir=tmp_path, xds_socket=tmp_path / "xds.sock",
        envoy_binary=Path("/bin/false"), notify=lambda: None, trust_domain="new-td",
    )  # fmt: skip
    spec = DeploymentSpec(
        name="web", namespace="default", replicas=1, labels=(("app", "web"),), annotations=(),
        service_account="web", containers=(ContainerSpec("web", ("serve",), (), (8080,), None, None),),
    )  # fmt: skip
    pod = Pod(spec=spec, name="web-1", short_id="abcd1234", ip="10.244.0.9", ctx=ctx)
    assert pod.identity == "spiffe://new-td/ns/default/sa/web"
    assert pod.proxy_labels_env()["GOSSAMER_PRINCIPAL"] == "spiffe://new-td/ns/default/sa/web"
