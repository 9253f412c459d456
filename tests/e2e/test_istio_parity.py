"""Istio's details that users compare, with live traffic: path normalization in front of an
AuthorizationPolicy (Istio's default BASE, then DECODE_AND_MERGE_SLASHES from the mesh config), and
the mesh-wide options of `ConfigMap istio-system/istio` applied live (REGISTRY_ONLY as Istio's
egress task sets it, a JSON access log) and shown by `gossamer describe`.

One mesh for the module: curl (meshed), `files`, a static file server whose /secret.txt a DENY
policy protects, and `tls-app`, a TLS server behind the ingress gateway's TLS passthrough server on
the host's loopback. Each test deletes what it applied.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.mesh import (
    HOST_ADDRESS,
    REPO,
    Applied,
    Mesh,
    applying,
    curl_status_body,
    free_port,
    own_mesh,
    serving_on_host,
    wait_until,
)

pytestmark = pytest.mark.e2e

RUN_DIR = Path("/run/gsm-e2e-parity")
FILES = REPO / "tests/data/parity/files.yaml"
TLS_APP = REPO / "tests/data/parity/tls-app.yaml"
TLS_PORT = free_port()
FILES_URL = "http://files:8000"
# Envoy writes its access log every --file-flush-interval-msec (default 10 s) or when 64 KB are buffered.
LOG_FLUSH_SECONDS = 12

DENY_SECRET = {
    "apiVersion": "security.istio.io/v1",
    "kind": "AuthorizationPolicy",
    "metadata": {"name": "deny-secret", "namespace": "default"},
    "spec": {
        "selector": {"matchLabels": {"app": "files"}},
        "action": "DENY",
        "rules": [{"to": [{"operation": {"paths": ["/secret.txt"]}}]}],
    },
}


def mesh_config(mesh_yaml: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {"mesh": mesh_yaml},
    }


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("parity")
    with own_mesh(
        RUN_DIR, tmp / "state", REPO / "samples/curl", FILES, TLS_APP, up_args=("--ingress-tls-port", str(TLS_PORT))
    ) as m:
        yield m


@pytest.fixture
def applied(mesh: Mesh, tmp_path: Path) -> Iterator[Applied]:
    with applying(mesh, tmp_path) as a:
        yield a


def status(mesh: Mesh, path: str) -> str:
    """The status curl gets for PATH, sent as written (no client-side dot-segment removal)."""
    proc = mesh.exec(
        "deploy/curl",
        "curl",
        "-sS",
        "--path-as-is",
        "--max-time",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        f"{FILES_URL}{path}",
        check=False,
    )
    return proc.stdout.strip()


def eventually(mesh: Mesh, path: str, want: str, timeout: float = 10) -> None:
    seen: list[str] = []

    def answers_want() -> bool:
        seen.append(status(mesh, path))
        return seen[-1] == want

    assert wait_until(answers_want, timeout, interval=0.5), f"{path}: wanted {want}, saw {seen}"


BYPASSES = ["/public/../secret.txt", "/./secret.txt", "/%73ecret.txt", "/public/%2e%2e/secret.txt"]
SLASH_BYPASSES = ["//secret.txt", "/public/..//secret.txt", "/%2Fsecret.txt", "/public%2F..%2Fsecret.txt"]


def test_path_tricks_do_not_pass_a_deny_base_then_decode_and_merge_slashes(mesh: Mesh, applied: Applied) -> None:
    assert status(mesh, "/secret.txt") == "200"
    applied.docs("deny.yaml", DENY_SECRET)
    eventually(mesh, "/secret.txt", "403")
    # Istio's default BASE: RFC 3986 normalization (dot segments, percent-encoded unreserved characters).
    assert {p: status(mesh, p) for p in BYPASSES} == dict.fromkeys(BYPASSES, "403")
    assert status(mesh, "/public/hello.txt") == "200"
    # BASE keeps slashes as they are: "//secret.txt" is another path to the policy, the app serves it.
    assert status(mesh, "//secret.txt") == "200"

    applied.docs("mesh.yaml", mesh_config("pathNormalization:\n  normalization: DECODE_AND_MERGE_SLASHES\n"))
    eventually(mesh, "//secret.txt", "403")
    assert {p: status(mesh, p) for p in [*BYPASSES, *SLASH_BYPASSES]} == dict.fromkeys(
        [*BYPASSES, *SLASH_BYPASSES], "403"
    )
    assert status(mesh, "//public/hello.txt") == "200"
    describe = mesh.cli("describe", "deploy/files").stdout
    assert "pathNormalization.normalization: DECODE_AND_MERGE_SLASHES" in describe, describe


def test_mesh_config_registry_only_and_json_access_log_live(mesh: Mesh, applied: Applied) -> None:
    outside = f"http://{HOST_ADDRESS}:8000/"  # a known HTTP port, an address no service has
    with serving_on_host(8000):
        code, body = curl_status_body(mesh, outside)
        assert code == "200" and "outside" in body, (code, body)
        applied.docs(
            "mesh.yaml",
            mesh_config(
                "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\naccessLogFile: /dev/stdout\naccessLogEncoding: JSON\n"
            ),
        )
        assert wait_until(lambda: curl_status_body(mesh, outside)[0] == "502", timeout=10, interval=0.5)
        # Mesh services still answer.
        assert curl_status_body(mesh, f"{FILES_URL}/public/hello.txt")[0] == "200"
    describe = mesh.cli("describe", "deploy/curl").stdout
    assert "Mesh config: ConfigMap istio-system/istio" in describe, describe
    assert "outboundTrafficPolicy.mode: REGISTRY_ONLY" in describe and "accessLogEncoding: JSON" in describe

    # The curl sidecar's access log: Istio's JSON keys, the 502 from block_all among them.
    def blocked_entries() -> list[dict[str, Any]]:
        log = mesh.cli("logs", "deploy/curl", "-c", "istio-proxy").stdout
        entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        return [e for e in entries if e.get("response_code") == 502 or e.get("response_code") == "502"]

    assert wait_until(lambda: bool(blocked_entries()), timeout=LOG_FLUSH_SECONDS, interval=0.5)
    entry = blocked_entries()[-1]
    assert entry["route_name"] == "block_all" and entry["authority"] == f"{HOST_ADDRESS}:8000", entry


# At start, before anything else: one request through the pod's sidecar, its outcome printed.
EARLY_REQUEST = """
import time, urllib.request
try:
    with urllib.request.urlopen("http://files:8000/public/hello.txt", timeout=5) as r:
        print("startup", r.status, flush=True)
except Exception as e:
    print("startup failed", type(e).__name__, e, flush=True)
time.sleep(1e9)
"""


def test_hold_application_until_proxy_starts_from_the_mesh_config(mesh: Mesh, applied: Applied) -> None:
    """Istio's holdApplicationUntilProxyStarts: the app's first request, made the moment it starts,
    goes through a sidecar that already has its config."""
    applied.docs("mesh.yaml", mesh_config("defaultConfig:\n  holdApplicationUntilProxyStarts: true\n"))
    applied.docs(
        "early.yaml",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "early"},
            "spec": {
                "selector": {"matchLabels": {"app": "early"}},
                "template": {
                    "metadata": {"labels": {"app": "early"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 0,
                        "containers": [
                            {"name": "early", "image": "python", "command": ["python3", "-c", EARLY_REQUEST]}
                        ],
                    },
                },
            },
        },
    )

    def first_line() -> str:
        lines = mesh.cli("logs", "deploy/early", check=False).stdout.splitlines()
        return lines[0] if lines else ""

    assert wait_until(lambda: first_line().startswith("startup"), timeout=20, interval=0.5)
    assert first_line() == "startup 200"
    assert "defaultConfig.holdApplicationUntilProxyStarts: true" in mesh.cli("describe", "deploy/early").stdout


TLS_HOST = "tls.example.com"
TLS_PASSTHROUGH = [
    {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "tls-gateway"},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {
                    "port": {"number": 443, "name": "tls", "protocol": "TLS"},
                    "hosts": [TLS_HOST],
                    "tls": {"mode": "PASSTHROUGH"},
                }
            ],
        },
    },
    {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "tls-app"},
        "spec": {
            "hosts": [TLS_HOST],
            "gateways": ["tls-gateway"],
            "tls": [
                {
                    "match": [{"port": 443, "sniHosts": [TLS_HOST]}],
                    "route": [{"destination": {"host": "tls-app", "port": {"number": 8443}}}],
                }
            ],
        },
    },
]


def tls_hello() -> tuple[str, bytes]:
    """(what the server says, its certificate) over TLS to the ingress TLS port with SNI tls.example.com."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", TLS_PORT), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=TLS_HOST) as tls:
                return tls.recv(200).decode().strip(), tls.getpeercert(binary_form=True) or b""
    except OSError as e:
        return f"ERR:{type(e).__name__}", b""


def test_gateway_tls_passthrough_is_on_the_hosts_loopback(mesh: Mesh, applied: Applied) -> None:
    """A TLS PASSTHROUGH server on 443 is reached at 127.0.0.1:<--ingress-tls-port>, as HTTPS servers
    are; the gateway routes by SNI and the app terminates TLS with its own certificate."""
    from cryptography import x509

    applied.docs("tls.yaml", *TLS_PASSTHROUGH)
    seen: list[tuple[str, bytes]] = []

    def app_answers() -> bool:
        seen.append(tls_hello())
        return seen[-1][0] == f"tls-app {TLS_HOST}"

    assert wait_until(app_answers, timeout=10, interval=0.5), seen[-1][0]
    cert = x509.load_der_x509_certificate(seen[-1][1])
    assert cert.subject.rfc4514_string() == f"CN={TLS_HOST}"  # the app's own, not a mesh certificate
