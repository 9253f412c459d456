"""The control plane's view of the runtime (what an API server knows of its kubelet).

The runtime is its own process. It reports its pods over the API socket (`PUT /v1/runtime/pods`)
on every change; everything the control plane knows about pods comes from those reports:
the registry's workloads, `gossamer status`, pod lookups for exec/logs/proxy-config. What only the
runtime process holds (an agent's SDS state) is asked from the runtime's own root-only socket
(`<run-dir>/runtime.sock`). Envoy admin sockets are plain files the control plane (root) can reach.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from gossamer.runtime.linux import same_process_alive
from gossamer.runtime.probes import unix_http_get
from gossamer.runtime.types import PodStatus
from gossamer.runtime.wire import pods_from_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportedPod:
    status: PodStatus
    netns: str
    admin_socket: str = ""
    logs: dict[str, str] = field(default_factory=dict)  # container -> log file


class StaleReport(Exception):
    """A report of changes made against another report than the view's last one (the API answers 409: the runtime
    then sends all its pods)."""


@dataclass(frozen=True)
class ReadReport:
    """A runtime's pod report, read (RuntimeView.read) and not yet taken."""

    pid: int | None
    pid_start: Any
    started_at: Any
    pods: dict[tuple[str, str], ReportedPod]
    items: dict[tuple[str, str], dict[str, Any]]  # the report's item each pod was parsed from


def _reported(status: PodStatus, item: dict[str, Any]) -> ReportedPod:
    return ReportedPod(
        status=status,
        netns=str(item.get("netns", "")),
        admin_socket=str(item.get("adminSocket", "")),
        logs={str(k): str(v) for k, v in (item.get("logs") or {}).items()},
    )


class RuntimeView:
    def __init__(self, runtime_socket: Path, on_change: Callable[[], None]) -> None:
        self.runtime_socket = runtime_socket
        self.on_change = on_change
        self._pods: dict[tuple[str, str], ReportedPod] = {}
        # Per pod, the report's item it was parsed from: an item that comes again unchanged is not parsed again.
        self._items: dict[tuple[str, str], dict[str, Any]] = {}
        # Set once the runtime has reported its pods since this control plane started: until then the
        # registry would be empty or partial, and nothing built from it may reach a proxy.
        self.known = asyncio.Event()
        self.pid: int | None = None
        self.pid_start: int | None = None
        self.started_at: float | None = None
        self.last_report: float | None = None
        self.reports = 0  # reports taken: a report of changes names the one it changes (`base`)

    # ---- reports -----------------------------------------------------------------------

    def report(self, body: dict[str, Any]) -> None:
        """A runtime's full pod list (its pid, start time and every pod); replaces the previous one."""
        self.take(self.read(body))

    def read_changes(self, body: dict[str, Any], instance: str) -> ReadReport:
        """What a report of changes takes (see read): BODY's `pods` (added or changed) and `removed` (namespace,
        name) applied to the last report taken - which must be BODY's `base` of this control plane INSTANCE, or
        StaleReport. A pod change costs what changed, not a parse and comparison of every pod (the runtime's
        kubelet sends its changes, as a kubelet updates one pod's status)."""
        if body.get("instance") != instance or body.get("base") != self.reports or not self.known.is_set():
            raise StaleReport(f"not a change of this control plane's last report ({instance}, {self.reports})")
        pods, raw = dict(self._pods), dict(self._items)
        for namespace, name in body.get("removed") or []:
            pods.pop((str(namespace), str(name)), None)
            raw.pop((str(namespace), str(name)), None)
        items = body.get("pods") or []
        for s, item in zip(pods_from_json([item["status"] for item in items]), items, strict=True):
            pods[(s.namespace, s.name)] = _reported(s, item)
            raw[(s.namespace, s.name)] = item
        runtime = body.get("runtime") or {}
        pid = int(runtime["pid"]) if runtime.get("pid") is not None else None
        return ReadReport(pid, runtime.get("pidStart"), runtime.get("startedAt"), pods, raw)

    def read(self, body: dict[str, Any]) -> ReadReport:
        """What report() takes from BODY, without changing anything: callable on a worker thread (the runtime
        sends every pod on every change, thousands in a large mesh), one report at a time, each taken (take())
        before the next is read."""
        items = body.get("pods") or []
        # Only the items that differ from the last report's are parsed.
        pods: dict[tuple[str, str], ReportedPod] = {}
        raw: dict[tuple[str, str], dict[str, Any]] = {}
        fresh = []
        known_items, known_pods = self._items, self._pods
        for item in items:
            key = (item["status"]["namespace"], item["status"]["name"])
            if known_items.get(key) == item and key in known_pods:
                pods[key], raw[key] = known_pods[key], item
            else:
                fresh.append(item)
        for s, item in zip(pods_from_json([item["status"] for item in fresh]), fresh, strict=True):
            key = (s.namespace, s.name)
            pods[key] = _reported(s, item)
            raw[key] = item
        runtime = body.get("runtime") or {}
        pid = int(runtime["pid"]) if runtime.get("pid") is not None else None
        return ReadReport(pid, runtime.get("pidStart"), runtime.get("startedAt"), pods, raw)

    def take(self, report: ReadReport) -> None:
        """A report read(): the pods it lists replace the previous ones (on the event loop)."""
        self.pid, self.pid_start, self.started_at = report.pid, report.pid_start, report.started_at
        changed = report.pods != self._pods
        self._pods, self._items = report.pods, report.items
        self.last_report = time.time()
        self.reports += 1
        first = not self.known.is_set()
        self.known.set()
        if changed or first:
            self.on_change()

    def assume_known(self) -> None:
        """No runtime reported in time (a mesh without one): serve what we have."""
        if not self.known.is_set():
            log.warning("no pod report from the runtime yet: serving xDS without its pods")
            self.known.set()
            self.on_change()

    def process(self) -> dict[str, Any]:
        """The runtime process for `gossamer status`."""
        alive = self.pid is not None and same_process_alive(self.pid, self.pid_start)
        return {
            "pid": self.pid,
            "state": "Running" if alive else ("Unknown" if self.pid is None else "Down"),
            "startedAt": self.started_at,
            "lastReport": self.last_report,
            "uptimeSeconds": round(time.time() - self.started_at, 1) if alive and self.started_at else None,
        }

    # ---- queries (what LocalRuntime answered when it lived in this process) -------------

    def pods(self) -> list[PodStatus]:
        return [self._pods[k].status for k in sorted(self._pods)]

    def find(self, namespace: str, pod: str) -> PodStatus | None:
        found = self._pods.get((namespace, pod))
        return found.status if found is not None else None

    def _get(self, pod: str, namespace: str) -> ReportedPod:
        try:
            return self._pods[(namespace, pod)]
        except KeyError:
            raise KeyError(f"pod {namespace}/{pod} not found") from None

    def pod(self, name_or_deploy_ref: str, namespace: str = "default") -> PodStatus:
        """ "POD" or "deploy/NAME": the first ready pod of that deployment, else (as kubectl picks one for
        `logs deploy/NAME`) its oldest pod that is not terminating; KeyError if none."""
        if name_or_deploy_ref.startswith(("deploy/", "deployment/")):
            deploy = name_or_deploy_ref.split("/", 1)[1]
            candidates = sorted(
                (
                    p.status
                    for p in self._pods.values()
                    if p.status.namespace == namespace
                    and p.status.deployment == deploy
                    and p.status.phase != "Terminating"
                ),
                key=lambda s: (not s.ready, s.started_at, s.name),
            )
            if not candidates:
                raise KeyError(f"no pod for deployment {namespace}/{deploy}")
            return candidates[0]
        return self._get(name_or_deploy_ref, namespace).status

    def netns_name(self, pod: str, namespace: str) -> str:
        return self._get(pod, namespace).netns

    def log_paths(self, pod: str, namespace: str) -> dict[str, str]:
        return dict(self._get(pod, namespace).logs)

    async def admin_get(self, pod: str, namespace: str, path: str) -> tuple[int, str]:
        """GET on the pod's Envoy admin socket; raises OSError if Envoy is not listening."""
        socket = self._get(pod, namespace).admin_socket
        if not socket:
            raise OSError(f"pod {namespace}/{pod} has no Envoy admin socket")
        return await unix_http_get(Path(socket), path)

    async def pod_secret(self, pod: str, namespace: str) -> tuple[int, dict[str, Any]]:
        """The pod's workload certificate as its agent (in the runtime process) serves it."""
        try:
            async with (
                aiohttp.UnixConnector(path=str(self.runtime_socket)) as conn,
                aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=5)) as session,
                session.get(f"http://runtime/v1/pods/{namespace}/{pod}/secret") as resp,
            ):
                return resp.status, await resp.json()
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            return 503, {"error": f"the runtime is not answering ({e})"}
