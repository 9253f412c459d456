"""Resilience and traffic policies with live traffic: retries, circuit breaking, outlier detection,
mirroring, consistent hashing and request header manipulation, as Istio's tasks show them.

One mesh for the module (its own state dir, run dir and ingress port, like test_lifecycle.py):
curl, httpbin, httpbin-mirror (v1 + v2), `flaky` (2 good pods + 1 that always answers 500) and
`sticky` (3 replicas answering their pod name). Each test deletes what it applied.
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.mesh import ACCESS_LOGGING, REPO, Applied, Mesh, applying, own_mesh, wait_until

pytestmark = pytest.mark.e2e

RUN_DIR = Path("/run/gsm-e2e-res")
MIRROR = REPO / "samples/httpbin/httpbin-mirror"
LOADGEN = str(REPO / "benchmarks/loadgen.py")
HTTPBIN_CLUSTER = "outbound|8000||httpbin.default.svc.cluster.local"

# Answers every request with its pod name (HOSTNAME); with BAD=1, answers 500 instead.
APP_PY = """\
import http.server, os

BAD = os.environ.get("BAD") == "1"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        body = os.environ["HOSTNAME"].encode()
        self.send_response(500 if BAD else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("", 8000), Handler).serve_forever()
"""


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"ports": [{"port": 8000, "name": "http"}], "selector": {"app": name}},
    }


def deployment(name: str, app: str, version: str, replicas: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    labels = {"app": app, "version": version}
    container: dict[str, Any] = {
        "name": app,
        "image": "python:3",
        "command": ["python3", "app.py"],
        "ports": [{"containerPort": 8000}],
        "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1},
    }
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [container]},
            },
        },
    }


def write_apps(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(APP_PY)
    docs = [
        service("flaky"),
        deployment("flaky-good", "flaky", "good", 2),
        deployment("flaky-bad", "flaky", "bad", 1, {"BAD": "1"}),
        service("sticky"),
        deployment("sticky", "sticky", "v1", 3),
    ]
    (folder / "apps.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("resilience")
    apps = write_apps(tmp / "apps")
    with own_mesh(
        RUN_DIR, tmp / "state", REPO / "samples/curl", REPO / "samples/httpbin", MIRROR, apps, ACCESS_LOGGING
    ) as m:
        yield m


@pytest.fixture
def applied(mesh: Mesh, tmp_path: Path) -> Iterator[Applied]:
    """Apply YAML written to tmp_path (`applied.docs`) or files (`applied(path)`); deleted at teardown."""
    with applying(mesh, tmp_path) as a:
        yield a


def virtual_service(name: str, host: str, route: dict[str, Any], **http: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {"hosts": [host], "http": [{"route": [route], **http}]},
    }


def destination_rule(name: str, host: str, traffic_policy: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": name},
        "spec": {"host": host, "trafficPolicy": traffic_policy},
    }


def load(mesh: Mesh, url: str, *, requests: int, connections: int = 3, headers: tuple[str, ...] = ()) -> dict[str, Any]:
    """benchmarks/loadgen.py in the curl pod, closed loop: {count, errors, codes: {"200": n}, ...}."""
    args = [
        "python3",
        LOADGEN,
        "--url",
        url,
        "--rate",
        "0",
        "--connections",
        str(connections),
        "--requests",
        str(requests),
    ]
    for h in headers:
        args += ["--header", h]
    result: dict[str, Any] = json.loads(mesh.exec("deploy/curl", *args).stdout)
    return result


def curl(mesh: Mesh, url: str, *headers: str) -> tuple[str, str]:
    """(response headers, body) of a curl from the meshed curl pod."""
    args = ["curl", "-sS", "--max-time", "5", "-D", "-"]
    for h in headers:
        args += ["-H", h]
    out = mesh.exec("deploy/curl", *args, url).stdout
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    return head, body


def sidecar_log(mesh: Mesh, ref: str) -> str:
    return mesh.cli("logs", ref, "-c", "istio-proxy").stdout


# -- 1. retries ------------------------------------------------------------------------------
def test_retries_hide_a_flaky_upstream_and_attempts_0_shows_it(mesh: Mesh, applied: Applied) -> None:
    url = "http://httpbin:8000/status/200,503"
    applied.docs(
        "retries.yaml",
        virtual_service(
            "httpbin", "httpbin", {"destination": {"host": "httpbin"}}, retries={"attempts": 10, "retryOn": "5xx"}
        ),
    )
    got = load(mesh, url, requests=200)
    assert got["errors"] == 0 and got["count"] == 200, got
    assert got["codes"].get("200", 0) >= 198, got

    applied.docs(
        "retries.yaml",
        virtual_service("httpbin", "httpbin", {"destination": {"host": "httpbin"}}, retries={"attempts": 0}),
    )
    got = load(mesh, url, requests=200)
    assert got["errors"] == 0 and got["count"] == 200, got
    assert set(got["codes"]) <= {"200", "503"}, got
    assert 60 <= got["codes"].get("503", 0) <= 140, got


# -- 2. circuit breaking ---------------------------------------------------------------------
def test_circuit_breaker_overflows_with_503_uo_and_counts_it(mesh: Mesh, applied: Applied) -> None:
    """Istio's circuit-breaking task: 1 connection, 1 pending request, 3 concurrent clients."""
    applied.docs(
        "breaker.yaml",
        destination_rule(
            "httpbin",
            "httpbin",
            {
                "connectionPool": {
                    "tcp": {"maxConnections": 1},
                    "http": {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1},
                },
                "outlierDetection": {
                    "consecutive5xxErrors": 1,
                    "interval": "1s",
                    "baseEjectionTime": "3m",
                    "maxEjectionPercent": 100,
                },
            },
        ),
    )
    got = load(mesh, "http://httpbin:8000/get", requests=100)
    assert got["errors"] == 0 and got["count"] == 100, got
    assert set(got["codes"]) <= {"200", "503"}, got
    assert got["codes"].get("503", 0) >= 5, got
    assert got["codes"].get("200", 0) >= 5, got

    # The client's sidecar says why: UO (upstream overflow) ...
    assert wait_until(
        lambda: re.search(r'"GET /get HTTP/1\.1" 503 UO\b', sidecar_log(mesh, "deploy/curl")) is not None,
        timeout=5,
        interval=0.5,
    ), sidecar_log(mesh, "deploy/curl")[-3000:]
    # ... and Envoy's stats count the overflows.
    out = mesh.cli("proxy-config", "clusters", "deploy/curl", "--stats").stdout
    m = re.search(rf"^cluster\.{re.escape(HTTPBIN_CLUSTER)}\.upstream_rq_pending_overflow: (\d+)$", out, re.MULTILINE)
    assert m is not None, out[-3000:]
    assert int(m.group(1)) > 0, m.group(0)


# -- 3. outlier detection --------------------------------------------------------------------
def test_outlier_detection_ejects_the_failing_pod(mesh: Mesh, applied: Applied) -> None:
    applied.docs(
        "outlier.yaml",
        destination_rule(
            "flaky",
            "flaky",
            {
                "outlierDetection": {
                    "consecutive5xxErrors": 1,
                    "interval": "1s",
                    "baseEjectionTime": "3m",
                    "maxEjectionPercent": 100,
                }
            },
        ),
        virtual_service("flaky", "flaky", {"destination": {"host": "flaky"}}, retries={"attempts": 0}),
    )
    # Without ejection a third of the requests would fail (no retries): warm up until the bad
    # pod has answered at least once (and so been ejected).
    warm = load(mesh, "http://flaky:8000/", requests=30, connections=1)
    assert warm["codes"].get("500", 0) >= 1, warm
    got = load(mesh, "http://flaky:8000/", requests=30, connections=1)
    assert got["codes"] == {"200": 30}, got


# -- 4. mirroring ----------------------------------------------------------------------------
def test_mirroring_sends_a_copy_to_v2_and_answers_from_v1(mesh: Mesh, applied: Applied) -> None:
    """Istio's mirroring task on samples/httpbin/httpbin-mirror."""
    applied(MIRROR / "networking/virtual-service-all-v1.yaml")

    def versions(prefix: str, n: int) -> collections.Counter[str]:
        seen: collections.Counter[str] = collections.Counter()
        for i in range(n):
            head, body = curl(mesh, "http://httpbin-mirror:8000/get", f"x-request-id: {prefix}-{i}")
            m = re.search(r"^x-httpbin-version: *(\S+)", head, re.MULTILINE | re.IGNORECASE)
            seen[m.group(1) if m else "none"] += 1
            assert json.loads(body).get("version") == (m.group(1) if m else None), body
        return seen

    def v2_ids(prefix: str) -> set[str]:
        log = mesh.cli("logs", "deploy/httpbin-v2").stdout
        return set(re.findall(rf"x-request-id=({re.escape(prefix)}-\d+)\b", log))

    assert versions("allv1", 5) == {"v1": 5}
    applied(MIRROR / "networking/virtual-service-mirror-v2.yaml")
    assert versions("mirror", 10) == {"v1": 10}
    expected = {f"mirror-{i}" for i in range(10)}
    assert wait_until(lambda: v2_ids("mirror") == expected, timeout=5, interval=0.3), v2_ids("mirror")
    assert v2_ids("allv1") == set(), "v2 got traffic before mirroring was configured"
    log = mesh.cli("logs", "deploy/httpbin-v2").stdout
    assert re.search(r"host=httpbin-mirror-shadow(:8000)? x-request-id=mirror-0\b", log), log[-2000:]


# -- 5. consistent hash ----------------------------------------------------------------------
def test_consistent_hash_on_a_header_is_sticky(mesh: Mesh, applied: Applied) -> None:
    applied.docs(
        "hash.yaml",
        destination_rule("sticky", "sticky", {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}}),
    )
    users = [f"user{i}" for i in range(10)]
    script = (
        "for u in " + " ".join(users) + "; do for i in $(seq 10); do "
        'printf "%s " "$u"; curl -sS --max-time 5 -H "x-user: $u" http://sticky:8000/; echo; done; done'
    )
    out = mesh.exec("deploy/curl", "sh", "-c", script).stdout
    landed: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in out.splitlines():
        user, _, pod = line.partition(" ")
        landed[user][pod] += 1
    assert set(landed) == set(users), out
    for user, pods in landed.items():
        assert len(pods) == 1 and sum(pods.values()) == 10 and next(iter(pods)).startswith("sticky-"), (user, pods)
    spread = {next(iter(pods)) for pods in landed.values()}
    assert len(spread) >= 2, landed


# -- 6. request headers ----------------------------------------------------------------------
def test_request_headers_set_add_remove_reach_the_app(mesh: Mesh, applied: Applied) -> None:
    applied.docs(
        "headers.yaml",
        virtual_service(
            "httpbin",
            "httpbin",
            {"destination": {"host": "httpbin"}},
            headers={
                "request": {
                    "set": {"x-gsm-set": "set-by-mesh"},
                    "add": {"x-gsm-add": "added-by-mesh"},
                    "remove": ["x-gsm-remove"],
                }
            },
        ),
    )
    _, body = curl(mesh, "http://httpbin:8000/headers", "x-gsm-remove: from-client", "x-gsm-set: from-client")
    headers = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
    assert headers.get("x-gsm-set") == "set-by-mesh", headers
    assert headers.get("x-gsm-add") == "added-by-mesh", headers
    assert "x-gsm-remove" not in headers, headers
