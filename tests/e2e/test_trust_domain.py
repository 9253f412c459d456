"""The mesh config's trustDomain applied live, as Istio's "Trust Domain Migration" task walks it: the
agents get certificates in the new trust domain (nothing restarts), STRICT mTLS keeps working, an
AuthorizationPolicy principal in the new domain allows, one in the old domain denies until
trustDomainAliases names it, and a new pod's Envoy proves its new-domain identity to the control plane.

One mesh for the module: httpbin and curl (service account curl), STRICT mTLS in `default`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mesh import REPO, Mesh, own_mesh, wait_until

pytestmark = pytest.mark.e2e

RUN_DIR = Path("/run/gsm-e2e-trust")
NEW, OLD = "new-td.example", "old-td.example"

STRICT = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec:
  mtls: {mode: STRICT}
"""

MESH = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    trustDomain: %s
    trustDomainAliases: [%s]
"""

ONLY_CURL = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-curl, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["%s/ns/default/sa/curl"]}
"""

LATECOMER = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: latecomer}
spec:
  selector: {matchLabels: {app: latecomer}}
  template:
    metadata: {labels: {app: latecomer}}
    spec:
      serviceAccountName: latecomer
      containers:
      - {name: app, image: curlimages/curl, command: ["sleep", "infinity"]}
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("trust")
    (tmp / "strict.yaml").write_text(STRICT)
    with own_mesh(RUN_DIR, tmp / "state", REPO / "samples/httpbin/httpbin.yaml", REPO / "samples/curl", tmp) as m:
        yield m


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def code(mesh: Mesh) -> str:
    out = mesh.exec(
        "deploy/curl",
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "5",
        "http://httpbin:8000/headers",
        check=False,
    )
    return out.stdout.strip() or f"curl exit {out.returncode}: {out.stderr.strip()}"


def identity(mesh: Mesh, ref: str) -> tuple[str, bool]:
    """(the SPIFFE id of the pod's workload certificate, whether its Envoy ACKed what its agent sent)."""
    body = json.loads(mesh.cli("proxy-config", "secret", ref, "-o", "json").stdout)
    streams = body["streams"]
    acked = bool(streams) and all(s["ackedVersion"] == s["sentVersion"] for s in streams)
    return body["certificate"]["identity"], acked


def test_trust_domain_migration(mesh: Mesh, tmp_path: Path) -> None:
    assert wait_until(lambda: code(mesh) == "200", 30), code(mesh)
    assert identity(mesh, "deploy/httpbin")[0] == "spiffe://cluster.local/ns/default/sa/httpbin"
    pods_before = {p["name"] for p in mesh.status()["pods"]}

    # Live: each agent gets a certificate in the new trust domain and pushes it to its Envoy.
    mesh_config = write(tmp_path, "mesh.yaml", MESH % (NEW, ""))
    applied = mesh.cli("apply", "-f", str(mesh_config), "--wait")
    assert "not enforced" not in applied.stdout + applied.stderr
    for ref, sa in (("deploy/httpbin", "httpbin"), ("deploy/curl", "curl")):
        want = (f"spiffe://{NEW}/ns/default/sa/{sa}", True)
        assert wait_until(lambda ref=ref, want=want: identity(mesh, ref) == want, 30), identity(mesh, ref)
    assert {p["name"] for p in mesh.status()["pods"]} == pods_before  # nothing restarted
    assert wait_until(lambda: code(mesh) == "200", 20), code(mesh)  # STRICT mTLS with the new identities
    described = json.loads(mesh.cli("describe", "deploy/curl", "-o", "json").stdout)
    assert described["pod"]["identity"] == f"spiffe://{NEW}/ns/default/sa/curl"

    policy = write(tmp_path, "policy.yaml", ONLY_CURL % NEW)
    mesh.apply(policy)
    assert wait_until(lambda: code(mesh) == "200", 10), code(mesh)
    mesh.apply(write(tmp_path, "policy.yaml", ONLY_CURL % OLD))  # the old trust domain is another mesh's
    assert wait_until(lambda: code(mesh) == "403", 10), code(mesh)
    mesh.apply(write(tmp_path, "mesh.yaml", MESH % (NEW, OLD)))  # ... unless it is an alias
    assert wait_until(lambda: code(mesh) == "200", 10), code(mesh)
    mesh.apply(write(tmp_path, "mesh.yaml", MESH % (NEW, "")))
    assert wait_until(lambda: code(mesh) == "403", 10), code(mesh)
    # In a policy, cluster.local always means the local trust domain (Istio).
    mesh.apply(write(tmp_path, "policy.yaml", ONLY_CURL % "cluster.local"))
    assert wait_until(lambda: code(mesh) == "200", 10), code(mesh)

    # A new pod's Envoy proves its new-domain identity to the control plane (ADS over mTLS) and gets config;
    # every proxy (the ingress gateway, httpbin, curl, latecomer) is in sync.
    latecomer = write(tmp_path, "latecomer.yaml", LATECOMER)
    mesh.apply(latecomer)
    assert wait_until(lambda: latecomer_ready(mesh), 60), mesh.status()["pods"]
    assert identity(mesh, "deploy/latecomer")[0] == f"spiffe://{NEW}/ns/default/sa/latecomer"
    assert wait_until(lambda: all_synced(mesh, 4), 20), mesh.status()["proxies"]

    # Back to the default: identities return to cluster.local.
    mesh.delete(mesh_config, latecomer, policy)
    assert wait_until(lambda: identity(mesh, "deploy/curl")[0] == "spiffe://cluster.local/ns/default/sa/curl", 30)
    assert wait_until(lambda: code(mesh) == "200", 20), code(mesh)


def latecomer_ready(mesh: Mesh) -> bool:
    """Ready includes its Envoy being LIVE: it got its config, so the ADS server accepted its identity."""
    return any(p["name"].startswith("latecomer-") and p["ready"] for p in mesh.status()["pods"])


def all_synced(mesh: Mesh, count: int) -> bool:
    proxies = mesh.status()["proxies"]
    return len(proxies) == count and all(t["state"] == "SYNCED" for p in proxies for t in p["types"].values())
