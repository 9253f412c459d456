"""Drive a real mesh through the `gossamer` CLI, as a user would."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
GOSSAMER = [sys.executable, "-m", "gossamer.cli.main"]


def needs_root_reason() -> str | None:
    if os.geteuid() != 0:
        return "end-to-end tests need root (network namespaces, iptables)"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "`ip netns` is not available"
    return None


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

    def cli(self, *args: str, check: bool = True, timeout: float = 120, stdin: str | None = None
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
        return json.loads(self.cli("status", "-o", "json").stdout)

    def get(self, path: str, headers: dict[str, str] | None = None, *, data: bytes | None = None,
            timeout: float = 10) -> Response:
        req = urllib.request.Request(f"http://127.0.0.1:{self.ingress_port}{path}", headers=headers or {},
                                     data=data)
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(req, timeout=timeout) as resp:
                return Response(resp.status, resp.read().decode(), {k.lower(): v for k, v in resp.headers.items()})
        except urllib.error.HTTPError as e:
            return Response(e.code, e.read().decode(errors="replace"), {k.lower(): v for k, v in e.headers.items()})

    def exec(self, ref: str, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cli("exec", ref, "--", *command, check=check)


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
    """What a mesh could leave on the machine: namespaces, the bridge, /etc/netns entries."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line.split()[0]}" for line in netns.splitlines() if line.startswith("gsm")]
    if subprocess.run(["ip", "link", "show", "gsm0"], capture_output=True).returncode == 0:
        found.append("bridge gsm0")
    routes = subprocess.run(["ip", "route", "show", "10.96.0.0/16"], capture_output=True, text=True).stdout
    if routes.strip():
        found.append(f"route {routes.strip()}")
    etc = Path("/etc/netns")
    if etc.exists():
        found += [f"/etc/netns/{p.name}" for p in etc.iterdir() if p.name.startswith("gsm")]
    return found
