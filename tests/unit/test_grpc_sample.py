"""The grpc-echo sample (server and client) as real subprocesses on 127.0.0.1 (no mesh), its
manifests, and the PATH that lets a pod's `python3` import grpcio."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
import yaml

from gossamer.registry.types import protocol_for_port
from gossamer.resources.loader import parse_documents
from gossamer.runtime.processes import base_env, path_with_own_python

REPO = Path(__file__).resolve().parents[2]
GRPC_ECHO = REPO / "samples" / "grpc-echo"
SERVER = GRPC_ECHO / "src" / "grpc_echo.py"
CLIENT = GRPC_ECHO / "src" / "client.py"
LOOPBACK = "127.0.0.1"
LISTENING = re.compile(r"listening on [^\s,]+:(\d+)")


class Server:
    def __init__(self, log: Path, **env: str) -> None:
        self.log = log
        full_env = {**os.environ, "BIND_ADDRESS": LOOPBACK, "PORT": "0", "PYTHONUNBUFFERED": "1", **env}
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, str(SERVER)],
                cwd=GRPC_ECHO,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            m = LISTENING.search(self.output())
            if m:
                self.port = int(m.group(1))
                self.target = f"{LOOPBACK}:{self.port}"
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise AssertionError(f"grpc_echo.py did not start:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        return self.proc.returncode


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def _start(**env: str) -> Server:
        servers.append(Server(tmp_path / f"server-{len(servers)}.log", **env))
        return servers[-1]

    yield _start
    for s in servers:
        s.stop()


def say(
    target: str, message: bytes, metadata: tuple[tuple[str, str], ...] = ()
) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    with grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)]) as channel:
        reply, call = channel.unary_unary("/echo.Echo/Say").with_call(message, metadata=metadata or None, timeout=10)
        return reply, tuple(call.initial_metadata() or ())


def client(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return subprocess.run(
        [sys.executable, str(CLIENT), target, *args], capture_output=True, text=True, timeout=30, env=env
    )


def load_server_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grpc_echo_sample", SERVER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- server --------------------------------------------------------------------------------
def test_server_echoes_raw_bytes_with_its_version_and_echo_metadata(start: Any) -> None:
    server = start(SERVICE_VERSION="v2")
    reply, md = say(server.target, b"hello \x00\xff", (("echo-user", "jason"), ("other", "x")))
    assert reply == b"v2 hello \x00\xff"
    assert ("echo-user", "jason") in md and not any(k == "other" for k, _ in md)
    assert re.search(r"/echo\.Echo/Say OK from ipv4:127\.0\.0\.1:\d+ \(8 bytes\)", server.output())
    with grpc.insecure_channel(server.target) as channel, pytest.raises(grpc.RpcError) as err:
        channel.unary_unary("/echo.Echo/Other")(b"x", timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert server.stop() == 0
    assert "stopped" in server.output()


def test_server_version_defaults_to_v1(start: Any) -> None:
    server = start()
    assert say(server.target, b"x")[0] == b"v1 x"


def test_server_fails_an_even_share_of_calls(start: Any) -> None:
    server = start(SERVICE_VERSION="v3", FAIL_CODE="unavailable", FAIL_RATE="0.5")
    assert "failing 50% of calls with UNAVAILABLE" in server.output()
    seen = []
    with grpc.insecure_channel(server.target) as channel:
        stub = channel.unary_unary("/echo.Echo/Say")
        for _ in range(6):
            try:
                seen.append(stub(b"hi", timeout=10).decode())
            except grpc.RpcError as e:
                assert "injected UNAVAILABLE" in e.details()
                seen.append(e.code().name)
    assert seen == ["v3 hi", "UNAVAILABLE"] * 3


def test_failure_spread() -> None:
    module = load_server_module()

    def pattern(code: grpc.StatusCode | None, rate: float, n: int = 8) -> str:
        failures = module.Failures(code, rate)
        return "".join("x" if failures.next() else "." for _ in range(n))

    assert pattern(grpc.StatusCode.INTERNAL, 0.25) == "...x...x"
    assert pattern(grpc.StatusCode.INTERNAL, 1.0) == "xxxxxxxx"
    assert pattern(grpc.StatusCode.INTERNAL, 0.0) == "........"
    assert pattern(None, 1.0) == "........"
    assert pattern(grpc.StatusCode.INTERNAL, 7.0) == "xxxxxxxx"  # clamped to 1


def test_server_rejects_unknown_fail_code(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SERVER)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "BIND_ADDRESS": LOOPBACK, "PORT": "0", "FAIL_CODE": "NOPE"},
    )
    assert proc.returncode != 0 and "unknown gRPC status 'NOPE'" in proc.stderr


# --- client --------------------------------------------------------------------------------
def test_client_prints_one_line_per_call(start: Any) -> None:
    server = start(SERVICE_VERSION="v1")
    proc = client(server.target, "--count", "3", "--metadata", "echo-k=v", "--metadata", "plain=1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["v1 hello echo-k=v"] * 3
    proc = client(server.target, "-n", "2", "--message", "ping")
    assert (proc.returncode, proc.stdout.splitlines()) == (0, ["v1 ping"] * 2)


def test_client_prints_status_names_and_exits_1_on_failures(start: Any) -> None:
    server = start(SERVICE_VERSION="v2", FAIL_CODE="PERMISSION_DENIED", FAIL_RATE="0.5")
    proc = client(server.target, "--count", "4")
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == ["v2 hello", "PERMISSION_DENIED"] * 2
    # Nothing listening: every call ends UNAVAILABLE.
    port = server.port
    server.stop()
    proc = client(f"{LOOPBACK}:{port}", "--count", "2", "--timeout", "2")
    assert (proc.returncode, proc.stdout.splitlines()) == (1, ["UNAVAILABLE"] * 2)


def test_client_rejects_bad_metadata() -> None:
    proc = client("127.0.0.1:1", "--metadata", "novalue")
    assert proc.returncode == 2 and "expected KEY=VALUE" in proc.stderr


# --- manifests -----------------------------------------------------------------------------
MANIFESTS = sorted(GRPC_ECHO.rglob("*.yaml"))


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(GRPC_ECHO)))
def test_manifests_parse_without_errors(path: Path) -> None:
    resources, issues = parse_documents(path.read_text(), str(path))
    assert resources
    assert [str(i) for i in issues if i.level == "error"] == []


def test_grpc_echo_manifest() -> None:
    docs = [d for d in yaml.safe_load_all((GRPC_ECHO / "grpc-echo.yaml").read_text()) if d]
    objs = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    [port] = objs[("Service", "grpc-echo")]["spec"]["ports"]
    assert (port["name"], port["port"]) == ("grpc", 7070)
    assert protocol_for_port(port["name"], port.get("appProtocol")) == "grpc"
    for v in ("v1", "v2"):
        dep = objs[("Deployment", f"grpc-echo-{v}")]["spec"]
        assert dep["template"]["metadata"]["labels"] == {"app": "grpc-echo", "version": v}
        (c,) = dep["template"]["spec"]["containers"]
        assert c["command"] == ["python3", "src/grpc_echo.py"] and (GRPC_ECHO / c["command"][1]).is_file()
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env == {"PORT": "7070", "SERVICE_VERSION": v}
        assert c["readinessProbe"]["tcpSocket"] == {"port": 7070}
    # Only grpc-echo.yaml is loaded by `gossamer up samples/grpc-echo`.
    assert sorted(p.name for p in GRPC_ECHO.glob("*.yaml")) == ["grpc-echo.yaml"]


# --- the Python on a pod's PATH ------------------------------------------------------------
def test_pods_get_the_python_running_gossamer_first_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    own = os.path.dirname(sys.executable)
    assert path_with_own_python("/usr/bin:/bin") == f"{own}:/usr/bin:/bin"
    assert path_with_own_python(f"{own}:/usr/bin") == f"{own}:/usr/bin"  # already first: unchanged
    assert path_with_own_python(f"/usr/bin:{own}:/bin") == f"{own}:/usr/bin:/bin"  # moved, not repeated
    assert path_with_own_python("") == own
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert base_env()["PATH"] == f"{own}:/usr/bin:/bin"
    monkeypatch.delenv("PATH")
    assert base_env()["PATH"].split(":")[0] == own
    # So `python3` in a container command is this Python, with grpcio.
    found = subprocess.run(
        ["python3", "-c", "import grpc, sys; print(sys.prefix)"],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert found.returncode == 0 and found.stdout.strip() == sys.prefix, found.stderr
