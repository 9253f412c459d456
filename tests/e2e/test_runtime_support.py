"""Shared helpers for the runtime end-to-end tests (root + iproute2 required); no tests here."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from gossamer.runtime.types import ContainerSpec, DeploymentSpec, Probe


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "runtime e2e tests need root (network namespaces, veths, iptables)"
    if shutil.which("ip") is None:
        return "iproute2 `ip` not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`ip netns` unavailable: {probe.stderr.strip()}"
    for tool in ("iptables-restore", "iptables-save", "setpriv", "curl", "getent"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    # Not "gsm0 exists": this is evaluated at collection, before the session takes the machine lock, so
    # another session's mesh would silently skip these tests; under the lock a leftover gsm0 must fail.
    return None


requires_root_netns = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


def short_run_dir() -> Path:
    """Unix socket paths must stay short (< 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix="gsm-t", dir="/tmp"))


def sh(*argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)


def in_pod(netns: str, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", netns, *argv, timeout=timeout)


async def eventually(pred: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


def http_server_deployment(
    name: str,
    port: int,
    *,
    namespace: str = "default",
    replicas: int = 1,
    inject_sidecar: bool = False,
    env: tuple[tuple[str, str], ...] = (),
    probe: str = "http",
) -> DeploymentSpec:
    # Print the pod env first (checked by the tests), then serve.
    script = (
        f'echo "env HOSTNAME=$HOSTNAME POD_IP=$POD_IP POD_NAMESPACE=$POD_NAMESPACE"; exec python3 -m http.server {port}'
    )
    return DeploymentSpec(
        name=name,
        namespace=namespace,
        replicas=replicas,
        labels=(("app", name),),
        annotations=(),
        service_account=name,
        containers=(
            ContainerSpec(
                name=name,
                command=("sh", "-c", script),
                env=env,
                ports=(port,),
                readiness_probe=Probe(kind=probe, port=port, period_seconds=0.5),  # type: ignore[arg-type]
            ),
        ),
        inject_sidecar=inject_sidecar,
    )


def gsm_netns() -> set[str]:
    out = sh("ip", "netns", "list").stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith("gsm-")}
