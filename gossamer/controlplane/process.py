"""The control plane process (`gossamer controlplane`, started by `gossamer up`): the istiod.

Store, REST API on <run-dir>/api.sock (the CLI's and the runtime's only way in), registry,
translation, ADS, CA, telemetry, dashboard, metrics port. SIGTERM stops it and keeps the store.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from gossamer.api.server import Api
from gossamer.controlplane.daemon import ControlPlane
from gossamer.controlplane.paths import Paths
from gossamer.controlplane.watch import manifest_files, read_manifest
from gossamer.security.settings import CertSettings

EXIT_INVALID = 2  # the manifests do not validate: the supervisor gives up (nothing was started)


def read_manifests(paths: list[Path]) -> list[tuple[str, str]]:
    return [(str(f), read_manifest(f)) for f in manifest_files(paths)]


async def run_controlplane(
    paths: Paths,
    manifests: list[Path],
    *,
    apply_manifests: bool,
    ingress_port: int,
    metrics_port: int = 0,
    dashboard_port: int = 0,
    ingress_tls_port: int = 8443,
    egress_gateway: bool = False,
    certs: CertSettings | None = None,
    prometheus: bool = False,
    namespace: str | None = None,
) -> int:
    cp = ControlPlane(
        paths,
        ingress_port=ingress_port,
        ingress_tls_port=ingress_tls_port,
        egress_gateway=egress_gateway,
        certs=certs,
        prometheus=prometheus,
        metrics_port=metrics_port,
    )
    # A restarted control plane does not re-apply the manifests: the store has them, and whatever
    # was applied or deleted since; it only goes on watching them.
    # NAMESPACE (`up -n`) is also the watched manifests' namespace when an edit is re-applied.
    result = await cp.start(read_manifests(manifests) if apply_manifests else [], namespace=namespace)
    for w in [*result.warnings, *result.notes]:
        print(w, file=sys.stderr, flush=True)
    if not result.ok:
        for e in result.errors:
            print(e, file=sys.stderr, flush=True)
        await cp.stop(wipe=False)
        return EXIT_INVALID
    cp.watcher.watch(manifests)
    shutdown = asyncio.Event()
    api = Api(cp, shutdown)
    # Short shutdown: the runtime's long polls would otherwise hold a stopping control plane for 30 s.
    runner = web.AppRunner(api.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    paths.api_socket.unlink(missing_ok=True)
    await web.UnixSite(runner, str(paths.api_socket)).start()
    os.chmod(paths.api_socket, 0o600)  # root only: the CLI and the runtime
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
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, shutdown.set)
    await shutdown.wait()
    for extra in (metrics_runner, dashboard_runner):
        if extra is not None:
            await extra.cleanup()
    await runner.cleanup()
    paths.api_socket.unlink(missing_ok=True)
    await cp.stop(wipe=False)
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
