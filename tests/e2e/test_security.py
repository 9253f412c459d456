"""Security with live traffic, as Istio's security tasks show it: auto mTLS between sidecars,
PeerAuthentication (PERMISSIVE by default, STRICT, port-level exceptions) and AuthorizationPolicy
(ALLOW / DENY / allow-nothing, principals and namespaces), checked with what a user sees: HTTP
status codes, the pages, Envoy's stats and access log, the certificate a sidecar presents.

One mesh for the module: bookinfo, curl (meshed, service account curl) and `legacy`, a client
without a sidecar (sidecar.istio.io/inject: "false"). Each test deletes what it applied.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from tests.e2e.mesh import ACCESS_LOGGING, REPO, Applied, Mesh, applying, own_mesh, wait_until
from tests.support.manifests import deployment

pytestmark = pytest.mark.e2e

RUN_DIR = Path("/run/gsm-e2e-sec")
BOOKINFO = REPO / "samples/bookinfo"
DETAILS_CLUSTER = "outbound|9080||details.default.svc.cluster.local"
DRAIN_SECONDS = 1.5  # Envoy --drain-time-s 1 (gossamer/agent/envoy.py), and a margin
# Envoy writes its access log every --file-flush-interval-msec (default 10 s; gossamer/agent/envoy.py
# keeps the default) or when 64 KB are buffered.
LOG_FLUSH_SECONDS = 12
DETAILS_SPIFFE = "spiffe://cluster.local/ns/default/sa/bookinfo-details"

# A pod outside the mesh (no sidecar): what a legacy client sees of the mesh's mTLS.
LEGACY = deployment(
    "legacy", image="curlimages/curl", command=["sleep", "infinity"], annotations={"sidecar.istio.io/inject": "false"}
)

# Run in the legacy pod (no sidecar, no capture): a TLS handshake with the details pod's inbound
# offering Istio's ALPN, printing the certificate the server presents (DER, hex).
PEER_CERT_PY = """\
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["istio"])
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as raw:
    with ctx.wrap_socket(raw) as tls:
        print(tls.getpeercert(binary_form=True).hex())
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("security")
    legacy = tmp / "legacy.yaml"
    legacy.write_text(yaml.safe_dump(LEGACY, sort_keys=False))
    with own_mesh(RUN_DIR, tmp / "state", BOOKINFO, REPO / "samples/curl", legacy, ACCESS_LOGGING) as m:
        yield m


@pytest.fixture
def applied(mesh: Mesh, tmp_path: Path) -> Iterator[Applied]:
    with applying(mesh, tmp_path) as a:
        yield a


def pod_ip(mesh: Mesh, deployment: str) -> str:
    ips = [p["ip"] for p in mesh.status()["pods"] if p.get("deployment") == deployment]
    assert ips, mesh.status()["pods"]
    return str(ips[0])


def curl(mesh: Mesh, ref: str, url: str) -> tuple[int, str]:
    """(HTTP status, body) of a curl from REF; status 0 when curl got no HTTP answer."""
    out = mesh.exec(ref, "curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}", url, check=False)
    body, _, code = out.stdout.rpartition("\n")
    return (int(code) if code.strip().isdigit() else 0), body


def status_of(mesh: Mesh, ref: str, url: str) -> int:
    return curl(mesh, ref, url)[0]


def eventually(mesh: Mesh, ref: str, url: str, want: int, timeout: float = 10) -> None:
    """Wait until REF gets WANT from URL, and then out the drain of the old config.

    `apply --wait` returns once every proxy has ACKed, so new connections see the new policy at
    once; connections already open (the client sidecar's keep-alive pool) stay on the old filter
    chain until Envoy's drain (--drain-time-s 1) closes them."""
    start = time.monotonic()
    seen: list[int] = []

    def ok() -> bool:
        seen.append(status_of(mesh, ref, url))
        return seen[-1] == want

    assert wait_until(ok, timeout=timeout, interval=0.5), f"{ref} -> {url}: wanted {want}, saw {seen}"
    time.sleep(max(0.0, start + DRAIN_SECONDS - time.monotonic()))


def sidecar_log(mesh: Mesh, ref: str) -> str:
    return mesh.cli("logs", ref, "-c", "istio-proxy").stdout


def policy(kind: str, name: str, spec: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    api = "security.istio.io/v1"
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def stat(stats: str, name: str) -> int:
    m = re.search(rf"^{re.escape(name)}: (\d+)$", stats, re.MULTILINE)
    assert m is not None, f"no stat {name}"
    return int(m.group(1))


# -- 1. auto mTLS ----------------------------------------------------------------------------
def test_auto_mtls_between_sidecars_with_the_servers_spiffe_identity(mesh: Mesh) -> None:
    for _ in range(3):
        code, body = curl(mesh, "deploy/curl", "http://details:9080/details/0")
        assert code == 200 and "William Shakespeare" in body, (code, body)
    stats = mesh.cli("proxy-config", "clusters", "deploy/curl", "--stats").stdout
    assert stat(stats, f"cluster.{DETAILS_CLUSTER}.ssl.handshake") > 0
    assert stat(stats, f"cluster.{DETAILS_CLUSTER}.ssl.connection_error") == 0

    # The details sidecar presents the details workload's identity, signed by the mesh CA.
    out = mesh.exec("deploy/legacy", "python3", "-c", PEER_CERT_PY, pod_ip(mesh, "details-v1"), "9080").stdout
    cert = x509.load_der_x509_certificate(bytes.fromhex(out.strip()))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [DETAILS_SPIFFE]
    root = x509.load_pem_x509_certificate((mesh.state_dir / "ca/root-cert.pem").read_bytes())
    cert.verify_directly_issued_by(root)


# -- 2. PERMISSIVE ---------------------------------------------------------------------------
def test_permissive_by_default_lets_a_client_without_sidecar_in_plaintext(mesh: Mesh) -> None:
    code, body = curl(mesh, "deploy/legacy", f"http://{pod_ip(mesh, 'details-v1')}:9080/details/0")
    assert code == 200 and "William Shakespeare" in body, (code, body)


# -- 3. STRICT and port-level exceptions -----------------------------------------------------
def test_strict_rejects_plaintext_and_a_port_level_exception_lets_it_in(mesh: Mesh, applied: Applied) -> None:
    legacy_url = f"http://{pod_ip(mesh, 'details-v1')}:9080/details/0"
    applied.docs("strict.yaml", policy("PeerAuthentication", "default", {"mtls": {"mode": "STRICT"}}))
    eventually(mesh, "deploy/legacy", legacy_url, 0)
    proc = mesh.exec("deploy/legacy", "curl", "-sS", "--max-time", "5", legacy_url, check=False)
    # As in Istio: no filter chain accepts plaintext, Envoy resets the connection (curl exit 56).
    assert proc.returncode == 56, proc

    code, _ = curl(mesh, "deploy/curl", "http://details:9080/details/0")
    assert code == 200
    page = mesh.get("/productpage")
    assert page.status == 200 and "Book Details" in page.body and "reviews-v" in page.body, page.body[-2000:]

    applied.docs(
        "details-port.yaml",
        policy(
            "PeerAuthentication",
            "details",
            {"selector": {"matchLabels": {"app": "details"}}, "portLevelMtls": {9080: {"mode": "PERMISSIVE"}}},
        ),
    )
    eventually(mesh, "deploy/legacy", legacy_url, 200)
    # Only details got the exception: reviews is still STRICT.
    assert status_of(mesh, "deploy/legacy", f"http://{pod_ip(mesh, 'reviews-v1')}:9080/reviews/0") == 0
    assert status_of(mesh, "deploy/curl", "http://details:9080/details/0") == 200


def test_disable_on_a_workload_auto_mtls_sends_plaintext(mesh: Mesh, applied: Applied) -> None:
    """Istio's auto mTLS honours the server's PeerAuthentication: DISABLE on details makes the
    client sidecars send plaintext to it, so meshed clients keep working."""
    applied.docs(
        "details-disable.yaml",
        policy(
            "PeerAuthentication",
            "details",
            {"selector": {"matchLabels": {"app": "details"}}, "mtls": {"mode": "DISABLE"}},
        ),
    )
    eventually(mesh, "deploy/legacy", f"http://{pod_ip(mesh, 'details-v1')}:9080/details/0", 200)
    eventually(mesh, "deploy/curl", "http://details:9080/details/0", 200)
    page = mesh.get("/productpage")
    assert page.status == 200 and "ISBN-10" in page.body, page.body[-2000:]


# -- 4. AuthorizationPolicy ------------------------------------------------------------------
def test_allow_by_principal_lets_productpage_in_and_denies_curl(mesh: Mesh, applied: Applied) -> None:
    applied.docs(
        "details-allow.yaml",
        policy(
            "AuthorizationPolicy",
            "details-viewer",
            {
                "selector": {"matchLabels": {"app": "details"}},
                "action": "ALLOW",
                "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/bookinfo-productpage"]}}]}],
            },
        ),
    )
    eventually(mesh, "deploy/curl", "http://details:9080/details/0", 403)
    code, body = curl(mesh, "deploy/curl", "http://details:9080/details/0")
    assert code == 403 and body == "RBAC: access denied", (code, body)
    page = mesh.get("/productpage")
    assert page.status == 200 and "Book Details" in page.body and "ISBN-10" in page.body, page.body[-2000:]
    assert "Error fetching product details" not in page.body
    # The details sidecar says which rule refused curl (none matched: an ALLOW policy's denial).
    assert wait_until(
        lambda: (
            re.search(r'"GET /details/0 HTTP/1\.1" 403 .*rbac_access_denied', sidecar_log(mesh, "deploy/details-v1"))
            is not None
        ),
        timeout=LOG_FLUSH_SECONDS,
        interval=0.5,
    ), sidecar_log(mesh, "deploy/details-v1")[-3000:]


def test_deny_by_path(mesh: Mesh, applied: Applied) -> None:
    applied.docs(
        "reviews-deny.yaml",
        policy(
            "AuthorizationPolicy",
            "deny-reviews-1",
            {
                "selector": {"matchLabels": {"app": "reviews"}},
                "action": "DENY",
                "rules": [{"to": [{"operation": {"paths": ["/reviews/1"]}}]}],
            },
        ),
    )
    eventually(mesh, "deploy/curl", "http://reviews:9080/reviews/1", 403)
    for _ in range(3):  # every reviews version
        assert curl(mesh, "deploy/curl", "http://reviews:9080/reviews/1") == (403, "RBAC: access denied")
        assert status_of(mesh, "deploy/curl", "http://reviews:9080/reviews/0") == 200
    # The reviews sidecars say which rule refused it.
    details = "rbac_access_denied_matched_policy[ns[default]-policy[deny-reviews-1]-rule[0]]"

    def logs() -> str:
        return "".join(sidecar_log(mesh, f"deploy/reviews-{v}") for v in ("v1", "v2", "v3"))

    assert wait_until(lambda: details in logs(), timeout=LOG_FLUSH_SECONDS, interval=0.5), logs()[-3000:]


def test_allow_nothing_on_ratings_shows_the_ratings_error(mesh: Mesh, applied: Applied) -> None:
    applied(BOOKINFO / "networking/destination-rule-all.yaml", BOOKINFO / "networking/virtual-service-reviews-v3.yaml")
    page = mesh.get("/productpage")
    assert page.status == 200 and "reviews-v3" in page.body and "glyphicon-star" in page.body, page.body[-2000:]

    applied.docs(
        "ratings-allow-nothing.yaml",
        policy("AuthorizationPolicy", "allow-nothing", {"selector": {"matchLabels": {"app": "ratings"}}}),
    )
    eventually(mesh, "deploy/curl", "http://ratings:9080/ratings/0", 403)

    def ratings_error() -> bool:
        page = mesh.get("/productpage")
        body = page.body
        return page.status == 200 and "reviews-v3" in body and "Ratings service is currently unavailable" in body

    assert wait_until(ratings_error, timeout=10, interval=0.5), mesh.get("/productpage").body[-2000:]
    assert "glyphicon-star" not in mesh.get("/productpage").body


# -- 5. namespaces ---------------------------------------------------------------------------
def test_allow_from_namespaces(mesh: Mesh, applied: Applied) -> None:
    def allow_from(ns: str) -> None:
        applied.docs(
            "details-ns.yaml",
            policy(
                "AuthorizationPolicy",
                "details-ns",
                {
                    "selector": {"matchLabels": {"app": "details"}},
                    "action": "ALLOW",
                    "rules": [{"from": [{"source": {"namespaces": [ns]}}]}],
                },
            ),
        )

    allow_from("default")
    eventually(mesh, "deploy/curl", "http://details:9080/details/0", 200)
    allow_from("other")
    eventually(mesh, "deploy/curl", "http://details:9080/details/0", 403)
    assert curl(mesh, "deploy/curl", "http://details:9080/details/0") == (403, "RBAC: access denied")


def test_nothing_left_in_plaintext_after_cleanup(mesh: Mesh) -> None:
    """After the tests' policies are deleted the mesh is PERMISSIVE and open again."""
    eventually(mesh, "deploy/legacy", f"http://{pod_ip(mesh, 'details-v1')}:9080/details/0", 200)
    eventually(mesh, "deploy/curl", "http://details:9080/details/0", 200)
    assert mesh.get("/productpage").status == 200
