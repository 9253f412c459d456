"""`gossamer up`: run the control plane and the local runtime in this process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from aiohttp import web

from gossamer.api.server import Api
from gossamer.cli.client import ApiClient
from gossamer.controlplane.daemon import ControlPlane
from gossamer.controlplane.paths import Paths
from gossamer.controlplane.watch import manifest_files, read_manifest
from gossamer.runtime.local import cleanup_leftovers
from gossamer.security.settings import CertSettings

log = logging.getLogger("gossamer.up")

READY_TIMEOUT_S = 300.0


def read_manifests(paths: list[Path]) -> list[tuple[str, str]]:
    return [(str(f), read_manifest(f)) for f in manifest_files(paths)]


async def run_up(paths: Paths, manifests: list[Path], ingress_port: int, metrics_port: int = 0,
                 dashboard_port: int = 0, *, ingress_tls_port: int = 8443, egress_gateway: bool = False,
                 certs: CertSettings | None = None) -> int:
    cleanup_leftovers(paths.state_dir / "runtime")
    cp = ControlPlane(paths, ingress_port=ingress_port, ingress_tls_port=ingress_tls_port,
                      egress_gateway=egress_gateway, certs=certs or CertSettings())
    result = await cp.start(read_manifests(manifests))
    for w in [*result.warnings, *result.notes]:
        print(w, file=sys.stderr)
    if not result.ok:
        for e in result.errors:
            print(e, file=sys.stderr)
        await cp.stop(wipe=False)
        return 1
    cp.watcher.watch(manifests)
    shutdown = asyncio.Event()
    wipe = {"on_exit": True}
    api = Api(cp, shutdown)
    runner = web.AppRunner(api.app(), access_log=None)
    await runner.setup()
    paths.api_socket.unlink(missing_ok=True)
    site = web.UnixSite(runner, str(paths.api_socket))
    await site.start()
    metrics_runner: web.AppRunner | None = None
    if metrics_port:
        # Prometheus scrapes Istio's metrics here (loopback only: nothing leaves the machine).
        metrics_runner = web.AppRunner(api.metrics_app(), access_log=None)
        await metrics_runner.setup()
        try:
            await web.TCPSite(metrics_runner, "127.0.0.1", metrics_port).start()
        except OSError as e:
            print(f"warning: metrics not served on 127.0.0.1:{metrics_port}: {e}", file=sys.stderr)
    dashboard_runner = await _serve_dashboard(api, dashboard_port) if dashboard_port else None
    paths.pid_file.write_text(str(os.getpid()))
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        # Ctrl-C / SIGTERM stop the mesh but keep the applied config for the next `up`.
        wipe["on_exit"] = False
        shutdown.set()

    loop.add_signal_handler(signal.SIGINT, interrupted)
    loop.add_signal_handler(signal.SIGTERM, interrupted)
    started = time.monotonic()
    announced = False
    while not shutdown.is_set():
        if not announced and cp.is_ready():
            announced = True
            n_pods = len(cp.runtime.pods())
            print(f"Mesh ready in {time.monotonic() - started:.1f}s: {n_pods} pods, "
                  f"{len(cp.ads.proxies())} proxies in sync.", flush=True)
            print(f"Ingress: {cp.ingress_url}", flush=True)
            if api.dashboard_url:
                print(f"Dashboard: {api.dashboard_url}", flush=True)
        try:
            await asyncio.wait_for(shutdown.wait(), timeout=0.2)
        except TimeoutError:
            pass
    print("Stopping the mesh...", flush=True)
    for extra in (metrics_runner, dashboard_runner):
        if extra is not None:
            await extra.cleanup()
    await runner.cleanup()
    paths.api_socket.unlink(missing_ok=True)
    await cp.stop(wipe=wipe["on_exit"])
    paths.pid_file.unlink(missing_ok=True)
    return 0


async def _serve_dashboard(api: Api, port: int) -> web.AppRunner | None:
    """The dashboard on loopback only (read only; nothing leaves the machine)."""
    from gossamer.dashboard import dashboard_app

    runner = web.AppRunner(dashboard_app(api), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
    except OSError as e:
        print(f"warning: dashboard not served on 127.0.0.1:{port}: {e}", file=sys.stderr)
        await runner.cleanup()
        return None
    api.dashboard_url = f"http://127.0.0.1:{port}/"
    return runner


def detach(paths: Paths, argv: list[str]) -> int:
    """Start `up` in the background and return once the mesh is ready."""
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = paths.state_dir / "up.log"
    with open(log_path, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gossamer.cli.main", *argv], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    client = ApiClient(paths.api_socket, timeout=5)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(log_path.read_text(), file=sys.stderr, end="")
            return proc.returncode or 1
        try:
            status, body = client.get("/v1/ready")
            if status == 200 and body["ready"] and body["pid"] == proc.pid:
                time.sleep(0.3)  # let the child print its own ready lines
                sys.stdout.write(log_path.read_text())
                if "Ingress:" not in log_path.read_text():
                    print(f"Ingress: {body['ingress']}")
                    if body.get("dashboard"):
                        print(f"Dashboard: {body['dashboard']}")
                print(f"(running in the background as pid {proc.pid}; log {log_path}; stop with `gossamer down`)")
                return 0
        except OSError:
            pass
        time.sleep(0.3)
    print(f"mesh not ready after {READY_TIMEOUT_S:.0f}s; see {log_path}", file=sys.stderr)
    return 1
