"""The runtime process (`gossamer runtime`, the kubelet): pods, Envoys, their agents, kube-proxy rules.

It talks to the control plane only over the API socket, as a kubelet talks to the API server:

* it long-polls the desired state (`GET /v1/runtime/desired?version=V&wait=S`): Deployments, the
  addresses pods resolve, each Service port's ready endpoints (kube-proxy);
* it reports its pods (`PUT /v1/runtime/pods`) on every change, and at once to a control plane it
  has not reported to (a restarted one serves xDS only after that report);
* its agents send their CSRs there (`POST /v1/runtime/csr`): the CA stays in the control plane.

What only this process holds (an agent's SDS state) it serves on its own root-only socket
(`<run-dir>/runtime.sock`). A control plane that is down changes nothing here: pods keep running,
the last desired state stays in force, and the loops retry until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gossamer.agent.sds import CertificateSigner
from gossamer.agent.secret import secret_summary
from gossamer.cli.client import ApiClient
from gossamer.controlplane.paths import Paths
from gossamer.mesh import TRUST_DOMAIN, IngressPortMap
from gossamer.runtime.linux import proc_start_time
from gossamer.runtime.local import LocalRuntime, RuntimeAlreadyRunning
from gossamer.runtime.types import DeploymentSpec, PodStatus, ServiceAddress, ServiceEndpoints
from gossamer.runtime.wire import deployments_from_json, endpoints_from_json, pods_to_json, services_from_json
from gossamer.security.settings import CertSettings

log = logging.getLogger(__name__)

POLL_WAIT_S = 30.0
RETRY_S = 0.1
REPORT_DEBOUNCE_S = 0.01
CSR_PATIENCE_S = 20.0
EXIT_FATAL = 2  # the supervisor does not restart a runtime that cannot start at all


class RemoteSigner:
    """The control plane's CA, over the API socket. Blocking calls: agents run them in a thread."""

    def __init__(self, api_socket: Path, namespace: str = "", pod: str = "") -> None:
        self.api_socket = api_socket
        self.namespace = namespace
        self.pod = pod
        self._root: str | None = None

    def for_pod(self, namespace: str, pod: str) -> CertificateSigner:
        return RemoteSigner(self.api_socket, namespace, pod)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        """Retries while the control plane is away (restarting) or has not seen the pod's report yet."""
        deadline = time.monotonic() + CSR_PATIENCE_S
        while True:
            try:
                status, answer = ApiClient(self.api_socket, timeout=10).request(method, path, body)
            except OSError as e:
                status, answer = 503, {"error": str(e)}
            if status == 200:
                return answer
            if status not in (409, 503) or time.monotonic() > deadline:
                raise RuntimeError(f"control plane CA: {(answer or {}).get('error', f'HTTP {status}')}")
            time.sleep(0.05)

    @property
    def root_pem(self) -> str:
        if self._root is None:
            self._root = str(self._call("GET", "/v1/runtime/root")["root"])
        return self._root

    def sign_csr(self, csr_pem: str, identity: str, ttl: timedelta) -> str:
        answer = self._call(
            "POST",
            "/v1/runtime/csr",
            {
                "namespace": self.namespace,
                "pod": self.pod,
                "identity": identity,
                "csr": csr_pem,
                "ttlSeconds": ttl.total_seconds(),
            },
        )
        self._root = str(answer["root"])
        return str(answer["certificate"])


class ReportItems:
    """Every pod's report item (its status as JSON, where its things are), each status encoded once while it is the
    same (a report is made at every pod change: at 1000 services 2000 statuses took ~12 ms to encode)."""

    def __init__(self) -> None:
        self._json: dict[PodStatus, Any] = {}

    def of(self, reports: list[tuple[PodStatus, dict[str, object]]]) -> dict[tuple[str, str], dict[str, Any]]:
        """REPORTS (status, what else its item says) -> (namespace, name) -> item, in their order."""
        known = self._json
        new = [status for status, _ in reports if status not in known]
        fresh = dict(zip(new, pods_to_json(new), strict=True)) if new else {}
        self._json = {status: known.get(status) or fresh[status] for status, _ in reports}
        return {(s.namespace, s.name): {"status": self._json[s], **extra} for s, extra in reports}


@dataclass(frozen=True)
class LastReport:
    """A pod report a control plane took: its instance, the report's serial there, the pods' items."""

    instance: str
    serial: int
    items: dict[tuple[str, str], dict[str, Any]]


async def report_pods(
    session: aiohttp.ClientSession,
    runtime: dict[str, Any],
    items: dict[tuple[str, str], dict[str, Any]],
    last: LastReport | None,
) -> LastReport:
    """Report ITEMS (every pod: namespace, name -> its report item) to the control plane: the changes since LAST
    when it took LAST (`PATCH /v1/runtime/pods`: a pod change sends one pod, not thousands), else - or when it
    answers that it did not (409: restarted, or another report came between) - every pod (PUT). Returns what it
    took now."""
    if last is not None:
        changed = [item for key, item in items.items() if last.items.get(key) != item]
        removed = [list(key) for key in last.items if key not in items]
        body = {"runtime": runtime, "instance": last.instance, "base": last.serial, "pods": changed, "removed": removed}
        async with session.patch(
            "http://cp/v1/runtime/pods", json=body, timeout=aiohttp.ClientTimeout(total=10)
        ) as resp:
            answer = await resp.json()
            if resp.status == 200:
                return LastReport(str(answer["instance"]), int(answer["serial"]), items)
            if resp.status != 409:
                raise RuntimeError(answer.get("error", f"HTTP {resp.status}"))
    body = {"runtime": runtime, "pods": list(items.values())}
    async with session.put("http://cp/v1/runtime/pods", json=body, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        answer = await resp.json()
        if resp.status != 200:
            raise RuntimeError(answer.get("error", f"HTTP {resp.status}"))
    return LastReport(str(answer["instance"]), int(answer["serial"]), items)


class Kubelet:
    """Desired state in, pod reports out; the LocalRuntime does the work."""

    def __init__(self, paths: Paths, runtime: LocalRuntime) -> None:
        self.paths = paths
        self.runtime = runtime
        self.started_at = time.time()
        self._report_wanted = asyncio.Event()
        self._reported_to: str | None = None  # the control plane instance that has our latest report
        self._last_report: LastReport | None = None  # what it has: the next report sends only what changed since
        self._items = ReportItems()
        self._cp_instance: str | None = None
        self._apply_wanted = asyncio.Event()
        self._endpoints_wanted = asyncio.Event()
        self._deployments: tuple[list[DeploymentSpec], list[ServiceAddress], str] | None = None
        self._endpoints: list[ServiceEndpoints] | None = None
        self._session: aiohttp.ClientSession | None = None

    def pods_changed(self) -> None:
        self._report_wanted.set()

    async def run(self) -> None:
        conn = aiohttp.UnixConnector(path=str(self.paths.api_socket))
        async with aiohttp.ClientSession(connector=conn) as session:
            self._session = session
            tasks = [
                asyncio.create_task(self._report_loop(), name="report"),
                asyncio.create_task(self._poll_loop(), name="desired"),
                asyncio.create_task(self._apply_loop(), name="apply"),
                asyncio.create_task(self._endpoints_loop(), name="kube-proxy"),
            ]
            self._report_wanted.set()
            try:
                await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _report_loop(self) -> None:
        assert self._session is not None
        while True:
            await self._report_wanted.wait()
            await asyncio.sleep(REPORT_DEBOUNCE_S)
            self._report_wanted.clear()
            items = self._items.of(self.runtime.pod_reports())
            runtime = {"pid": os.getpid(), "pidStart": proc_start_time(os.getpid()), "startedAt": self.started_at}
            try:
                self._last_report = await report_pods(self._session, runtime, items, self._last_report)
                self._reported_to = self._last_report.instance
            except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError) as e:
                log.debug("pod report failed (%s); retrying", e)
                self._last_report = None  # (the control plane may have taken it or not: all pods next time)
                await asyncio.sleep(RETRY_S)
                self._report_wanted.set()

    async def _poll_loop(self) -> None:
        assert self._session is not None
        version: str | None = None
        while True:
            try:
                async with self._session.get(
                    "http://cp/v1/runtime/desired",
                    params={"version": version or "", "wait": str(POLL_WAIT_S)},
                    timeout=aiohttp.ClientTimeout(total=POLL_WAIT_S + 10),
                ) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status}")
                    desired = await resp.json()
            except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError) as e:
                log.debug("desired state poll failed (%s); retrying", e)
                await asyncio.sleep(RETRY_S)
                continue
            instance = str(desired["instance"])
            if instance != self._cp_instance:
                self._cp_instance = instance
                if self._reported_to != instance:
                    self._report_wanted.set()  # a new control plane: it waits for our pods
            if desired["version"] == version or "deployments" not in desired:
                continue
            version = str(desired["version"])
            try:
                self._deployments = (
                    deployments_from_json(desired["deployments"]),
                    services_from_json(desired["services"]),
                    str(desired.get("trustDomain") or TRUST_DOMAIN),
                )
                self._apply_wanted.set()
                if desired.get("endpoints") is not None:
                    self._endpoints = endpoints_from_json(desired["endpoints"])
                    self._endpoints_wanted.set()
            except ValueError:
                log.exception("bad desired state from the control plane")

    async def _apply_loop(self) -> None:
        while True:
            await self._apply_wanted.wait()
            self._apply_wanted.clear()
            if self._deployments is None:
                continue
            deployments, services, trust_domain = self._deployments
            try:
                self.runtime.set_trust_domain(trust_domain)  # before new pods are made
                await self.runtime.apply(deployments, services)
            except Exception:
                log.exception("runtime reconcile failed")

    async def _endpoints_loop(self) -> None:
        while True:
            await self._endpoints_wanted.wait()
            self._endpoints_wanted.clear()
            if self._endpoints is None:
                continue
            try:
                await self.runtime.set_service_endpoints(self._endpoints)
            except Exception:
                log.exception("service endpoints update failed")


def runtime_app(runtime: LocalRuntime) -> web.Application:
    """The runtime's own API (root only): what only this process holds."""

    async def secret(request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["pod"]
        try:
            sds = runtime.pod_sds(name, ns)
            if sds is None:
                raise RuntimeError
            cert = sds.certificate
        except (KeyError, RuntimeError):
            return web.json_response({"error": f"pod {ns}/{name} has no agent serving SDS"}, status=404)
        return web.json_response(secret_summary(cert, sds.streams()))

    async def containers(request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["pod"]
        try:
            return web.json_response({"containers": runtime.container_processes(name, ns)})
        except KeyError as e:
            return web.json_response({"error": str(e.args[0] if e.args else e)}, status=404)

    app = web.Application()
    app.add_routes(
        [
            web.get("/v1/pods/{namespace}/{pod}/secret", secret),
            web.get("/v1/pods/{namespace}/{pod}/containers", containers),
        ]
    )
    return app


async def run_runtime(
    paths: Paths,
    *,
    ingress_port: int,
    ingress_tls_port: int,
    certs: CertSettings | None = None,
    ingress_port_map: IngressPortMap = (),
) -> int:
    certs = certs or CertSettings()
    signer = RemoteSigner(paths.api_socket)
    kubelet: Kubelet | None = None

    def changed() -> None:
        if kubelet is not None:
            kubelet.pods_changed()

    runtime = LocalRuntime(
        state_dir=paths.runtime_state_dir,
        run_dir=paths.run_dir,
        xds_socket=paths.xds_socket,
        ingress_port=ingress_port,
        ingress_tls_port=ingress_tls_port,
        ingress_port_map=ingress_port_map,
        on_change=changed,
        ca=signer,
        pod_signer=signer.for_pod,
        zipkin_socket=paths.zipkin_socket,
        cert_ttl=certs.workload_cert_ttl,
        cert_rotate_fraction=certs.rotate_fraction,
    )
    kubelet = Kubelet(paths, runtime)
    try:
        await runtime.start()
    except (RuntimeAlreadyRunning, RuntimeError) as e:
        print(f"error: runtime: {e}", file=sys.stderr, flush=True)
        return EXIT_FATAL
    runner = web.AppRunner(runtime_app(runtime), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    paths.runtime_socket.unlink(missing_ok=True)
    await web.UnixSite(runner, str(paths.runtime_socket)).start()
    os.chmod(paths.runtime_socket, 0o600)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(kubelet.run(), name="kubelet")
    await stop.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    await runner.cleanup()
    paths.runtime_socket.unlink(missing_ok=True)
    await runtime.stop()
    return 0
