"""The bookinfo sample apps, run as real subprocesses on 127.0.0.1 (no mesh)."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BOOKINFO = REPO / "samples" / "bookinfo"
SRC = BOOKINFO / "src"
LOOPBACK = "127.0.0.1"

REVIEW1 = "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"
REVIEWS_DOWN = "Sorry, product reviews are currently unavailable for this book."
DETAILS_DOWN = "Sorry, product details are currently unavailable for this book."
RATINGS_DOWN = "Ratings service is currently unavailable"


@dataclass
class App:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int = 0


class Apps:
    """Starts bookinfo apps on ephemeral loopback ports and stops them by PID."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.apps: list[App] = []

    def spawn(self, script: str, **env: str | int) -> App:
        full_env = {k: v for k, v in os.environ.items() if not k.endswith(("_HOSTNAME", "_SERVICE_PORT"))}
        full_env.update({"BIND_ADDRESS": LOOPBACK, "PORT": "0", "PYTHONUNBUFFERED": "1"})
        full_env.update({k: str(v) for k, v in env.items()})
        log = self.tmp / f"{script}-{len(self.apps)}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, str(SRC / f"{script}.py")],
                cwd=BOOKINFO,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        app = App(script, proc, log)
        self.apps.append(app)
        return app

    def wait(self, app: App, timeout: float = 10.0) -> App:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"listening on [^\s]+:(\d+)", app.log.read_text(errors="replace"))
            if match:
                app.port = int(match.group(1))
                return app
            if app.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"{app.name} did not start:\n{app.log.read_text(errors='replace')}")

    def start(self, script: str, **env: str | int) -> App:
        return self.wait(self.spawn(script, **env))

    def stop(self, app: App) -> int:
        if app.proc.poll() is None:
            os.kill(app.proc.pid, signal.SIGTERM)
            try:
                app.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(app.proc.pid, signal.SIGKILL)
                app.proc.wait(timeout=5)
        return app.proc.returncode

    def stop_all(self) -> None:
        for app in self.apps:
            self.stop(app)


def dead_port() -> int:
    """A loopback port with (very probably) nothing listening on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def request(
    port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None, body: str | None = None
) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=15)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read().decode("utf-8")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def get_json(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _, body = request(port, path, headers=headers)
    return status, json.loads(body)


@dataclass
class Mesh:
    details: App
    ratings: App
    reviews: dict[str, App]
    productpage: dict[str, App]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    apps = Apps(tmp_path_factory.mktemp("bookinfo"))
    try:
        details = apps.spawn("details")
        ratings = apps.spawn("ratings")
        apps.wait(details)
        apps.wait(ratings)
        rv = {
            "v1": apps.spawn("reviews", SERVICE_VERSION="v1", HOSTNAME="reviews-v1-abc"),
            "v2": apps.spawn(
                "reviews",
                SERVICE_VERSION="v2",
                ENABLE_RATINGS="true",
                STAR_COLOR="black",
                HOSTNAME="reviews-v2-abc",
                RATINGS_HOSTNAME=LOOPBACK,
                RATINGS_SERVICE_PORT=ratings.port,
            ),
            "v3": apps.spawn(
                "reviews",
                SERVICE_VERSION="v3",
                ENABLE_RATINGS="true",
                STAR_COLOR="red",
                HOSTNAME="reviews-v3-abc",
                RATINGS_HOSTNAME=LOOPBACK,
                RATINGS_SERVICE_PORT=ratings.port,
            ),
        }
        for app in rv.values():
            apps.wait(app)
        pp = {
            version: apps.spawn(
                "productpage",
                DETAILS_HOSTNAME=LOOPBACK,
                DETAILS_SERVICE_PORT=details.port,
                REVIEWS_HOSTNAME=LOOPBACK,
                REVIEWS_SERVICE_PORT=app.port,
                RATINGS_HOSTNAME=LOOPBACK,
                RATINGS_SERVICE_PORT=ratings.port,
            )
            for version, app in rv.items()
        }
        for app in pp.values():
            apps.wait(app)
        yield Mesh(details, ratings, rv, pp)
    finally:
        apps.stop_all()


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[Apps]:
    started = Apps(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


class Recorder:
    """An in-process fake upstream that records request headers and answers canned JSON."""

    def __init__(self, responses: dict[str, tuple[int, Any]]) -> None:
        self.responses = responses
        self.seen: list[tuple[str, dict[str, str]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                recorder.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                status, obj = recorder.responses.get(self.path, (404, {"error": "nope"}))
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def headers_for(self, path: str) -> list[dict[str, str]]:
        return [h for p, h in self.seen if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder({})
    try:
        yield rec
    finally:
        rec.close()


# --- leaf services ------------------------------------------------------------------------
def test_health_endpoints(mesh: Mesh) -> None:
    for app in [mesh.details, mesh.ratings, *mesh.reviews.values(), *mesh.productpage.values()]:
        status, _, _ = request(app.port, "/health")
        assert status == 200, app.name


def test_details_and_ratings_json(mesh: Mesh) -> None:
    assert get_json(mesh.details.port, "/details/0") == (
        200,
        {
            "id": 0,
            "author": "William Shakespeare",
            "year": 1595,
            "type": "paperback",
            "pages": 200,
            "publisher": "PublisherA",
            "language": "English",
            "ISBN-10": "1234567890",
            "ISBN-13": "123-1234567890",
        },
    )
    assert get_json(mesh.ratings.port, "/ratings/7") == (200, {"id": 7, "ratings": {"Reviewer1": 5, "Reviewer2": 4}})
    assert get_json(mesh.ratings.port, "/ratings/abc")[0] == 400
    assert get_json(mesh.details.port, "/details/abc")[0] == 400


def test_reviews_versions(mesh: Mesh) -> None:
    status, v1 = get_json(mesh.reviews["v1"].port, "/reviews/0")
    assert status == 200
    assert v1["id"] == "0" and v1["version"] == "v1" and v1["podname"] == "reviews-v1-abc"
    assert v1["clustername"] == "null"
    assert [r["reviewer"] for r in v1["reviews"]] == ["Reviewer1", "Reviewer2"]
    assert v1["reviews"][0]["text"] == REVIEW1
    assert all("rating" not in r for r in v1["reviews"])

    _, v2 = get_json(mesh.reviews["v2"].port, "/reviews/0")
    assert [r["rating"] for r in v2["reviews"]] == [
        {"stars": 5, "color": "black"},
        {"stars": 4, "color": "black"},
    ]
    _, v3 = get_json(mesh.reviews["v3"].port, "/reviews/0")
    assert [r["rating"] for r in v3["reviews"]] == [
        {"stars": 5, "color": "red"},
        {"stars": 4, "color": "red"},
    ]


# --- productpage --------------------------------------------------------------------------
def test_productpage_v1_has_no_stars(mesh: Mesh) -> None:
    status, headers, page = request(mesh.productpage["v1"].port, "/productpage")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "The Comedy of Errors" in page
    assert "paperback" in page and "PublisherA" in page and "123-1234567890" in page
    assert REVIEW1 in page and "Reviewer2" in page
    assert "reviews-v1-abc" in page and "reviews-v1" in page
    assert "glyphicon-star" not in page and "<font color=" not in page


@pytest.mark.parametrize(("version", "color"), [("v2", "black"), ("v3", "red")])
def test_productpage_stars(mesh: Mesh, version: str, color: str) -> None:
    status, _, page = request(mesh.productpage[version].port, "/productpage")
    assert status == 200
    assert f'<font color="{color}"' in page
    # Istio's markup: 5 + 4 full stars, 0 + 1 empty ones (Istio's tests count "glyphicon-star": 10).
    assert page.count('<span class="glyphicon glyphicon-star"></span>') == 9
    assert page.count('<span class="glyphicon glyphicon-star-empty"></span>') == 1
    assert page.count("glyphicon-star") == 10
    assert f"reviews-{version}" in page
    assert RATINGS_DOWN not in page


def test_keep_alive_and_content_length(mesh: Mesh) -> None:
    conn = http.client.HTTPConnection(LOOPBACK, mesh.productpage["v2"].port, timeout=10)
    try:
        for path in ("/health", "/api/v1/products", "/productpage", "/nope", "/health"):
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            assert resp.getheader("Content-Length") == str(len(body))
            assert not resp.will_close
    finally:
        conn.close()


def test_product_api(mesh: Mesh) -> None:
    port = mesh.productpage["v3"].port
    status, products = get_json(port, "/api/v1/products")
    assert status == 200 and products[0]["id"] == 0 and products[0]["title"] == "The Comedy of Errors"
    assert "descriptionHtml" in products[0]
    status, details = get_json(port, "/api/v1/products/0")
    assert status == 200 and details["ISBN-10"] == "1234567890"
    status, reviews = get_json(port, "/api/v1/products/0/reviews")
    assert status == 200 and reviews["version"] == "v3"
    status, ratings = get_json(port, "/api/v1/products/0/ratings")
    assert status == 200 and ratings["ratings"] == {"Reviewer1": 5, "Reviewer2": 4}
    status, _, _ = request(port, "/static/bookinfo.css")
    assert status == 200
    status, _, _ = request(port, "/static/missing.js")
    assert status == 404


def test_ratings_down(apps: Apps) -> None:
    details = apps.spawn("details")
    reviews = apps.spawn(
        "reviews",
        SERVICE_VERSION="v2",
        ENABLE_RATINGS="true",
        STAR_COLOR="black",
        RATINGS_HOSTNAME=LOOPBACK,
        RATINGS_SERVICE_PORT=dead_port(),
    )
    apps.wait(details)
    apps.wait(reviews)
    _, body = get_json(reviews.port, "/reviews/0")
    assert [r["rating"] for r in body["reviews"]] == [{"error": RATINGS_DOWN}] * 2
    pp = apps.start(
        "productpage",
        DETAILS_HOSTNAME=LOOPBACK,
        DETAILS_SERVICE_PORT=details.port,
        REVIEWS_HOSTNAME=LOOPBACK,
        REVIEWS_SERVICE_PORT=reviews.port,
    )
    status, _, page = request(pp.port, "/productpage")
    assert status == 200
    assert RATINGS_DOWN in page and REVIEW1 in page and "glyphicon-star" not in page


def test_reviews_and_details_down(apps: Apps) -> None:
    pp = apps.start(
        "productpage",
        DETAILS_HOSTNAME=LOOPBACK,
        DETAILS_SERVICE_PORT=dead_port(),
        REVIEWS_HOSTNAME=LOOPBACK,
        REVIEWS_SERVICE_PORT=dead_port(),
    )
    status, _, page = request(pp.port, "/productpage")
    assert status == 200
    assert REVIEWS_DOWN in page and DETAILS_DOWN in page
    assert "The Comedy of Errors" in page
    status, body = get_json(pp.port, "/api/v1/products/0/reviews")
    assert status == 500 and body == {"error": REVIEWS_DOWN}


def test_reviews_retried_once_and_status_passed_through(apps: Apps, recorder: Recorder) -> None:
    recorder.responses["/reviews/0"] = (503, {"error": "unavailable"})
    recorder.responses["/details/0"] = (200, {"id": 0, "type": "paperback"})
    pp = apps.start(
        "productpage",
        DETAILS_HOSTNAME=LOOPBACK,
        DETAILS_SERVICE_PORT=recorder.port,
        REVIEWS_HOSTNAME=LOOPBACK,
        REVIEWS_SERVICE_PORT=recorder.port,
    )
    status, _, page = request(pp.port, "/productpage")
    assert status == 200 and REVIEWS_DOWN in page and "paperback" in page
    assert len(recorder.headers_for("/reviews/0")) == 2
    status, _ = get_json(pp.port, "/api/v1/products/0/reviews")
    assert status == 503


TRACE_HEADERS = {
    "x-request-id": "req-123",
    "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7",
    "x-b3-spanid": "e457b5a2e4d86bd1",
    "x-b3-sampled": "1",
    "traceparent": "00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01",
    "x-datadog-trace-id": "42",
    "user-agent": "bookinfo-test/1.0",
}


def test_login_sets_session_and_end_user_propagates(apps: Apps, recorder: Recorder) -> None:
    recorder.responses["/details/0"] = (200, {"id": 0, "type": "paperback"})
    recorder.responses["/reviews/0"] = (200, {"id": "0", "podname": "fake", "reviews": []})
    pp = apps.start(
        "productpage",
        DETAILS_HOSTNAME=LOOPBACK,
        DETAILS_SERVICE_PORT=recorder.port,
        REVIEWS_HOSTNAME=LOOPBACK,
        REVIEWS_SERVICE_PORT=recorder.port,
    )
    status, headers, _ = request(
        pp.port,
        "/login",
        "POST",
        {"Content-Type": "application/x-www-form-urlencoded"},
        "username=jason&passwd=secret",
    )
    assert status == 302 and headers["location"] == "/productpage"
    assert headers["set-cookie"].startswith("session=jason;")

    # A client-supplied end-user header is ignored; only the session counts.
    status, _, page = request(pp.port, "/productpage", headers={"end-user": "mallory", **TRACE_HEADERS})
    assert status == 200 and "mallory" not in page
    anon = recorder.headers_for("/reviews/0")[-1]
    assert "end-user" not in anon and anon["x-request-id"] == "req-123"

    status, _, page = request(pp.port, "/productpage", headers={"Cookie": "session=jason", **TRACE_HEADERS})
    assert status == 200 and "Welcome jason" in page
    for path in ("/reviews/0", "/details/0"):
        seen = recorder.headers_for(path)[-1]
        assert seen["end-user"] == "jason"
        for name, value in TRACE_HEADERS.items():
            assert seen[name] == value, (path, name)

    status, headers, _ = request(pp.port, "/logout", "POST", body="")
    assert status == 302 and "Max-Age=0" in headers["set-cookie"]


def test_reviews_propagates_headers_to_ratings(apps: Apps, recorder: Recorder) -> None:
    recorder.responses["/ratings/0"] = (200, {"id": 0, "ratings": {"Reviewer1": 2, "Reviewer2": 3}})
    reviews = apps.start(
        "reviews",
        SERVICE_VERSION="v3",
        ENABLE_RATINGS="true",
        STAR_COLOR="red",
        RATINGS_HOSTNAME=LOOPBACK,
        RATINGS_SERVICE_PORT=recorder.port,
    )
    status, body = get_json(reviews.port, "/reviews/0", {"end-user": "jason", **TRACE_HEADERS})
    assert status == 200
    assert [r["rating"] for r in body["reviews"]] == [
        {"stars": 2, "color": "red"},
        {"stars": 3, "color": "red"},
    ]
    seen = recorder.headers_for("/ratings/0")[-1]
    assert seen["end-user"] == "jason"
    for name, value in TRACE_HEADERS.items():
        assert seen[name] == value, name


def test_sigterm_exits_promptly(apps: Apps) -> None:
    app = apps.start("ratings")
    start = time.monotonic()
    assert apps.stop(app) == 0
    assert time.monotonic() - start < 3


# --- manifests ----------------------------------------------------------------------------
def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_bookinfo_manifest() -> None:
    docs = _docs(BOOKINFO / "bookinfo.yaml")
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for svc in ("details", "ratings", "reviews", "productpage"):
        assert ("Service", svc) in kinds and ("ServiceAccount", f"bookinfo-{svc}") in kinds
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {
        "details-v1",
        "ratings-v1",
        "reviews-v1",
        "reviews-v2",
        "reviews-v3",
        "productpage-v1",
    }
    for name, dep in deployments.items():
        app, version = name.rsplit("-", 1)
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert labels == {"app": app, "version": version}
        pod = dep["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == f"bookinfo-{app}"
        (container,) = pod["containers"]
        assert container["image"] == f"docker.io/istio/examples-bookinfo-{app}-{version}:1.20.1"
        assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": 9080}
        assert (BOOKINFO / container["command"][1]).is_file()
    env = {e["name"]: e["value"] for e in deployments["reviews-v3"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {"SERVICE_VERSION": "v3", "ENABLE_RATINGS": "true", "STAR_COLOR": "red"}


def test_networking_manifests_parse() -> None:
    gw = _docs(BOOKINFO / "bookinfo-gateway.yaml")
    assert [d["kind"] for d in gw] == ["Gateway", "VirtualService"]
    files = sorted((BOOKINFO / "networking").glob("*.yaml"))
    assert len(files) >= 12
    for path in files:
        for doc in _docs(path):
            assert doc["apiVersion"] == "networking.istio.io/v1", path.name
    weights = [
        r["weight"]
        for r in _docs(BOOKINFO / "networking" / "virtual-service-reviews-80-20.yaml")[0]["spec"]["http"][0]["route"]
    ]
    assert weights == [80, 20]
    curl = _docs(REPO / "samples" / "curl" / "curl.yaml")
    assert [d["kind"] for d in curl] == ["ServiceAccount", "Service", "Deployment"]
