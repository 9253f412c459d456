"""Drive a real mesh through the `gossamer` CLI, as a user would."""

from __future__ import annotations

import contextlib
import fcntl
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gossamer.cli.client import ApiClient

REPO = Path(__file__).resolve().parents[2]
# The mesh comes without access logs (Istio's default profile); tests that read them turn them on the
# Istio way: a mesh-wide Telemetry with the envoy provider.
ACCESS_LOGGING = REPO / "samples/telemetry/access-logging.yaml"
GOSSAMER = [sys.executable, "-m", "gossamer.cli.main"]
# The session-wide bookinfo mesh (conftest.py) lives here; it must be down before another mesh starts.
BOOKINFO_RUN_DIR = Path("/run/gsm-e2e")


def needs_root_reason() -> str | None:
    if os.geteuid() != 0:
        return "end-to-end tests need root (network namespaces, iptables)"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "`ip netns` is not available"
    return None


def skip_without_root() -> None:
    """pytest.skip when needs_root_reason() says so."""
    import pytest  # here, not at the top: the benchmarks import this module without pytest

    reason = needs_root_reason()
    if reason:
        pytest.skip(reason)


MACHINE_LOCK = Path("/run/gossamer-e2e.lock")


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """One mesh per machine (one gsm0 bridge, one pod range): serialize test sessions and benchmarks."""
    with open(MACHINE_LOCK, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Response:
    status: int
    body: str
    headers: dict[str, str]


@dataclass
class Mesh:
    state_dir: Path
    run_dir: Path
    ingress_port: int

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [*GOSSAMER, "--state-dir", str(self.state_dir), "--run-dir", str(self.run_dir), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, input=stdin)
        if check and proc.returncode != 0:
            raise AssertionError(f"gossamer {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def apply(self, *paths: Path | str, wait: bool = True) -> subprocess.CompletedProcess[str]:
        args = ["apply"]
        for p in paths:
            args += ["-f", str(p)]
        return self.cli(*args, *(["--wait"] if wait else []))

    def delete(self, *paths: Path | str) -> subprocess.CompletedProcess[str]:
        args = ["delete"]
        for p in paths:
            args += ["-f", str(p)]
        return self.cli(*args, "--wait")

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = json.loads(self.cli("status", "-o", "json").stdout)
        return status

    def get(
        self, path: str, headers: dict[str, str] | None = None, *, data: bytes | None = None, timeout: float = 10
    ) -> Response:
        req = urllib.request.Request(f"http://127.0.0.1:{self.ingress_port}{path}", headers=headers or {}, data=data)
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(req, timeout=timeout) as resp:
                return Response(resp.status, resp.read().decode(), {k.lower(): v for k, v in resp.headers.items()})
        except urllib.error.HTTPError as e:
            return Response(e.code, e.read().decode(errors="replace"), {k.lower(): v for k, v in e.headers.items()})

    def exec(self, ref: str, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """COMMAND in the pod as its container's user (no capabilities), as `kubectl exec`."""
        return self.cli("exec", ref, "--", *command, check=check)

    def pod(self, ref: str, namespace: str = "default") -> dict[str, Any]:
        status, body = ApiClient(self.run_dir / "api.sock", timeout=10).get(f"/v1/pods/{namespace}/{ref}")
        assert status == 200, body
        return dict(body)

    def root_exec(self, ref: str, *command: str, namespace: str = "default") -> subprocess.CompletedProcess[str]:
        """COMMAND in the pod's network namespace as root (the node's administrator, not the app)."""
        netns = self.pod(ref, namespace)["netns"]
        return subprocess.run(["ip", "netns", "exec", netns, *command], capture_output=True, text=True, timeout=30)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


REVIEWS_VERSION = re.compile(r"reviews-(v[123])")


def reviews_version(page: str) -> str | None:
    m = REVIEWS_VERSION.search(page)
    return m.group(1) if m else None


def wait_until(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def leftovers() -> list[str]:
    """What a mesh could leave on the machine: namespaces, the bridge, /etc/netns entries, the host's
    iptables rules for the ingress gateway."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line.split()[0]}" for line in netns.splitlines() if line.startswith("gsm")]
    if subprocess.run(["ip", "link", "show", "gsm0"], capture_output=True).returncode == 0:
        found.append("bridge gsm0")
    routes = subprocess.run(["ip", "route", "show", "10.96.0.0/16"], capture_output=True, text=True).stdout
    if routes.strip():
        found.append(f"route {routes.strip()}")
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    found += [f"iptables {line}" for line in rules.splitlines() if "GSM_" in line]
    etc = Path("/etc/netns")
    if etc.exists():
        found += [f"/etc/netns/{p.name}" for p in etc.iterdir() if p.name.startswith("gsm")]
    return found


def stop_shared_bookinfo() -> None:
    """The shared bookinfo mesh (if this session started it) owns gsm0: stop it, then check nothing is left."""
    if leftovers() and ApiClient(BOOKINFO_RUN_DIR / "api.sock", timeout=2).alive():
        Mesh(state_dir=Path("/nonexistent-gsm-e2e-state"), run_dir=BOOKINFO_RUN_DIR, ingress_port=0).cli(
            "down", check=False, timeout=120
        )
    assert leftovers() == [], f"another mesh is running on this machine: {leftovers()}"


@contextlib.contextmanager
def own_mesh(
    run_dir: Path, state_dir: Path, *paths: str | Path, timeout: float = 180, up_args: tuple[str, ...] = ()
) -> Iterator[Mesh]:
    """A mesh of a module's own (`up --detach` on PATHS, a free ingress port, UP_ARGS), after stopping the
    shared bookinfo one; `down` afterwards, and nothing may be left on the machine."""
    skip_without_root()
    stop_shared_bookinfo()
    mesh = Mesh(state_dir=state_dir, run_dir=run_dir, ingress_port=free_port())
    try:
        mesh.cli(
            "up",
            *[str(p) for p in paths],
            "--detach",
            "--ingress-port",
            str(mesh.ingress_port),
            *up_args,
            timeout=timeout,
        )
        yield mesh
    finally:
        mesh.cli("down", check=False, timeout=120)
    assert leftovers() == []


class Applied:
    """Files a test applies; every one of them is deleted (newest first) at teardown (see `applying`)."""

    def __init__(self, mesh: Mesh, tmp_path: Path) -> None:
        self.mesh = mesh
        self.tmp_path = tmp_path
        self.paths: list[Path] = []

    def __call__(self, *paths: Path) -> None:
        for p in paths:
            if p not in self.paths:
                self.paths.append(p)
        self.mesh.apply(*paths)

    def yaml(self, name: str, text: str) -> Path:
        """Write TEXT to NAME in tmp_path (not applied)."""
        path = self.tmp_path / name
        path.write_text(text)
        return path

    def docs(self, name: str, *docs: dict[str, Any]) -> Path:
        """Write DOCS as one YAML file NAME in tmp_path and apply it."""
        path = self.yaml(name, yaml.safe_dump_all(docs, sort_keys=False))
        self(path)
        return path

    def cleanup(self) -> None:
        for p in reversed(self.paths):
            self.mesh.cli("delete", "-f", str(p), "--wait", check=False)


@contextlib.contextmanager
def applying(mesh: Mesh, tmp_path: Path) -> Iterator[Applied]:
    applied = Applied(mesh, tmp_path)
    try:
        yield applied
    finally:
        applied.cleanup()


HOST_ADDRESS = "10.244.0.1"  # the gsm0 bridge: the node's address on the pod network


class _OutsideHandler(http.server.BaseHTTPRequestHandler):
    """A server outside every pod: answers with the Host and path it was asked for."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = f"outside host={self.headers.get('Host')} path={self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving_on_host(port: int) -> Iterator[None]:
    """An HTTP server on the node's pod-network address (needs gsm0: start it inside a mesh)."""
    server = http.server.ThreadingHTTPServer((HOST_ADDRESS, port), _OutsideHandler)
    try:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield
    finally:
        server.shutdown()
        server.server_close()


def curl_status_body(mesh: Mesh, url: str, ref: str = "deploy/curl") -> tuple[str, str]:
    """(status code, body) of a GET from a pod; the code is "000" when curl got no HTTP answer."""
    proc = mesh.exec(ref, "curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}", url, check=False)
    body, _, code = proc.stdout.rpartition("\n")
    return code.strip(), body
