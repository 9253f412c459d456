"""Istio's Secure Gateways task with live traffic: an HTTPS server on the ingress gateway terminating
TLS with a Secret's certificate (SDS over ADS), SNI routing, certificate rotation without a restart,
MUTUAL TLS (client certificates checked against the Secret's ca.crt) and httpsRedirect.

The test owns its PKI (tests/support/certs.py): a CA and a certificate for httpbin.example.com.
Requests go to the gateway's TLS port on the host, 127.0.0.1:<up --ingress-tls-port>.
"""

from __future__ import annotations

import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.e2e.mesh import REPO, Applied, Mesh, applying, free_port, own_mesh, wait_until
from tests.support.certs import Issued, TestCA, tls_secret

pytestmark = pytest.mark.e2e

RUN_DIR = Path("/run/gsm-e2e-tls")
HOST = "httpbin.example.com"
TLS_PORT = free_port()
CA = TestCA("httpbin.example.com CA")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("tls")
    with own_mesh(RUN_DIR, tmp / "state", REPO / "samples/httpbin", up_args=("--ingress-tls-port", str(TLS_PORT))) as m:
        yield m


@pytest.fixture
def applied(mesh: Mesh, tmp_path: Path) -> Iterator[Applied]:
    with applying(mesh, tmp_path) as a:
        yield a


def gateway(mode: str = "SIMPLE", *, redirect: bool = False) -> dict[str, Any]:
    servers: list[dict[str, Any]] = [
        {
            "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
            "hosts": [HOST],
            "tls": {"mode": mode, "credentialName": "httpbin-credential"},
        }
    ]
    if redirect:
        servers.append(
            {
                "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                "hosts": [HOST],
                "tls": {"httpsRedirect": True},
            }
        )
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "mygateway"},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": servers},
    }


VIRTUAL_SERVICE = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "httpbin"},
    "spec": {
        "hosts": [HOST],
        "gateways": ["mygateway"],
        "http": [
            {
                "match": [{"uri": {"prefix": "/status"}}, {"uri": {"prefix": "/delay"}}],
                "route": [{"destination": {"host": "httpbin", "port": {"number": 8000}}}],
            }
        ],
    },
}


def https_get(path: str, sni: str = HOST, client: Issued | None = None) -> tuple[int, int]:
    """(HTTP status, serial number of the gateway's certificate) of GET PATH over TLS with SNI."""
    context = ssl.create_default_context(cadata=CA.cert_pem)
    if client is not None:
        with tempfile.TemporaryDirectory() as d:
            cert, key = Path(d) / "cert.pem", Path(d) / "key.pem"
            cert.write_text(client.cert_pem)
            key.write_text(client.key_pem)
            context.load_cert_chain(cert, key)
    with (
        socket.create_connection(("127.0.0.1", TLS_PORT), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    if not data:
        raise ConnectionError("the gateway closed the connection without a response")
    return int(data.split(b" ", 2)[1]), x509.load_der_x509_certificate(der).serial_number


def fails(path: str, sni: str = HOST, client: Issued | None = None) -> bool:
    try:
        https_get(path, sni, client)
    except (ssl.SSLError, ConnectionError, OSError):
        return True
    return False


def serves(status: int, serial: int | None = None, client: Issued | None = None) -> bool:
    def ok() -> bool:
        try:
            got, got_serial = https_get("/status/418", client=client)
        except (ssl.SSLError, ConnectionError, OSError):
            return False
        return got == status and (serial is None or got_serial == serial)

    return wait_until(ok, timeout=20, interval=0.3)


def test_simple_tls_sni_and_rotation(mesh: Mesh, applied: Applied) -> None:
    first = CA.issue(HOST, (HOST,))
    applied.docs("secret.yaml", tls_secret("httpbin-credential", "istio-system", first))
    applied.docs("gateway.yaml", gateway(), VIRTUAL_SERVICE)
    assert serves(418, first.serial), "GET /status/418 over TLS with SNI httpbin.example.com"
    assert fails("/status/418", sni="other.example.com"), "no server for that SNI: the handshake fails"

    # Rotate the certificate: the next handshake shows the new one, Envoy is not restarted.
    second = CA.issue(HOST, (HOST,))
    assert second.serial != first.serial
    applied.docs("secret.yaml", tls_secret("httpbin-credential", "istio-system", second))
    assert serves(418, second.serial), "the rotated certificate is served"


def test_mutual_tls_needs_a_client_certificate_from_the_ca(mesh: Mesh, applied: Applied) -> None:
    server = CA.issue(HOST, (HOST,))
    applied.docs("secret.yaml", tls_secret("httpbin-credential", "istio-system", server, CA.cert_pem))
    applied.docs("gateway.yaml", gateway("MUTUAL"), VIRTUAL_SERVICE)
    client = CA.issue("client.example.com", client=True)
    assert serves(418, server.serial, client=client)
    assert fails("/status/418"), "without a client certificate the handshake fails"
    stranger = TestCA("another CA").issue("client.example.com", client=True)
    assert fails("/status/418", client=stranger), "a certificate from another CA is refused"
    assert https_get("/status/200", client=client)[0] == 200


def test_https_redirect(mesh: Mesh, applied: Applied) -> None:
    server = CA.issue(HOST, (HOST,))
    applied.docs("secret.yaml", tls_secret("httpbin-credential", "istio-system", server))
    applied.docs("gateway.yaml", gateway(redirect=True), VIRTUAL_SERVICE)
    assert wait_until(lambda: mesh.get("/status/418", {"Host": HOST}).status == 301, timeout=20, interval=0.3)
    response = mesh.get("/status/418", {"Host": HOST})
    assert response.headers.get("location", "").startswith(f"https://{HOST}/status/418")
    assert serves(418, server.serial)
