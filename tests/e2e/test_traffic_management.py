"""Istio's traffic-management tasks on bookinfo, observed with real requests.

Fault injection, request timeouts, header manipulation, redirect / rewrite / directResponse,
CORS, and the validation a user meets on bad input. Each test deletes what it applied.
"""

from __future__ import annotations

import http.client
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mesh import REPO, Applied, Mesh, Response, applying

pytestmark = pytest.mark.e2e
NETWORKING = REPO / "samples/bookinfo/networking"

REVIEWS_UNAVAILABLE = "Sorry, product reviews are currently unavailable for this book."
RATINGS_UNAVAILABLE = "Ratings service is currently unavailable"


@pytest.fixture
def applied(bookinfo: Mesh, tmp_path: Path) -> Iterator[Applied]:
    """Apply files; delete every one of them (newest first) at teardown."""
    with applying(bookinfo, tmp_path) as a:
        yield a


def login(mesh: Mesh, user: str) -> dict[str, str]:
    resp = mesh.get("/login", data=f"username={user}&passwd=password".encode())
    assert resp.status == 302, resp
    return {"Cookie": resp.headers["set-cookie"].split(";", 1)[0]}


def timed_get(mesh: Mesh, path: str, headers: dict[str, str] | None = None) -> tuple[float, Response]:
    started = time.monotonic()
    resp = mesh.get(path, headers, timeout=20)
    return time.monotonic() - started, resp


def request(mesh: Mesh, method: str, path: str, headers: dict[str, str]) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", mesh.ingress_port, timeout=10)
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        return Response(resp.status, resp.read().decode(errors="replace"), {k.lower(): v for k, v in resp.getheaders()})
    finally:
        conn.close()


def in_mesh_curl(mesh: Mesh, url: str) -> tuple[int, dict[str, str], str]:
    """curl -si from productpage's pod: status, response headers (lower-cased names), body."""
    out = mesh.exec("deploy/productpage-v1", "curl", "-si", "--max-time", "10", url).stdout
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]},{value.strip()}" if key in headers else value.strip()
    return status, headers, body


def gateway_vs(name: str, host: str, http_rules: str) -> str:
    return (
        f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\n"
        f"spec:\n  hosts: [{host}]\n  gateways: [bookinfo-gateway]\n  http:\n{http_rules}"
    )


# ---------------------------------------------------------------------------- 1. fault injection


def test_fault_injection_delay_then_abort_for_jason_only(bookinfo: Mesh, applied: Applied) -> None:
    applied(NETWORKING / "destination-rule-all.yaml")
    applied(NETWORKING / "virtual-service-all-v1.yaml")
    applied(NETWORKING / "virtual-service-reviews-test-v2.yaml")
    applied(NETWORKING / "virtual-service-ratings-test-delay.yaml")
    jason, mallory = login(bookinfo, "jason"), login(bookinfo, "mallory")

    # 7 s delay on ratings; reviews v2 waits 10 s; productpage gives up after 3 s, twice.
    took, resp = timed_get(bookinfo, "/productpage", jason)
    assert resp.status == 200
    assert REVIEWS_UNAVAILABLE in resp.body
    assert 5.0 <= took <= 8.5, took

    took, resp = timed_get(bookinfo, "/productpage", mallory)
    assert resp.status == 200
    assert REVIEWS_UNAVAILABLE not in resp.body
    assert took < 2.0, took

    applied(NETWORKING / "virtual-service-ratings-test-abort.yaml")
    took, resp = timed_get(bookinfo, "/productpage", jason)
    assert resp.status == 200
    assert RATINGS_UNAVAILABLE in resp.body, resp.body[-2000:]
    assert took < 2.0, took
    resp = bookinfo.get("/productpage", mallory)
    assert resp.status == 200
    assert RATINGS_UNAVAILABLE not in resp.body
    assert REVIEWS_UNAVAILABLE not in resp.body


# ---------------------------------------------------------------------------- 2. request timeouts


def test_request_timeout_on_reviews_cuts_a_slow_ratings_call(bookinfo: Mesh, applied: Applied) -> None:
    applied(NETWORKING / "destination-rule-all.yaml")
    applied(NETWORKING / "virtual-service-all-v1.yaml")
    applied(
        applied.yaml(
            "ratings-delay.yaml",
            (
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: ratings\nspec:\n"
                "  hosts: [ratings]\n  http:\n  - fault:\n      delay:\n        percentage: {value: 100}\n"
                "        fixedDelay: 2s\n    route:\n    - destination: {host: ratings, subset: v1}\n"
            ),
        )
    )
    reviews_v2 = applied.yaml(
        "reviews-v2.yaml",
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n"
            "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v2}\n"
        ),
    )
    applied(reviews_v2)

    # Without a timeout: the page waits for the 2 s delay and shows v2's stars.
    took, resp = timed_get(bookinfo, "/productpage")
    assert resp.status == 200
    assert '<font color="black"' in resp.body
    assert took >= 1.9, took

    reviews_v2.write_text(reviews_v2.read_text() + "    timeout: 0.5s\n")
    applied(reviews_v2)
    took, resp = timed_get(bookinfo, "/productpage")
    assert resp.status == 200
    assert REVIEWS_UNAVAILABLE in resp.body
    assert 0.9 <= took < 2.5, took  # 0.5 s x productpage's two tries


# ---------------------------------------------------------------------------- 3. headers


def test_response_headers_set_add_remove_between_sidecars(bookinfo: Mesh, applied: Applied) -> None:
    status, before, _ = in_mesh_curl(bookinfo, "http://details:9080/details/0")
    assert status == 200 and "content-type" in before, before
    applied(
        applied.yaml(
            "details-headers.yaml",
            (
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: details\nspec:\n"
                "  hosts: [details]\n  http:\n  - headers:\n      request:\n        set: {x-gossamer-req: one}\n"
                "      response:\n        set: {x-gossamer: set}\n        add: {x-gossamer-added: added}\n"
                "        remove: [content-type]\n"
                "    route:\n    - destination: {host: details}\n      headers:\n"
                "        response:\n          set: {x-gossamer-destination: dest}\n"
            ),
        )
    )
    status, headers, body = in_mesh_curl(bookinfo, "http://details:9080/details/0")
    assert status == 200
    assert "William Shakespeare" in body
    assert headers.get("x-gossamer") == "set", headers
    assert headers.get("x-gossamer-added") == "added", headers
    assert headers.get("x-gossamer-destination") == "dest", headers
    assert "content-type" not in headers, headers


def test_response_header_set_at_the_gateway(bookinfo: Mesh, applied: Applied) -> None:
    applied(
        applied.yaml(
            "gw-headers.yaml",
            gateway_vs(
                "headers-example",
                "headers.example",
                (
                    "  - headers:\n      response:\n        set: {x-served-by: gossamer-gateway}\n"
                    "        add: {x-gossamer-added: added}\n"
                    "    route:\n    - destination: {host: productpage, port: {number: 9080}}\n"
                ),
            ),
        )
    )
    resp = bookinfo.get("/productpage", {"Host": "headers.example"})
    assert resp.status == 200
    assert "The Comedy of Errors" in resp.body
    assert resp.headers.get("x-served-by") == "gossamer-gateway", resp.headers
    assert resp.headers.get("x-gossamer-added") == "added", resp.headers
    assert "x-served-by" not in bookinfo.get("/productpage").headers  # other hosts untouched


# ---------------------------------------------------------------------------- 4. redirect, rewrite, directResponse


def test_redirect_rewrite_and_direct_response_at_the_gateway(bookinfo: Mesh, applied: Applied) -> None:
    applied(
        applied.yaml(
            "gw-actions.yaml",
            gateway_vs(
                "redirect-example",
                "redirect.example",
                (
                    "  - match:\n    - uri: {prefix: /pp}\n    rewrite: {uri: /productpage}\n"
                    "    route:\n    - destination: {host: productpage, port: {number: 9080}}\n"
                    "  - match:\n    - uri: {prefix: /teapot}\n    directResponse:\n      status: 418\n"
                    "      body: {string: teapot}\n"
                    "  - redirect: {uri: /productpage, redirectCode: 302}\n"
                ),
            ),
        )
    )
    host = {"Host": "redirect.example"}

    resp = bookinfo.get("/somewhere", host)
    assert resp.status == 302, resp
    assert re.fullmatch(r"http://redirect\.example(:\d+)?/productpage", resp.headers.get("location", "")), resp.headers

    resp = bookinfo.get("/pp", host)
    assert resp.status == 200, resp.status
    assert "The Comedy of Errors" in resp.body

    resp = bookinfo.get("/teapot", host)
    assert resp.status == 418
    assert resp.body == "teapot"

    assert bookinfo.get("/productpage").status == 200  # the "*" host is untouched


def test_redirect_rewrite_and_direct_response_between_sidecars(bookinfo: Mesh, applied: Applied) -> None:
    applied(
        applied.yaml(
            "details-actions.yaml",
            (
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: details\nspec:\n"
                "  hosts: [details]\n  http:\n"
                "  - match:\n    - uri: {prefix: /direct}\n    directResponse:\n      status: 503\n"
                "      body: {string: down for maintenance}\n"
                "  - match:\n    - uri: {prefix: /d/}\n    rewrite: {uri: /details/}\n"
                "    route:\n    - destination: {host: details}\n"
                "  - match:\n    - uri: {prefix: /old}\n    redirect: {uri: /details/0, redirectCode: 301}\n"
                "  - route:\n    - destination: {host: details}\n"
            ),
        )
    )

    status, _, body = in_mesh_curl(bookinfo, "http://details:9080/direct")
    assert (status, body) == (503, "down for maintenance")

    status, _, body = in_mesh_curl(bookinfo, "http://details:9080/d/0")
    assert status == 200
    assert "William Shakespeare" in body

    status, headers, _ = in_mesh_curl(bookinfo, "http://details:9080/old")
    assert status == 301
    assert re.fullmatch(r"http://details(:9080)?/details/0", headers.get("location", "")), headers

    status, _, body = in_mesh_curl(bookinfo, "http://details:9080/details/0")
    assert status == 200 and "William Shakespeare" in body


# ---------------------------------------------------------------------------- 5. CORS


def test_cors_preflight_at_the_gateway(bookinfo: Mesh, applied: Applied) -> None:
    applied(
        applied.yaml(
            "gw-cors.yaml",
            gateway_vs(
                "cors-example",
                "cors.example",
                (
                    "  - corsPolicy:\n      allowOrigins:\n      - exact: https://example.com\n"
                    "      allowMethods: [GET, POST]\n      maxAge: 24h\n"
                    "    route:\n    - destination: {host: productpage, port: {number: 9080}}\n"
                ),
            ),
        )
    )
    preflight = {"Host": "cors.example", "Access-Control-Request-Method": "GET"}

    resp = request(bookinfo, "OPTIONS", "/productpage", {**preflight, "Origin": "https://example.com"})
    assert resp.headers.get("access-control-allow-origin") == "https://example.com", (resp.status, resp.headers)
    assert resp.headers.get("access-control-allow-methods") == "GET,POST", resp.headers
    assert resp.headers.get("access-control-max-age") == "86400", resp.headers

    resp = request(bookinfo, "OPTIONS", "/productpage", {**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in resp.headers, (resp.status, resp.headers)

    # A simple (non-preflight) request from the allowed origin carries the header too.
    resp = request(bookinfo, "GET", "/productpage", {"Host": "cors.example", "Origin": "https://example.com"})
    assert resp.status == 200
    assert resp.headers.get("access-control-allow-origin") == "https://example.com", resp.headers


# ---------------------------------------------------------------------------- 7. bad input


def test_bad_timeout_is_rejected_with_file_and_line(bookinfo: Mesh, tmp_path: Path) -> None:
    bad = tmp_path / "bad-timeout.yaml"
    bad.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: bad-timeout\n"
        "spec:\n  hosts: [ratings]\n  http:\n  - route:\n    - destination: {host: ratings}\n"
        "    timeout: 5x\n"
    )
    proc = bookinfo.cli("apply", "-f", str(bad), check=False)
    assert proc.returncode != 0
    assert re.search(rf"{re.escape(str(bad))}:10: VirtualService/bad-timeout: spec\.http\[0\]\.timeout", proc.stderr), (
        proc.stderr
    )
    assert "bad-timeout" not in bookinfo.cli("get", "virtualservices").stdout


def test_per_try_timeout_longer_than_timeout_is_accepted_with_a_warning(bookinfo: Mesh, applied: Applied) -> None:
    path = applied.yaml(
        "per-try.yaml",
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: ratings\nspec:\n"
            "  hosts: [ratings]\n  http:\n  - route:\n    - destination: {host: ratings}\n"
            "    timeout: 1s\n    retries:\n      attempts: 2\n      perTryTimeout: 5s\n"
        ),
    )
    applied.paths.append(path)
    proc = bookinfo.cli("apply", "-f", str(path), "--wait")
    assert re.search(
        rf"{re.escape(str(path))}:13: warning: VirtualService/ratings: "
        r"spec\.http\[0\]\.retries\.perTryTimeout: .*longer",
        proc.stderr,
    ), proc.stderr
    assert "ratings" in bookinfo.cli("get", "virtualservices").stdout
    assert bookinfo.get("/productpage").status == 200


def test_unknown_subset_is_applied_with_a_warning(bookinfo: Mesh, applied: Applied) -> None:
    applied(NETWORKING / "destination-rule-all.yaml")
    path = applied.yaml(
        "unknown-subset.yaml",
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n"
            "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v9}\n"
        ),
    )
    applied.paths.append(path)
    proc = bookinfo.cli("apply", "-f", str(path), "--wait")
    assert "reviews" in bookinfo.cli("get", "virtualservices").stdout
    # Istio sends such requests to a cluster that does not exist: productpage shows its error.
    resp = bookinfo.get("/productpage")
    assert resp.status == 200 and REVIEWS_UNAVAILABLE in resp.body
    if not re.search(
        r"warning: VirtualService/reviews: spec\.http\[0\]\.route\[0\]\.destination.*subset.*v9",
        proc.stderr + proc.stdout,
    ):
        pytest.xfail(
            "no cross-reference warning for a subset missing from the DestinationRule yet "
            f"(istioctl analyze IST0101 'referenced subset not found'); apply printed: {proc.stderr!r}"
        )
