"""End-user authentication with live traffic, as Istio's JWT tasks show it: RequestAuthentication
(Envoy's jwt_authn in httpbin's sidecar) and AuthorizationPolicy on request principals and claims.

The test owns an RSA key: its JWKS goes inline into the RequestAuthentication and the tests mint
RS256 tokens themselves. One mesh for the module (curl, httpbin); each test deletes what it applied.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.e2e.mesh import REPO, Applied, Mesh, applying, own_mesh, wait_until

pytestmark = pytest.mark.e2e

RUN_DIR = Path("/run/gsm-e2e-jwt")
ISSUER = "testing@secure.gossamer.io"
URL = "http://httpbin:8000"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class Signer:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> str:
        numbers = self.key.public_key().public_numbers()
        return json.dumps(
            {
                "keys": [
                    {
                        "kty": "RSA",
                        "alg": "RS256",
                        "use": "sig",
                        "kid": self.kid,
                        "n": _int(numbers.n),
                        "e": _int(numbers.e),
                    }
                ]
            }
        )

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "sub": "alice", "iat": now, "exp": now + 3600, **claims}
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"


SIGNER = Signer("gossamer-e2e")
OTHER = Signer("gossamer-e2e")  # same kid, another key: its signatures do not verify


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("jwt")
    with own_mesh(RUN_DIR, tmp / "state", REPO / "samples/curl", REPO / "samples/httpbin") as m:
        yield m


@pytest.fixture
def applied(mesh: Mesh, tmp_path: Path) -> Iterator[Applied]:
    with applying(mesh, tmp_path) as a:
        yield a


def request_authentication(**rule: Any) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "httpbin-jwt"},
        "spec": {
            "selector": {"matchLabels": {"app": "httpbin"}},
            "jwtRules": [{"issuer": ISSUER, "jwks": SIGNER.jwks(), **rule}],
        },
    }


def authorization_policy(name: str, action: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": "httpbin"}}, "action": action, "rules": list(rules)},
    }


def curl(mesh: Mesh, path: str, token: str | None = None) -> tuple[int, str]:
    """(status, body) of a request from the meshed curl pod to httpbin."""
    args = ["curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}"]
    if token is not None:
        args += ["-H", f"Authorization: Bearer {token}"]
    out = mesh.exec("deploy/curl", *args, URL + path).stdout
    body, _, code = out.rpartition("\n")
    return int(code), body


def settles(mesh: Mesh, path: str, token: str | None, status: int) -> bool:
    """Config is pushed asynchronously to the sidecar: wait for `status` to show."""
    return wait_until(lambda: curl(mesh, path, token)[0] == status, timeout=10, interval=0.3)


def test_request_authentication_rejects_invalid_tokens_only(mesh: Mesh, applied: Applied) -> None:
    valid = SIGNER.token()
    assert curl(mesh, "/get", "not-a-jwt")[0] == 200  # nothing checks tokens yet
    applied.docs("ra.yaml", request_authentication(outputPayloadToHeader="x-jwt-payload"))
    assert settles(mesh, "/get", "not-a-jwt", 401)

    assert curl(mesh, "/get")[0] == 200, "a request without a token is accepted (authorization decides)"
    assert curl(mesh, "/get", valid)[0] == 200
    status, body = curl(mesh, "/get", SIGNER.token(iss="https://someone.else"))
    assert (status, body) == (401, "Jwt issuer is not configured")
    status, body = curl(mesh, "/get", OTHER.token())
    assert (status, body) == (401, "Jwt verification fails")
    assert curl(mesh, "/get", SIGNER.token(exp=int(time.time()) - 600))[0] == 401
    assert curl(mesh, "/get", "not-a-jwt")[0] == 401

    # outputPayloadToHeader: the app sees the verified payload; the token itself is not forwarded.
    status, body = curl(mesh, "/headers", valid)
    assert status == 200, body
    headers = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
    encoded = headers["x-jwt-payload"]
    payload = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    assert payload["iss"] == ISSUER and payload["sub"] == "alice", payload
    assert "authorization" not in headers, headers


def test_authorization_on_request_principals_and_claims(mesh: Mesh, applied: Applied) -> None:
    applied.docs(
        "ra.yaml",
        request_authentication(),
        authorization_policy(
            "require-jwt", "ALLOW", {"from": [{"source": {"requestPrincipals": [f"{ISSUER}/alice"]}}]}
        ),
        authorization_policy(
            "deny-guests", "DENY", {"when": [{"key": "request.auth.claims[role]", "values": ["guest"]}]}
        ),
    )
    assert settles(mesh, "/get", None, 403)
    assert curl(mesh, "/get", SIGNER.token())[0] == 200
    assert curl(mesh, "/get", SIGNER.token(sub="bob"))[0] == 403
    assert curl(mesh, "/get", SIGNER.token(role="guest"))[0] == 403
    assert curl(mesh, "/get", SIGNER.token(role="admin"))[0] == 200
    assert curl(mesh, "/get", OTHER.token())[0] == 401  # authentication answers first

    # Any principal of the issuer ("iss/*"), and a list claim (Istio matches one of its values).
    # (A new file: the first one's DENY policy goes away with it.)
    applied.mesh.delete(applied.tmp_path / "ra.yaml")
    applied.docs(
        "ra2.yaml",
        request_authentication(),
        authorization_policy(
            "require-jwt",
            "ALLOW",
            {
                "from": [{"source": {"requestPrincipals": [f"{ISSUER}/*"]}}],
                "when": [{"key": "request.auth.claims[groups]", "values": ["dev"]}],
            },
        ),
    )
    assert settles(mesh, "/get", SIGNER.token(sub="bob", groups=["ops", "dev"]), 200)
    assert curl(mesh, "/get", SIGNER.token(sub="bob", groups=["ops"]))[0] == 403
    assert curl(mesh, "/get")[0] == 403
