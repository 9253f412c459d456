"""`gossamer up`: a thin supervisor of the mesh's two processes.

* the **control plane** (`gossamer controlplane`): store, API, registry, translation, ADS, CA, telemetry;
* the **runtime** (`gossamer runtime`): pods, Envoys, their agents, kube-proxy rules, gateway host listeners.

Each runs in its own session and outlives this supervisor (no parent-death signal): a killed
supervisor leaves the mesh serving, and the next `gossamer up` adopts what runs (`gossamer down`
stops it either way). A child that dies is restarted with back-off; the runtime adopts its pods and
the control plane serves xDS again once the runtime has reported them. Ctrl-C (SIGINT/SIGTERM) stops
the mesh and keeps the config; `gossamer down` stops it and wipes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gossamer.cli.client import ApiClient
from gossamer.controlplane.paths import Paths
from gossamer.controlplane.supervision import (
    CONTROL_PLANE,
    RUNTIME,
    SUPERVISOR,
    entry_alive,
    load_processes,
    process_entry,
    save_processes,
)
from gossamer.runtime.linux import proc_start_time, same_process_alive

READY_TIMEOUT_S = 300.0
BACKOFF_INITIAL = 0.2
BACKOFF_MAX = 10.0
BACKOFF_RESET_AFTER = 10.0
EXIT_FATAL = 2  # a child that exits with this cannot start at all (invalid manifests, another mesh)
STOP_TIMEOUT = {RUNTIME: 90.0, CONTROL_PLANE: 15.0}


@dataclass
class UpOptions:
    ingress_port: int
    ingress_tls_port: int = 8443
    # `--ingress-port-map HOST:GATEWAY`: (gateway port, host port) pairs (gossamer/mesh.py).
    ingress_port_map: tuple[tuple[int, int], ...] = ()
    metrics_port: int = 0
    dashboard_port: int = 0
    egress_gateway: bool = False
    prometheus: bool = False  # up --prometheus: the control plane runs Prometheus (gossamer/telemetry/prometheus.py)
    verbose: bool = False
    workload_cert_ttl: str = "24h"  # up --workload-cert-ttl / --secret-grace-period-ratio (Istio's settings)
    secret_grace_period_ratio: float = 0.2
    namespace: str | None = None  # up -n: the namespace of the manifests' documents that name none
    # Give up after this long when the mesh is not ready: name the pods and why, stop, exit 1 (0: wait on).
    ready_timeout: float = READY_TIMEOUT_S


@dataclass
class Child:
    """One supervised process: ours (a child we can reap) or adopted (watched through a pidfd)."""

    key: str
    label: str
    argv_for: Callable[[bool], list[str]]  # (first start?) -> argv
    pid: int | None = None
    start: int | None = None
    argv: list[str] = field(default_factory=list)
    started_at: float = 0.0
    restarts: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def spawn(self, *, first: bool) -> None:
        self.argv = self.argv_for(first)
        env = {**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "false"}
        # Its own session: Ctrl-C in our terminal does not reach it, and it outlives us.
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.pid = self.proc.pid
        self.start = proc_start_time(self.pid)
        self.started_at = time.time()

    def adopt(self, entry: dict[str, Any] | None) -> bool:
        if not entry or not entry_alive(entry):
            return False
        self.pid, self.start = int(entry["pid"]), entry.get("start")
        self.argv = list(entry.get("argv") or [])
        self.started_at = float(entry.get("startedAt") or time.time())
        self.restarts = int(entry.get("restarts", 0))
        self.proc = None
        return True

    def entry(self) -> dict[str, Any]:
        assert self.pid is not None
        entry = process_entry(self.pid, self.argv, self.restarts)
        entry.update({"start": self.start, "startedAt": self.started_at})
        return entry

    def alive(self) -> bool:
        return self.pid is not None and same_process_alive(self.pid, self.start)

    async def wait(self) -> int | None:
        """Until the process exits; its exit code when it is our child (None for an adopted one)."""
        assert self.pid is not None
        if self.alive():
            try:
                fd = os.pidfd_open(self.pid)
            except ProcessLookupError:
                fd = -1
            if fd >= 0:
                loop = asyncio.get_running_loop()
                exited: asyncio.Future[None] = loop.create_future()

                def readable() -> None:
                    if not exited.done():
                        exited.set_result(None)

                loop.add_reader(fd, readable)
                try:
                    if self.alive():  # the pid could have died between alive() and pidfd_open()
                        await exited
                finally:
                    loop.remove_reader(fd)
                    os.close(fd)
        if self.proc is not None:
            return await asyncio.to_thread(self.proc.wait)
        return None

    def signal(self, sig: int) -> None:
        if self.pid is not None and self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)


def child_argvs(
    paths: Paths, manifests: list[Path], opts: UpOptions
) -> tuple[Callable[[bool], list[str]], Callable[[bool], list[str]]]:
    base = [
        sys.executable,
        "-m",
        "gossamer.cli.main",
        "--state-dir",
        str(paths.state_dir),
        "--run-dir",
        str(paths.run_dir),
    ]
    verbose = ["--verbose"] if opts.verbose else []
    certs = [
        "--workload-cert-ttl",
        opts.workload_cert_ttl,
        "--secret-grace-period-ratio",
        str(opts.secret_grace_period_ratio),
    ]

    def control_plane(first: bool) -> list[str]:
        return [
            *base,
            "controlplane",
            "--ingress-port",
            str(opts.ingress_port),
            "--ingress-tls-port",
            str(opts.ingress_tls_port),
            "--metrics-port",
            str(opts.metrics_port),
            "--dashboard-port",
            str(opts.dashboard_port),
            *(["--egress-gateway"] if opts.egress_gateway else []),
            *(["--prometheus"] if opts.prometheus else []),
            *(["--apply"] if first else []),
            *(["--namespace", opts.namespace] if opts.namespace else []),
            *certs,
            *verbose,
            *[str(m) for m in manifests],
        ]

    def runtime(first: bool) -> list[str]:
        return [
            *base,
            "runtime",
            "--ingress-port",
            str(opts.ingress_port),
            "--ingress-tls-port",
            str(opts.ingress_tls_port),
            *[a for gateway, host in opts.ingress_port_map for a in ("--ingress-port-map", f"{host}:{gateway}")],
            *certs,
            *verbose,
        ]

    return control_plane, runtime


class Supervisor:
    def __init__(self, paths: Paths, manifests: list[Path], opts: UpOptions) -> None:
        self.paths = paths
        cp_argv, rt_argv = child_argvs(paths, manifests, opts)
        self.ready_timeout = opts.ready_timeout
        self.cp = Child(CONTROL_PLANE, "control plane", cp_argv)
        self.rt = Child(RUNTIME, "runtime", rt_argv)
        self.stopping = asyncio.Event()
        self.exit_code = 0
        self._stop_requested = False

    def save(self) -> None:
        data: dict[str, Any] = {SUPERVISOR: {"pid": os.getpid(), "start": proc_start_time(os.getpid())}}
        for child in (self.cp, self.rt):
            if child.pid is not None:
                data[child.key] = child.entry()
        save_processes(self.paths.processes_file, data)

    async def run(self) -> int:
        self.paths.state_dir.mkdir(parents=True, exist_ok=True)
        record = load_processes(self.paths.processes_file)
        cp_adopted = self.cp.adopt(record.get(CONTROL_PLANE))
        rt_adopted = self.rt.adopt(record.get(RUNTIME))
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        started = time.monotonic()
        if cp_adopted or rt_adopted:
            adopted = [f"{c.label} (pid {c.pid})" for c in (self.cp, self.rt) if c.pid is not None]
            print(f"Adopted the running {' and '.join(adopted)}.", flush=True)
        if not cp_adopted:
            # Manifests are applied on a fresh start only; a control plane recovering next to a
            # running runtime finds its config in the store.
            self.cp.spawn(first=not rt_adopted)
            self.save()
            if not await self._wait_api():
                code = self.cp.proc.poll() if self.cp.proc is not None else None
                await self._stop_children()
                self._forget()
                return 1 if code not in (None, 0) else 0
        if not rt_adopted:
            self.rt.spawn(first=True)
        self.save()
        self.paths.pid_file.write_text(str(os.getpid()))
        tasks = [
            asyncio.create_task(self._keep(self.cp)),
            asyncio.create_task(self._keep(self.rt)),
            asyncio.create_task(self._announce(started)),
        ]
        await self.stopping.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        print("Stopping the mesh...", flush=True)
        await self._stop_children()
        self._forget()
        return self.exit_code

    def request_stop(self) -> None:
        self.stopping.set()

    def _forget(self) -> None:
        self.paths.processes_file.unlink(missing_ok=True)
        self.paths.pid_file.unlink(missing_ok=True)

    async def _wait_api(self) -> bool:
        """Until the control plane answers (True), exits (False) or we are told to stop."""
        client = ApiClient(self.paths.api_socket, timeout=2)
        while not self.stopping.is_set():
            if self.cp.proc is not None and self.cp.proc.poll() is not None:
                return False
            if await asyncio.to_thread(client.alive):
                return True
            await asyncio.sleep(0.05)
        return False

    async def _keep(self, child: Child) -> None:
        backoff = BACKOFF_INITIAL
        while not self.stopping.is_set():
            code = await child.wait()
            if self.stopping.is_set():
                return
            how = (
                f"code {code}"
                if code is not None and code >= 0
                else (f"signal {-code}" if code is not None else "not our child: no exit code")
            )
            if code == EXIT_FATAL:
                print(f"error: the {child.label} cannot start ({how}); stopping the mesh", file=sys.stderr, flush=True)
                self.exit_code = 1
                self.stopping.set()
                return
            if time.time() - child.started_at >= BACKOFF_RESET_AFTER:
                backoff = BACKOFF_INITIAL
            print(f"{child.label} (pid {child.pid}) exited ({how}); restarting in {backoff:.1f}s", flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), backoff)
            if self.stopping.is_set():
                return
            child.restarts += 1
            child.spawn(first=False)
            self.save()
            print(f"{child.label} restarted (pid {child.pid}, restart {child.restarts})", flush=True)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _announce(self, started: float) -> None:
        """Say when the mesh is ready; past the ready timeout, say which pods are not and why, and stop
        the mesh with exit code 1 (a foreground `up` never waits forever)."""
        client = ApiClient(self.paths.api_socket, timeout=5)
        while True:
            if self.ready_timeout and time.monotonic() - started > self.ready_timeout:
                print(
                    f"error: mesh not ready after {self.ready_timeout:.0f}s; stopping it", file=sys.stderr, flush=True
                )
                for line in await asyncio.to_thread(not_ready_report, self.paths):
                    print(line, file=sys.stderr, flush=True)
                self.exit_code = 1
                self.stopping.set()
                return
            try:
                status, body = await asyncio.to_thread(client.get, "/v1/ready")
            except OSError:
                status, body = 0, None
            if status == 200 and body and body.get("ready"):
                print(
                    f"Mesh ready in {time.monotonic() - started:.1f}s: {body['pods']} pods, "
                    f"{body['proxies']} proxies in sync.",
                    flush=True,
                )
                print(f"Ingress: {body['ingress']}", flush=True)
                if body.get("dashboard"):
                    print(f"Dashboard: {body['dashboard']}", flush=True)
                return
            await asyncio.sleep(0.2)

    async def _stop_children(self) -> None:
        """The runtime first (it removes every pod), then the control plane."""
        for child in (self.rt, self.cp):
            await stop_process(child, STOP_TIMEOUT[child.key])
        from gossamer.runtime.state import RuntimeAlreadyRunning, cleanup_leftovers

        # Whatever a runtime that did not stop cleanly left behind (its record lists it all).
        with contextlib.suppress(RuntimeAlreadyRunning):
            await asyncio.to_thread(cleanup_leftovers, self.paths.runtime_state_dir)


async def stop_process(child: Child, timeout: float) -> None:
    if not child.alive():
        if child.proc is not None:
            await asyncio.to_thread(child.proc.wait)
        return
    child.signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(child.wait(), timeout)
    except TimeoutError:
        child.signal(signal.SIGKILL)
        await child.wait()


def stop_recorded(paths: Paths) -> None:
    """`gossamer down`: stop the supervisor (which stops its children), then whatever it left running."""
    record = load_processes(paths.processes_file)
    supervisor = record.get(SUPERVISOR)
    if entry_alive(supervisor):
        assert supervisor is not None
        os.kill(int(supervisor["pid"]), signal.SIGTERM)
        _wait_dead(supervisor, sum(STOP_TIMEOUT.values()) + 10)
    record = load_processes(paths.processes_file) or record
    for key in (RUNTIME, CONTROL_PLANE):
        entry = record.get(key)
        if entry_alive(entry):
            assert entry is not None
            os.kill(int(entry["pid"]), signal.SIGTERM)
            if not _wait_dead(entry, STOP_TIMEOUT[key]):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry["pid"]), signal.SIGKILL)
                _wait_dead(entry, 5)


def _wait_dead(entry: dict[str, Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not entry_alive(entry):
            return True
        time.sleep(0.1)
    return not entry_alive(entry)


def supervisor_alive(paths: Paths) -> int | None:
    supervisor = load_processes(paths.processes_file).get(SUPERVISOR)
    return int(supervisor["pid"]) if supervisor and entry_alive(supervisor) else None


def run_up(paths: Paths, manifests: list[Path], opts: UpOptions) -> int:
    return asyncio.run(Supervisor(paths, manifests, opts).run())


def detach(paths: Paths, argv: list[str], timeout: float = READY_TIMEOUT_S) -> int:
    """Start `up` in the background and return once the mesh is ready; after `timeout`, say which pods
    are not ready and why, and return 1 (the mesh keeps running: `gossamer down` stops it)."""
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = paths.state_dir / "up.log"
    with open(log_path, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gossamer.cli.main", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout if timeout > 0 else float("inf")
    while time.monotonic() < deadline:
        text = log_path.read_text()
        if proc.poll() is not None:
            print(text, file=sys.stderr, end="")
            return proc.returncode or 1
        if "\nIngress: " in f"\n{text}":
            time.sleep(0.1)  # the dashboard line follows
            sys.stdout.write(log_path.read_text())
            print(f"(running in the background as pid {proc.pid}; log {log_path}; stop with `gossamer down`)")
            return 0
        time.sleep(0.2)
    print(
        f"mesh not ready after {timeout:.0f}s (it keeps running; stop it with `gossamer down`; log {log_path})",
        file=sys.stderr,
    )
    for line in not_ready_report(paths):
        print(line, file=sys.stderr)
    return 1


LOG_TAIL_LINES = 5


def not_ready_report(paths: Paths) -> list[str]:
    """Each pod that is not ready: why (waiting for an image or a reference, app or proxy not ready,
    restarts) and the last lines of its containers' logs, as `kubectl describe`/`logs` would show."""
    client = ApiClient(paths.api_socket, timeout=5)
    try:
        status, body = client.get("/v1/status")
    except OSError as e:
        return [f"  the control plane does not answer: {e}"]
    if status != 200 or not isinstance(body, dict):
        return [f"  the control plane answered {status}"]
    out = []
    for pod in body.get("pods", []):
        if pod.get("ready"):
            continue
        name = f"{pod['namespace']}/{pod['name']}"
        reasons = list(pod.get("waiting") or [])
        if not reasons:
            if not pod.get("appReady"):
                reasons.append("app not ready (readiness probe failing or process not running)")
            if pod.get("hasSidecar") and not pod.get("proxyReady"):
                reasons.append("istio-proxy not ready (Envoy has not received its config)")
        out.append(
            f"  pod {name}: {pod.get('reason') or pod.get('phase')}, {pod.get('restarts', 0)} restarts: "
            + "; ".join(reasons)
        )
        try:
            code, detail = client.get(f"/v1/pods/{pod['namespace']}/{pod['name']}")
        except OSError:
            continue
        for container, log_file in (detail.get("logs") or {}).items() if code == 200 else ():
            try:
                lines = Path(log_file).read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            except OSError:
                continue
            if lines and container != "istio-proxy":
                out.append(f"    {container}, last {len(lines)} log lines:")
                out += [f"      {line[:200]}" for line in lines]
    out += _missing_pods(client, body.get("pods", []))
    return out or ["  every pod is ready; proxies have not all acknowledged their config (see `gossamer status`)"]


def _missing_pods(client: ApiClient, pods: list[dict[str, Any]]) -> list[str]:
    """Deployments with fewer pods than replicas (pods the runtime has not created or reported yet)."""
    try:
        status, body = client.get("/v1/resources/deployments?namespace=")
    except OSError:
        return []
    if status != 200 or not isinstance(body, dict):
        return []
    out = []
    for item in body.get("items", []):
        meta, spec = item.get("metadata") or {}, item.get("spec") or {}
        replicas = spec.get("replicas", 1)
        have = sum(
            1 for p in pods if p.get("namespace") == meta.get("namespace") and p.get("deployment") == meta.get("name")
        )
        if have < replicas:
            out.append(
                f"  deployment {meta.get('namespace')}/{meta.get('name')}: {have} of {replicas} pods created "
                "(the runtime has not started the others yet: see `gossamer status`)"
            )
    return out
