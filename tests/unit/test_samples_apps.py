"""The httpbin, tcp-echo and helloworld samples and benchmarks/loadgen.py, run as real
subprocesses on 127.0.0.1 (no mesh), plus their manifests."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from gossamer.resources.loader import parse_documents

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
HTTPBIN = SAMPLES / "httpbin"
TCP_ECHO = SAMPLES / "tcp-echo"
HELLOWORLD = SAMPLES / "helloworld"
LOADGEN = REPO / "benchmarks" / "loadgen.py"
LOOPBACK = "127.0.0.1"
LISTENING = re.compile(r"listening on [^\s,]+:(\d+)")


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    ports: list[int] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.ports[0]

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class Procs:
    """Starts sample servers on ephemeral loopback ports and stops them by PID."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[Proc] = []

    def start(self, cwd: Path, script: str, *args: str, listeners: int = 1, **env: str) -> Proc:
        full_env = dict(os.environ)
        full_env.update({"BIND_ADDRESS": LOOPBACK, "PORT": "0", "PYTHONUNBUFFERED": "1"})
        full_env.update(env)
        log = self.tmp / f"{Path(script).stem}-{len(self.procs)}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, script, *args],
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        p = Proc(script, proc, log)
        self.procs.append(p)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ports = [int(m) for m in LISTENING.findall(p.output())]
            if len(ports) >= listeners:
                p.ports = ports
                return p
            if proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"{script} did not start:\n{p.output()}")

    def stop(self, p: Proc) -> int:
        if p.proc.poll() is None:
            os.kill(p.proc.pid, signal.SIGTERM)
            try:
                p.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(p.proc.pid, signal.SIGKILL)
                p.proc.wait(timeout=5)
        return p.proc.returncode

    def stop_all(self) -> None:
        for p in self.procs:
            self.stop(p)


@pytest.fixture(scope="module")
def procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Procs]:
    ps = Procs(tmp_path_factory.mktemp("samples"))
    try:
        yield ps
    finally:
        ps.stop_all()


@pytest.fixture(scope="module")
def httpbin(procs: Procs) -> Proc:
    return procs.start(HTTPBIN, "src/httpbin.py")


@pytest.fixture(scope="module")
def httpbin_v2(procs: Procs) -> Proc:
    return procs.start(HTTPBIN / "httpbin-mirror", "../src/httpbin.py", SERVICE_VERSION="v2")


def request(
    port: int,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: str | bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=15)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def get_json(port: int, path: str, method: str = "GET", **kw: Any) -> Any:
    status, headers, body = request(port, path, method, **kw)
    assert status == 200, (status, body)
    assert headers["content-type"] == "application/json"
    return json.loads(body)


# --- httpbin -------------------------------------------------------------------------------
def test_httpbin_get(httpbin: Proc) -> None:
    obj = get_json(httpbin.port, "/get?a=1&a=2&b=x", headers={"x-request-id": "rid-get-1", "X-B3-TRACEID": "t"})
    assert set(obj) == {"args", "headers", "origin", "url"}
    assert obj["args"] == {"a": ["1", "2"], "b": "x"}
    assert obj["headers"]["X-Request-Id"] == "rid-get-1"
    assert obj["headers"]["X-B3-Traceid"] == "t"
    assert obj["headers"]["Host"] == f"{LOOPBACK}:{httpbin.port}"
    assert obj["origin"] == LOOPBACK
    assert obj["url"] == f"http://{LOOPBACK}:{httpbin.port}/get?a=1&a=2&b=x"
    xff = get_json(httpbin.port, "/ip", headers={"X-Forwarded-For": "10.1.2.3"})
    assert xff == {"origin": "10.1.2.3"}


def test_httpbin_headers_user_agent_uuid(httpbin: Proc) -> None:
    obj = get_json(httpbin.port, "/headers", headers={"end-user": "jason", "User-Agent": "ua/1"})
    assert obj["headers"]["End-User"] == "jason" and obj["headers"]["User-Agent"] == "ua/1"
    assert list(obj) == ["headers"]
    assert get_json(httpbin.port, "/user-agent", headers={"User-Agent": "ua/2"}) == {"user-agent": "ua/2"}
    assert re.fullmatch(r"[0-9a-f-]{36}", get_json(httpbin.port, "/uuid")["uuid"])


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_httpbin_anything_methods(httpbin: Proc, method: str) -> None:
    obj = get_json(httpbin.port, "/anything/x/y?q=1", method)
    assert obj["method"] == method and obj["args"] == {"q": "1"}
    assert set(obj) == {"args", "data", "files", "form", "headers", "json", "method", "origin", "url"}
    status, headers, body = request(httpbin.port, "/anything", "HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_httpbin_anything_bodies(httpbin: Proc) -> None:
    obj = get_json(
        httpbin.port, "/anything", "POST", body='{"a": [1, 2]}', headers={"Content-Type": "application/json"}
    )
    assert obj["json"] == {"a": [1, 2]} and obj["data"] == '{"a": [1, 2]}' and obj["form"] == {}
    obj = get_json(
        httpbin.port,
        "/anything",
        "PUT",
        body="k=v&k=w&z=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert obj["form"] == {"k": ["v", "w"], "z": "1"} and obj["data"] == "" and obj["json"] is None
    boundary = "XyZ"
    multipart = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="field"\r\n\r\nvalue\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="up"; filename="a.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\nfile body\r\n--{boundary}--\r\n"
    )
    obj = get_json(
        httpbin.port,
        "/anything",
        "POST",
        body=multipart,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert obj["form"] == {"field": "value"} and obj["files"] == {"up": "file body"}


def test_httpbin_status(httpbin: Proc) -> None:
    status, headers, body = request(httpbin.port, "/status/200")
    assert (status, body) == (200, b"") and headers["content-length"] == "0"
    assert request(httpbin.port, "/status/418")[0] == 418
    assert request(httpbin.port, "/status/503", "POST", body="x")[0] == 503
    assert request(httpbin.port, "/status/204", "DELETE")[0] == 204
    assert request(httpbin.port, "/status/abc")[0] == 400
    assert request(httpbin.port, "/status/301")[1]["location"] == "/redirect/1"
    seen = [request(httpbin.port, "/status/200,503")[0] for _ in range(100)]
    assert set(seen) == {200, 503}
    weighted = [request(httpbin.port, "/status/200:0,503:1")[0] for _ in range(20)]
    assert set(weighted) == {503}
    # No CORS headers of its own: the mesh's corsPolicy is what tests see.
    _, headers, _ = request(httpbin.port, "/get", headers={"Origin": "http://example.com"})
    assert not any(h.startswith("access-control-") for h in headers)


def test_httpbin_delay(httpbin: Proc) -> None:
    start = time.monotonic()
    obj = get_json(httpbin.port, "/delay/1?x=1")
    assert time.monotonic() - start >= 1.0
    assert obj["args"] == {"x": "1"} and "headers" in obj


def test_httpbin_response_headers_bytes_stream_cookies(httpbin: Proc) -> None:
    status, headers, body = request(httpbin.port, "/response-headers?X-Foo=bar&Cache-Control=no-cache")
    obj = json.loads(body)
    assert status == 200 and headers["x-foo"] == "bar" and headers["cache-control"] == "no-cache"
    assert obj["X-Foo"] == "bar" and obj["Content-Length"] == headers["content-length"] == str(len(body))
    status, headers, body = request(httpbin.port, "/bytes/64")
    assert status == 200 and len(body) == 64 and headers["content-type"] == "application/octet-stream"
    status, _, body = request(httpbin.port, "/stream/3")
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert status == 200 and [d["id"] for d in lines] == [0, 1, 2]
    assert get_json(httpbin.port, "/cookies", headers={"Cookie": "a=1; b=2"}) == {"cookies": {"a": "1", "b": "2"}}
    status, headers, body = request(httpbin.port, "/")
    assert status == 200 and b"httpbin" in body and headers["content-type"].startswith("text/html")
    assert request(httpbin.port, "/nope")[0] == 404


def test_httpbin_logs_request_ids(httpbin: Proc) -> None:
    request(httpbin.port, "/anything/logged", "PATCH", headers={"x-request-id": "rid-log-42"})
    deadline = time.monotonic() + 5
    while "rid-log-42" not in httpbin.output() and time.monotonic() < deadline:
        time.sleep(0.02)
    line = next(ln for ln in httpbin.output().splitlines() if "rid-log-42" in ln)
    assert "PATCH /anything/logged 200" in line


def test_httpbin_version(httpbin: Proc, httpbin_v2: Proc) -> None:
    status, headers, body = request(httpbin_v2.port, "/get")
    assert status == 200 and headers["x-httpbin-version"] == "v2" and json.loads(body)["version"] == "v2"
    assert request(httpbin_v2.port, "/status/503")[1]["x-httpbin-version"] == "v2"
    status, headers, body = request(httpbin.port, "/get")
    assert "x-httpbin-version" not in headers and "version" not in json.loads(body)


def test_httpbin_keepalive(httpbin: Proc) -> None:
    conn = http.client.HTTPConnection(LOOPBACK, httpbin.port, timeout=5)
    try:
        for path, method, body in [("/anything", "POST", "abc"), ("/status/503", "PUT", "x"), ("/get", "GET", None)]:
            conn.request(method, path, body=body)
            resp = conn.getresponse()
            resp.read()
            assert resp.status in (200, 503)
    finally:
        conn.close()


# --- tcp-echo ------------------------------------------------------------------------------
def echo(port: int, lines: list[bytes]) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        sock.sendall(b"".join(lines))
        data = b""
        while data.count(b"\n") < len(lines):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def test_tcp_echo(procs: Procs) -> None:
    one = procs.start(TCP_ECHO, "src/tcp_echo.py", "0,0", "one", listeners=2)
    two = procs.start(TCP_ECHO, "src/tcp_echo.py", "0", "two")
    assert len(set(one.ports)) == 2
    for port in one.ports:
        assert echo(port, [b"hello\n", b"world\n"]) == b"one hello\none world\n"
    assert echo(two.port, [b"hi\n"]) == b"two hi\n"
    assert procs.stop(one) == 0


# --- helloworld ----------------------------------------------------------------------------
def test_helloworld(procs: Procs) -> None:
    app = procs.start(HELLOWORLD, "src/helloworld.py", SERVICE_VERSION="v1", HOSTNAME="helloworld-v1-abc")
    status, headers, body = request(app.port, "/hello")
    assert (status, body) == (200, b"Hello version: v1, instance: helloworld-v1-abc\n")
    assert request(app.port, "/health")[0] == 200
    assert request(app.port, "/nope")[0] == 404


# --- loadgen -------------------------------------------------------------------------------
def loadgen(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(LOADGEN), *args], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def test_loadgen_codes_histogram(httpbin: Proc) -> None:
    base = f"http://{LOOPBACK}:{httpbin.port}"
    r = loadgen("--url", f"{base}/status/503", "--rate", "0", "--connections", "2", "--requests", "40")
    assert r["codes"] == {"503": 40} and r["errors"] == 0 and r["count"] == 40
    for key in ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "seconds"):
        assert isinstance(r[key], float)
    r = loadgen(
        "--url", f"{base}/status/200,503", "--rate", "500", "--requests", "60", "--method", "POST", "--data", "x"
    )
    assert sum(r["codes"].values()) == 60 and set(r["codes"]) <= {"200", "503"} and r["errors"] == 0


def test_loadgen_method_header_duration(httpbin: Proc) -> None:
    base = f"http://{LOOPBACK}:{httpbin.port}"
    r = loadgen(
        "--url",
        f"{base}/anything/lg",
        "--rate",
        "100",
        "--duration",
        "0.3",
        "--method",
        "PUT",
        "--header",
        "x-request-id: lg-rid-7",
        "--header",
        "end-user:jason",
    )
    assert r["codes"] == {"200": r["count"]} and 20 <= r["count"] <= 31
    log = httpbin.output()
    assert "PUT /anything/lg 200" in log and "x-request-id=lg-rid-7" in log


def test_loadgen_transport_errors() -> None:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        dead = sock.getsockname()[1]
    r = loadgen("--url", f"http://{LOOPBACK}:{dead}/", "--rate", "0", "--connections", "1", "--requests", "5")
    assert r["errors"] == 5 and r["count"] == 0 and r["codes"] == {}


# --- manifests -----------------------------------------------------------------------------
NEW_MANIFESTS = sorted(p for d in (HTTPBIN, TCP_ECHO, HELLOWORLD) for p in d.rglob("*.yaml"))


@pytest.mark.parametrize("path", NEW_MANIFESTS, ids=lambda p: str(p.relative_to(SAMPLES)))
def test_manifests_parse_without_errors(path: Path) -> None:
    resources, issues = parse_documents(path.read_text(), str(path))
    assert resources
    assert [str(i) for i in issues if i.level == "error"] == []


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _by_kind(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in _docs(path)}


def _commands_exist(base: Path, deployment: dict[str, Any]) -> None:
    for c in deployment["spec"]["template"]["spec"]["containers"]:
        assert (base / c["command"][1]).is_file(), c["command"]


def test_httpbin_manifests() -> None:
    objs = _by_kind(HTTPBIN / "httpbin.yaml")
    svc = objs[("Service", "httpbin")]["spec"]
    assert svc["ports"] == [{"name": "http", "port": 8000, "targetPort": 8080}]
    assert ("ServiceAccount", "httpbin") in objs
    dep = objs[("Deployment", "httpbin")]
    assert dep["spec"]["template"]["metadata"]["labels"] == {"app": "httpbin", "version": "v1"}
    _commands_exist(HTTPBIN, dep)
    mirror_dir = HTTPBIN / "httpbin-mirror"
    objs = _by_kind(mirror_dir / "httpbin-mirror.yaml")
    assert objs[("Service", "httpbin-mirror")]["spec"]["ports"][0]["port"] == 8000
    for v in ("v1", "v2"):
        dep = objs[("Deployment", f"httpbin-{v}")]
        assert dep["spec"]["template"]["metadata"]["labels"] == {"app": "httpbin-mirror", "version": v}
        env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["SERVICE_VERSION"] == v
        _commands_exist(mirror_dir, dep)
    subsets = objs[("DestinationRule", "httpbin-mirror")]["spec"]["subsets"]
    assert [s["name"] for s in subsets] == ["v1", "v2"]
    # Only the top-level files are loaded by `gossamer up <folder>`.
    assert sorted(p.name for p in HTTPBIN.glob("*.yaml")) == ["httpbin.yaml"]


def test_tcp_echo_manifests() -> None:
    objs = _by_kind(TCP_ECHO / "tcp-echo-services.yaml")
    ports = objs[("Service", "tcp-echo")]["spec"]["ports"]
    assert [(p["name"], p["port"]) for p in ports] == [("tcp", 9000), ("tcp-other", 9001)]
    for v, prefix in (("v1", "one"), ("v2", "two")):
        dep = objs[("Deployment", f"tcp-echo-{v}")]
        assert dep["spec"]["template"]["metadata"]["labels"] == {"app": "tcp-echo", "version": v}
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        assert c["args"] == ["9000,9001,9002", prefix]
        assert c["readinessProbe"]["tcpSocket"] == {"port": 9000}
        _commands_exist(TCP_ECHO, dep)
    net = TCP_ECHO / "networking"
    gw = _by_kind(net / "tcp-echo-all-v1.yaml")
    assert gw[("Gateway", "tcp-echo-gateway")]["spec"]["servers"][0]["port"]["number"] == 31400

    def weights(name: str) -> list[int]:
        vs = next(d for d in _docs(net / name) if d["kind"] == "VirtualService")
        return [r.get("weight", 100) for r in vs["spec"]["tcp"][0]["route"]]

    assert weights("tcp-echo-all-v1.yaml") == [100]
    assert weights("tcp-echo-20-v2.yaml") == [80, 20]
    assert weights("tcp-echo-mesh-all-v1.yaml") == [100, 0]
    assert weights("tcp-echo-mesh-20-v2.yaml") == [80, 20]
    mesh_vs = next(d for d in _docs(net / "tcp-echo-mesh-20-v2.yaml") if d["kind"] == "VirtualService")
    assert mesh_vs["spec"]["gateways"] == ["mesh"] and mesh_vs["spec"]["tcp"][0]["match"] == [{"port": 9000}]


def test_helloworld_manifest() -> None:
    objs = _by_kind(HELLOWORLD / "helloworld.yaml")
    assert objs[("Service", "helloworld")]["spec"]["ports"] == [{"port": 5000, "name": "http"}]
    for v in ("v1", "v2"):
        dep = objs[("Deployment", f"helloworld-{v}")]
        assert dep["spec"]["template"]["metadata"]["labels"] == {"app": "helloworld", "version": v}
        _commands_exist(HELLOWORLD, dep)
