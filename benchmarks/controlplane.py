"""Control plane at scale: the real control plane against simulated Envoys (no root needed).

The control plane runs in a child process, with a simulated runtime (a process of its own, as the runtime
is) in place of the runtime process: it speaks the runtime's API exactly (long-polls the desired
Deployments, reports its pods with PUT /v1/runtime/pods), only its pods are ready at once, without network
namespaces or processes.
This process plays every pod's Envoy: one gRPC connection and one incremental (delta) ADS stream per
proxy, node id and metadata as the agent's bootstrap builds them, CDS -> EDS -> LDS -> RDS as Envoy
subscribes, every response ACKed with its nonce. The time a response counts is when the simulated Envoy
received it; while proxies receive a change, the measurement itself stays off their loop (it looks for the first
ACK reading each proxy's newest ACKs back to the change, not every ACK since the storm: that scan held the loop
for tens of ms per look, which delayed what the proxies received).

The mesh: services in 10 namespaces, 2 replicas each, 20% with a VirtualService and a DestinationRule
with two subsets; plus the ingress gateway. Printed per size: the connection storm (every proxy has its
full config), control-plane CPU and peak RSS, one VirtualService change -> every affected proxy ACKed
(p50, p99, CPU), a pod removed -> every proxy that sees it has the new endpoints (p99), 10 changes in one
second, the longest the API waited during pushes, bytes per proxy, and the growth exponents.

    benchmarks/controlplane.py               # 100, 300, 1000 services and 300 with a Sidecar per namespace
    benchmarks/controlplane.py 100 300s      # chosen sizes ("s": with the Sidecar per namespace)
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import logging
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NAMESPACES = 10
REPLICAS = 2
ROUTED_EVERY = 5  # 20% of the services get a VirtualService and a DestinationRule with two subsets
CHANGES = 10
PORT = 8000

SERVICE = """apiVersion: v1
kind: Service
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  selector: {{app: svc-{i}}}
  ports: [{{name: http, port: {port}}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: svc-{i}}}}}
  template:
    metadata: {{labels: {{app: svc-{i}, version: v{version}}}}}
    spec:
      containers:
      - name: app
        command: ["python3", "-m", "http.server", "{port}"]
"""

ROUTED = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  hosts: [svc-{i}]
  http:
  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    route: [{{destination: {{host: svc-{i}, subset: v2}}}}]
  - route:
    - {{destination: {{host: svc-{i}, subset: v1}}, weight: 90}}
    - {{destination: {{host: svc-{i}, subset: v2}}, weight: 10}}
    timeout: {timeout}s
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  host: svc-{i}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
"""

SIDECAR = """apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: {ns}}}
spec:
  egress:
  - hosts: ["./*", "istio-system/*"]
"""


def namespace_of(i: int) -> str:
    return f"ns-{i % NAMESPACES}"


def manifests(n: int, sidecars: bool) -> str:
    docs = [f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: ns-{k}}}\n" for k in range(NAMESPACES)]
    for i in range(n):
        docs.append(SERVICE.format(i=i, ns=namespace_of(i), port=PORT, replicas=REPLICAS, version=1 + i % 2))
        if i % ROUTED_EVERY == 0:
            docs.append(ROUTED.format(i=i, ns=namespace_of(i), timeout=1))
    if sidecars:
        docs.extend(SIDECAR.format(ns=f"ns-{k}") for k in range(NAMESPACES))
    return "---\n".join(docs)


# ---------------------------------------------------------------------------------------------------------
# The control plane (child process)
# ---------------------------------------------------------------------------------------------------------


def serve_control_plane(state_dir: str, run_dir: str, manifest: str) -> None:
    """`up` without the root-only parts: the real ControlPlane and API, pods from a simulated runtime.
    Commands on stdin stand in for pod events the runtime would report: `delete NS POD`."""
    from gossamer.controlplane.grpc_setup import use_grpc_experiments

    use_grpc_experiments()  # as `gossamer controlplane` does (before anything imports grpc)
    from aiohttp import web

    from gossamer.api.server import Api
    from gossamer.controlplane.daemon import ControlPlane
    from gossamer.controlplane.paths import Paths

    logging.basicConfig(level=logging.WARNING, format="controlplane: %(levelname)s %(name)s: %(message)s")

    gc_time = [0.0, 0.0, 0, 0.0]  # (started, total seconds, full collections, longest pause)
    gc_longest = [0.0, 0.0, 0.0]  # longest pause per generation collected

    def gc_clock(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_time[0] = time.perf_counter()
        else:
            pause = time.perf_counter() - gc_time[0]
            gc_time[1] += pause
            gc_time[2] += info["generation"] == 2
            gc_time[3] = max(gc_time[3], pause)
            gc_longest[info["generation"]] = max(gc_longest[info["generation"]], pause)

    gc.callbacks.append(gc_clock)
    trace = FanoutTrace() if os.environ.get("BENCH_FANOUT") else None

    async def run() -> None:
        reset_stalls = watch_stalls(asyncio.get_running_loop()) if os.environ.get("BENCH_STALLS") else None
        if os.environ.get("BENCH_SLOW_CALLBACKS"):  # log every event loop step longer than 100 ms
            import logging

            logging.getLogger("asyncio").setLevel(logging.WARNING)
            asyncio.get_running_loop().set_debug(True)
            asyncio.get_running_loop().slow_callback_duration = 0.1
        paths = Paths(Path(state_dir), Path(run_dir))
        cp = ControlPlane(paths, ingress_port=0, ingress_tls_port=0)
        api = Api(cp, asyncio.Event())
        runner = web.AppRunner(api.app(), access_log=None)
        await runner.setup()
        paths.run_dir.mkdir(parents=True, exist_ok=True)
        await web.UnixSite(runner, str(paths.api_socket)).start()
        # The runtime's side of the API (as gossamer/runtime/daemon.py): desired state in, pod reports out. A
        # process of its own, as the runtime is: its JSON work must not land on the control plane's loop.
        runtime = subprocess.Popen(
            [sys.executable, __file__, "--simulate-runtime", str(paths.api_socket)], stdin=subprocess.PIPE, text=True
        )
        assert runtime.stdin is not None
        result = await cp.start([(manifest, Path(manifest).read_text())])
        if not result.ok:
            raise SystemExit("\n".join(str(e) for e in result.errors))
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        print("ready", flush=True)
        profile = cProfile.Profile()
        while line := (await reader.readline()).decode().split():
            if line[0] == "delete":
                runtime.stdin.write(f"delete {line[1]} {line[2]}\n")
                runtime.stdin.flush()
            elif line[0] == "gc-reset":  # count garbage collection (and stalls) from here on
                gc_time[1:] = [0.0, 0, 0.0]
                gc_longest[:] = [0.0, 0.0, 0.0]
                if reset_stalls is not None:
                    reset_stalls()
            elif line[0] == "trace" and trace is not None:  # `trace start` | `trace FILE` (stop and write)
                trace.command(line[1])
            elif line[0] == "profile":  # `profile start` | `profile FILE` (stop and write)
                if line[1] == "start":
                    profile = cProfile.Profile()
                    profile.enable()
                else:
                    profile.disable()
                    profile.dump_stats(line[1])
        runtime.stdin.close()
        runtime.wait()
        await runner.cleanup()
        await cp.stop(wipe=True)

    asyncio.run(run())
    print(
        f"control plane: {gc_time[1]:.1f} s in garbage collection ({gc_time[2]} full, longest pause "
        f"{gc_time[3] * 1000:.0f} ms; per generation "
        + ", ".join(f"{pause * 1000:.0f}" for pause in gc_longest)
        + " ms) from the storm on",
        file=sys.stderr,
    )


class FanoutTrace:
    """BENCH_FANOUT=PREFIX (diagnostic): a time line (monotonic clock, as the simulator's) of a push's fan-out in
    the control plane - push requested, translated, cache writes and notifications, turns released, responses
    built, requests (ACKs) read, every event loop's waits in select and its callbacks over 0.5 ms (wall and
    thread CPU: a callback's wall time without CPU is its thread waiting for the GIL), worker threads' jobs.
    The pod removal's goes to PREFIX-eds-cp.log (PREFIX-eds-sim.log: when each simulated Envoy received its
    response), the second VirtualService change's to PREFIX-change-*.log; one event a line: time, event, detail."""

    def __init__(self) -> None:
        import concurrent.futures.thread
        import selectors

        from gossamer.controlplane.pusher import Pusher
        from gossamer.xds.cache import ConfigCache
        from gossamer.xds.server import AdsServer
        from gossamer.xds.streams import Turns

        self.events: list[tuple[float, str, str]] = []
        self.on = False
        hooks: list[tuple[Any, str, Callable[..., str | None]]] = [
            (ConfigCache, "set_group_packed", lambda a, _r: f"set {a[1]}"),
            (ConfigCache, "set_shared", lambda a, r: f"set-shared {len(r)}/{len(a[1])}"),
            (ConfigCache, "_notify_now", lambda a, _r: f"notify {a[1]}"),
            (Turns, "_release", lambda a, _r: f"release {a[0]._released} {len(a[0]._waiters)}"),
            (AdsServer, "_delta_response", lambda a, r: None if r is None else f"response {a[1].id}"),
            (AdsServer, "_on_delta_request", lambda a, _r: f"request {a[1].id} {a[2].response_nonce}"),
            (Pusher, "request_push", lambda _a, _r: "push-request"),
            (Pusher, "_compute_all", lambda _a, _r: "translated"),
        ]
        for owner, name, describe in hooks:
            self._hook(owner, name, describe)
        self._timed(selectors.EpollSelector, "select", "select", 0.0)
        self._timed(asyncio.events.Handle, "_run", "callback", 0.0005)
        self._timed(concurrent.futures.thread._WorkItem, "run", "work", 0.0)

    def _hook(self, owner: Any, name: str, describe: Callable[..., str | None]) -> None:
        original = getattr(owner, name)

        def hooked(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            if self.on and (event := describe(args, result)) is not None:
                self.events.append((time.monotonic(), *event.split(" ", 1), "")[:3])  # type: ignore[arg-type]
            return result

        setattr(owner, name, hooked)

    def _timed(self, owner: Any, name: str, event: str, longer_than: float) -> None:
        """Wall and thread CPU of every call of OWNER.NAME longer than LONGER_THAN (on any thread)."""
        original = getattr(owner, name)

        def timed(this: Any, *args: Any) -> Any:
            if not self.on:
                return original(this, *args)
            t, cpu = time.monotonic(), time.thread_time()
            result = original(this, *args)
            wall, cpu = time.monotonic() - t, time.thread_time() - cpu
            if wall > longer_than:
                what = getattr(this, "_callback", None) or getattr(this, "fn", None) or this
                what = getattr(what, "func", what)  # (a partial: asyncio.to_thread's Context.run, a job)
                label = str(getattr(what, "__qualname__", type(what).__name__)).replace(" ", "_")
                thread = threading.current_thread().name.replace(" ", "_")
                self.events.append(
                    (time.monotonic(), event, f"{thread} {wall * 1e3:.3f} {cpu * 1e3:.3f} {t:.6f} {label}")
                )
            return result

        setattr(owner, name, timed)

    def command(self, arg: str) -> None:
        """`trace start`: count from now; `trace FILE`: stop and write."""
        if arg == "start":
            self.events.clear()
            self.on = True
            return
        self.on = False
        with open(arg, "w") as out:
            for th in threading.enumerate():
                out.write(f"0 thread {th.native_id} {th.name.replace(' ', '_')}\n")
            for t, what, detail in self.events:
                out.write(f"{t:.6f} {what} {detail}\n")


def watch_stalls(loop: asyncio.AbstractEventLoop, threshold: float = 0.05) -> Callable[[], None]:
    """BENCH_STALLS=1: where the event loop (the API's) was while it answered nothing for longer than
    THRESHOLD - a watchdog thread samples the loop thread's stack then (a sample in `select` is the loop
    waiting for the GIL) - the longest such stalls one by one, and which callbacks ran longer than 20 ms, per
    thread; printed at exit. Returns a function that starts counting afresh."""
    import atexit
    import collections
    import traceback

    beat = [time.monotonic()]
    began = [time.monotonic()]
    loop_thread = threading.get_ident()
    seen: collections.Counter[str] = collections.Counter()
    slow: collections.Counter[str] = collections.Counter()
    slow_n: collections.Counter[str] = collections.Counter()
    slow_max: collections.Counter[str] = collections.Counter()
    longest = [0.0]
    stalls: list[tuple[float, float, collections.Counter[str]]] = []  # (start, duration, stacks sampled)
    run = asyncio.events.Handle._run

    def timed(handle: asyncio.events.Handle) -> None:
        t0 = time.perf_counter()
        run(handle)
        took = time.perf_counter() - t0
        if took > 0.02:
            callback = getattr(handle._callback, "__qualname__", None) or repr(handle._callback)[:80]  # type: ignore[attr-defined]
            task = getattr(handle._callback, "__self__", None)  # type: ignore[attr-defined]
            if isinstance(task, asyncio.Task):
                callback += f" {getattr(task.get_coro(), '__qualname__', '?')}"
            callback = f"[{threading.current_thread().name}] {callback}"
            slow[callback] += int(took * 1000)
            slow_n[callback] += 1
            slow_max[callback] = max(slow_max[callback], int(took * 1000))

    asyncio.events.Handle._run = timed  # type: ignore[method-assign, assignment]

    def reset() -> None:
        seen.clear()
        slow.clear()
        slow_n.clear()
        slow_max.clear()
        stalls.clear()
        longest[0] = 0.0
        began[0] = time.monotonic()

    def heartbeat() -> None:
        beat[0] = time.monotonic()
        loop.call_later(0.005, heartbeat)

    def watchdog() -> None:
        current: tuple[float, collections.Counter[str]] | None = None
        while True:
            time.sleep(0.01)
            now = time.monotonic()
            stalled = now - beat[0]
            if stalled <= threshold:
                if current is not None:
                    stalls.append((current[0], beat[0] - current[0], current[1]))
                    current = None
                continue
            if current is None or current[0] != beat[0]:
                current = (beat[0], collections.Counter())
            longest[0] = max(longest[0], stalled)
            frame = sys._current_frames().get(loop_thread)
            if frame is not None:
                stack = traceback.extract_stack(frame)[-6:]
                where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in reversed(stack))
                seen[where] += 1
                current[1][where] += 1

    def show() -> None:
        print(f"stalls: longest {longest[0] * 1000:.0f} ms; samples (10 ms each):", file=sys.stderr)
        for stack, count in seen.most_common(25):
            print(f"  {count:5d} {stack}", file=sys.stderr)
        print("longest stalls (at s since counting began [monotonic clock], ms: samples):", file=sys.stderr)
        for at, took, stacks in sorted(stalls, key=lambda s: -s[1])[:12]:
            print(f"  {at - began[0]:7.1f} [{at:.1f}] {took * 1000:5.0f} ms:", file=sys.stderr)
            for stack, count in stacks.most_common(3):
                print(f"      {count:3d} {stack}", file=sys.stderr)
        print("callbacks over 20 ms (total ms, how many, longest ms):", file=sys.stderr)
        for callback, ms in slow.most_common(20):
            print(f"  {ms:6d} {slow_n[callback]:5d} {slow_max[callback]:5d} {callback}", file=sys.stderr)

    loop.call_soon(heartbeat)
    threading.Thread(target=watchdog, daemon=True).start()
    atexit.register(show)
    return reset


class SimulatedRuntime:
    """The runtime's side of the control plane's API, as the runtime process speaks it: it long-polls the
    desired Deployments (GET /v1/runtime/desired) and reports its pods (PUT /v1/runtime/pods) - pods
    that are ready at once, with nothing started on the machine."""

    def __init__(self, api_socket: Path) -> None:
        self._socket = api_socket
        self._pods: dict[tuple[str, str], Any] = {}
        self._deleted: set[tuple[str, str]] = set()
        self._next_ip = 2
        self._report = asyncio.Event()
        self._started_at = time.time()

    async def run(self) -> None:
        """Until stdin ends; `delete NS POD` on stdin: that pod is gone."""
        import aiohttp

        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(self._socket))) as session:
            tasks = [asyncio.create_task(self._poll(session)), asyncio.create_task(self._report_loop(session))]
            while line := (await reader.readline()).decode().split():
                if line[0] == "delete":
                    self.delete_pod(line[1], line[2])
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _poll(self, session: Any) -> None:
        from gossamer.runtime.wire import deployments_from_json

        version = ""
        while True:
            try:
                async with session.get("http://cp/v1/runtime/desired", params={"version": version, "wait": "30"}) as r:
                    desired = await r.json()
            except OSError:
                await asyncio.sleep(0.2)
                continue
            if desired["version"] == version or "deployments" not in desired:
                self._report.set()  # a control plane waiting for our pods
                continue
            version = desired["version"]
            self._apply(deployments_from_json(desired["deployments"]))
            self._report.set()

    def _apply(self, deployments: Iterable[Any]) -> None:
        from gossamer.runtime.types import PodStatus

        for spec in deployments:
            for k in range(spec.replicas):
                name = f"{spec.name}-{spec.template_hash[:10]}-{k}"
                key = (spec.namespace, name)
                if key in self._pods or key in self._deleted:
                    continue
                ip = f"10.244.{self._next_ip // 250}.{self._next_ip % 250 + 2}"
                self._next_ip += 1
                self._pods[key] = PodStatus(
                    name=name,
                    namespace=spec.namespace,
                    deployment=spec.name,
                    ip=ip,
                    labels=spec.labels,
                    service_account=spec.service_account,
                    has_sidecar=spec.inject_sidecar,
                    proxy_type=spec.proxy_type,
                    phase="Running",
                    app_ready=True,
                    proxy_ready=True,
                    started_at=time.time(),
                )

    def delete_pod(self, namespace: str, name: str) -> None:
        self._deleted.add((namespace, name))
        if self._pods.pop((namespace, name), None) is not None:
            self._report.set()

    async def _report_loop(self, session: Any) -> None:
        """As the runtime's kubelet reports: every pod's item (ReportItems), the changes sent (report_pods)."""
        from gossamer.runtime.daemon import LastReport, ReportItems, report_pods

        last: LastReport | None = None
        report_items = ReportItems()
        while True:
            await self._report.wait()
            self._report.clear()
            items = report_items.of([(self._pods[k], {"netns": ""}) for k in sorted(self._pods)])
            runtime = {"pid": os.getpid(), "pidStart": None, "startedAt": self._started_at}
            last = await report_pods(session, runtime, items, last)


# ---------------------------------------------------------------------------------------------------------
# Simulated Envoys (this process)
# ---------------------------------------------------------------------------------------------------------

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
VHDS = "type.googleapis.com/envoy.config.route.v3.VirtualHost"
VHDS_METHOD = "/envoy.service.route.v3.VirtualHostDiscoveryService/DeltaVirtualHosts"
SHORT_TYPES = {CDS: "cds", EDS: "eds", LDS: "lds", RDS: "rds", VHDS: "vhds"}


class Decoded:
    """What Envoy takes from a resource to subscribe further, decoded once per distinct version (the
    per-resource version is a hash of its bytes) - the simulator's shortcut, not the control plane's."""

    def __init__(self) -> None:
        self.eds_name: dict[tuple[str, str], str | None] = {}
        self.rds_names: dict[tuple[str, str], tuple[str, ...]] = {}
        self.vhds: dict[tuple[str, str], tuple[tuple[str, str], ...] | None] = {}

    def cluster(self, res: Any) -> str | None:
        key = (res.name, res.version)
        if key not in self.eds_name:
            from envoy.config.cluster.v3 import cluster_pb2

            c = cluster_pb2.Cluster.FromString(res.resource.value)
            eds = c.type == cluster_pb2.Cluster.EDS
            self.eds_name[key] = (c.eds_cluster_config.service_name or c.name) if eds else None
        return self.eds_name[key]

    def route(self, res: Any) -> tuple[tuple[str, str], ...] | None:
        """A route configuration's VHDS subscription: the gRPC metadata of its stream (None: no VHDS)."""
        key = (res.name, res.version)
        if key not in self.vhds:
            from envoy.config.route.v3 import route_pb2

            rc = route_pb2.RouteConfiguration.FromString(res.resource.value)
            if rc.HasField("vhds"):
                (grpc_service,) = rc.vhds.config_source.api_config_source.grpc_services
                self.vhds[key] = tuple((m.key, m.value) for m in grpc_service.initial_metadata)
            else:
                self.vhds[key] = None
        return self.vhds[key]

    def listener(self, res: Any) -> tuple[str, ...]:
        key = (res.name, res.version)
        if key not in self.rds_names:
            from envoy.config.listener.v3 import listener_pb2
            from envoy.extensions.filters.network.http_connection_manager.v3 import (
                http_connection_manager_pb2 as hcm_pb2,
            )

            lis = listener_pb2.Listener.FromString(res.resource.value)
            names = set()
            chains = [*lis.filter_chains, *([lis.default_filter_chain] if lis.HasField("default_filter_chain") else [])]
            for chain in chains:
                for f in chain.filters:
                    if f.typed_config.type_url.endswith("HttpConnectionManager"):
                        hcm = hcm_pb2.HttpConnectionManager.FromString(f.typed_config.value)
                        if hcm.HasField("rds"):
                            names.add(hcm.rds.route_config_name)
            self.rds_names[key] = tuple(sorted(names))
        return self.rds_names[key]


def cluster_eds_names(clusters: dict[str, Any]) -> set[str]:
    return {n for n in clusters.values() if n}


def listener_rds_names(listeners: dict[str, Any]) -> set[str]:
    return {n for names in listeners.values() for n in names}


def follow_subscriptions(
    resp: Any,
    held: dict[str, Any],
    decode: Callable[[Any], Any],
    wanted_of: Callable[[dict[str, Any]], set[str]],
    subscribed: set[str],
    have: set[str],
    dependent_type: str,
) -> tuple[set[str], Any]:
    """A CDS or LDS response, as Envoy follows it: update what is HELD, then subscribe to the EDS or RDS names
    it now needs and unsubscribe from the rest (None: no request). Returns the names now wanted."""
    from envoy.service.discovery.v3 import discovery_pb2

    for r in resp.resources:
        held[r.name] = decode(r)
    for name in resp.removed_resources:
        held.pop(name, None)
    wanted = wanted_of(held)
    added, gone = wanted - subscribed, subscribed - wanted
    have -= gone
    if not (added or gone):
        return wanted, None
    req = discovery_pb2.DeltaDiscoveryRequest(
        type_url=dependent_type, resource_names_subscribe=sorted(added), resource_names_unsubscribe=sorted(gone)
    )
    return wanted, req


@dataclass
class SimProxy:
    node_id: str
    metadata: dict[str, Any]
    namespace: str
    clusters: dict[str, str | None] = field(default_factory=dict)  # name -> EDS service name
    listeners: dict[str, tuple[str, ...]] = field(default_factory=dict)
    eds_names: set[str] = field(default_factory=set)
    rds_names: set[str] = field(default_factory=set)
    have: dict[str, set[str]] = field(default_factory=lambda: {EDS: set(), RDS: set()})
    vhds: dict[str, bool] = field(default_factory=dict)  # route configuration with VHDS -> first response in
    lds_requested: bool = False
    lds_acked: bool = False
    synced_at: float = 0.0
    bytes: int = 0
    acks: list[tuple[float, str, frozenset[str]]] = field(default_factory=list)  # (time, type, names updated)
    errors: list[str] = field(default_factory=list)

    def full(self) -> bool:
        return (
            self.lds_acked
            and self.eds_names <= self.have[EDS]
            and self.rds_names <= self.have[RDS]
            and all(self.vhds.values())  # Envoy's route configuration is warm with VHDS's first response
        )


class Envoys:
    def __init__(self, xds_socket: Path, pods: list[dict[str, Any]], ca_dir: Path) -> None:
        from gossamer.agent.bootstrap import proxy_metadata
        from gossamer.mesh import node_id
        from gossamer.security import CertificateAuthority

        self.socket = xds_socket
        # Like real Envoys, each proves its pod's identity over mTLS: certificates from the mesh CA.
        self.ca = CertificateAuthority(ca_dir)
        self._credentials: dict[tuple[str, str], Any] = {}
        self.decoded = Decoded()
        self.proxies: list[SimProxy] = []
        for p in pods:
            if not p["hasSidecar"] and p["proxyType"] != "router":
                continue
            meta = proxy_metadata(
                pod=p["name"],
                namespace=p["namespace"],
                ip=p["ip"],
                labels=p["labels"],
                service_account=p["serviceAccount"],
                workload=p["deployment"],
                proxy_type=p["proxyType"],
            )
            meta["GOSSAMER_SDS"] = "true"  # as the agent's bootstrap says when it serves SDS
            self.proxies.append(
                SimProxy(node_id(p["proxyType"], p["ip"], p["name"], p["namespace"]), meta, p["namespace"])
            )
        self.cancelled = 0
        self.error_times: list[float] = []
        self.started = 0.0
        self.all_synced = asyncio.Event()
        self._pending = len(self.proxies)
        self._tasks: list[asyncio.Task[None]] = []

    def credentials(self, proxy: SimProxy) -> Any:
        """mTLS with a workload certificate for the proxy's namespace and service account (one per identity)."""
        import grpc

        from gossamer.agent.sds import issue_workload_certificate
        from gossamer.mesh import spiffe_id

        key = (proxy.namespace, str(proxy.metadata["SERVICE_ACCOUNT"]))
        if key not in self._credentials:
            cert = issue_workload_certificate(self.ca, spiffe_id(*key), timedelta(hours=1))
            self._credentials[key] = grpc.ssl_channel_credentials(
                self.ca.root_pem.encode(), cert.key_pem.encode(), cert.cert_pem.encode()
            )
        return self._credentials[key]

    async def start(self) -> None:
        self.started = time.monotonic()
        self._tasks = [asyncio.create_task(self._run(p)) for p in self.proxies]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, proxy: SimProxy) -> None:
        import grpc

        while True:
            try:
                await self._stream(proxy)
                return
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as e:
                self.cancelled += 1
                proxy.errors.append(f"{e.code().name}: {e.details()}")
                self.error_times.append(time.monotonic() - self.started)
                await asyncio.sleep(0.5)  # Envoy's retry backoff (first step)

    async def _stream(self, proxy: SimProxy) -> None:
        import grpc
        from envoy.config.core.v3 import base_pb2
        from envoy.service.discovery.v3 import discovery_pb2
        from google.protobuf import json_format, struct_pb2

        from gossamer.mesh import CONTROL_PLANE_NAME

        metadata = struct_pb2.Struct()
        json_format.ParseDict(proxy.metadata, metadata)
        node = base_pb2.Node(
            id=proxy.node_id, cluster=f"{proxy.metadata['LABELS'].get('app', '')}.{proxy.namespace}", metadata=metadata
        )
        outbox: asyncio.Queue[Any] = asyncio.Queue()
        Req = discovery_pb2.DeltaDiscoveryRequest
        outbox.put_nowait(Req(node=node, type_url=CDS))

        async def requests() -> Any:
            while True:
                item = await outbox.get()
                if item is None:
                    return
                yield item

        async with grpc.aio.secure_channel(
            f"unix:{self.socket}",
            self.credentials(proxy),
            options=[
                ("grpc.max_receive_message_length", 256 * 1024 * 1024),
                ("grpc.ssl_target_name_override", CONTROL_PLANE_NAME),
                # A connection of its own, as each Envoy has (channels with the same target and credentials
                # would otherwise share one).
                ("grpc.use_local_subchannel_pool", 1),
            ],
        ) as channel:
            call = channel.stream_stream(
                "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources",
                request_serializer=Req.SerializeToString,
                response_deserializer=bytes,
            )
            vhds_streams: dict[str, asyncio.Task[None]] = {}

            def check_synced(now: float) -> None:
                if not proxy.synced_at and proxy.full():
                    proxy.synced_at = now
                    self._pending -= 1
                    if self._pending == 0:
                        self.all_synced.set()

            async def vhds_stream(route_config: str, metadata: tuple[tuple[str, str], ...]) -> None:
                """Envoy's VHDS subscription of one route configuration: a delta stream of its own on the
                same connection (`set_node_on_first_message_only`), wildcard, every response ACKed."""
                vhds_outbox: asyncio.Queue[Any] = asyncio.Queue()
                vhds_outbox.put_nowait(Req(node=node, type_url=VHDS))

                async def vhds_requests() -> Any:
                    while True:
                        yield await vhds_outbox.get()

                vhds_call = channel.stream_stream(
                    VHDS_METHOD, request_serializer=Req.SerializeToString, response_deserializer=bytes
                )
                call = vhds_call(vhds_requests(), metadata=metadata)
                while (data := await call.read()) is not grpc.aio.EOF:  # (not `async for`: see _ads)
                    now = time.monotonic()
                    proxy.bytes += len(data)
                    resp = discovery_pb2.DeltaDiscoveryResponse.FromString(data)
                    vhds_outbox.put_nowait(Req(type_url=VHDS, response_nonce=resp.nonce))  # the ACK
                    proxy.acks.append((now, VHDS, frozenset(r.name for r in resp.resources)))
                    proxy.vhds[route_config] = True
                    check_synced(now)
                    del data, resp  # (see _ads)

            async def vhds_retrying(route_config: str, metadata: tuple[tuple[str, str], ...]) -> None:
                while True:
                    try:
                        await vhds_stream(route_config, metadata)
                        return
                    except grpc.aio.AioRpcError as e:
                        self.cancelled += 1
                        proxy.errors.append(f"VHDS {e.code().name}: {e.details()}")
                        self.error_times.append(time.monotonic() - self.started)
                        await asyncio.sleep(0.5)

            try:
                await self._ads(proxy, call(requests()), outbox, vhds_streams, vhds_retrying, check_synced)
            finally:
                for task in vhds_streams.values():
                    task.cancel()
                await asyncio.gather(*vhds_streams.values(), return_exceptions=True)

    async def _ads(
        self,
        proxy: SimProxy,
        responses: Any,
        outbox: asyncio.Queue[Any],
        vhds_streams: dict[str, asyncio.Task[None]],
        vhds: Callable[[str, tuple[tuple[str, str], ...]], Any],
        check_synced: Callable[[float], None],
    ) -> None:
        import grpc
        from envoy.service.discovery.v3 import discovery_pb2

        Req = discovery_pb2.DeltaDiscoveryRequest
        # Envoy keeps no response once it has applied it; neither does this loop. With `async for` (gRPC's response
        # iterator holds the last message while it waits for the next) and the loop's variables, every stream kept
        # its last response - after the storm, each proxy's first VHDS table (1000 virtual hosts) and its last ADS
        # response - until the next one came: the first change after the storm (the pod removal, for ADS) freed
        # 2000 of them while the proxies received it (this process: ~0.8-1.4 CPU-s in that change, 0.4 in others;
        # that change's p99 ~1.4 s, the others' ~0.6-0.8 s). Read one message at a time and drop it.
        while (data := await responses.read()) is not grpc.aio.EOF:
            now = time.monotonic()
            proxy.bytes += len(data)
            resp = discovery_pb2.DeltaDiscoveryResponse.FromString(data)
            t = resp.type_url
            names = frozenset(r.name for r in resp.resources) if t in (EDS, RDS) else frozenset()
            if t == CDS:
                proxy.eds_names, follow = follow_subscriptions(
                    resp, proxy.clusters, self.decoded.cluster, cluster_eds_names, proxy.eds_names, proxy.have[EDS], EDS
                )
                if follow is not None:
                    outbox.put_nowait(follow)
            elif t == LDS:
                proxy.rds_names, follow = follow_subscriptions(
                    resp,
                    proxy.listeners,
                    self.decoded.listener,
                    listener_rds_names,
                    proxy.rds_names,
                    proxy.have[RDS],
                    RDS,
                )
                if follow is not None:
                    outbox.put_nowait(follow)
            elif t in (EDS, RDS):
                proxy.have[t] |= names
                proxy.have[t] -= set(resp.removed_resources)
                for name in resp.removed_resources if t == RDS else ():
                    if name in vhds_streams:  # the route configuration is gone, and its subscription
                        vhds_streams.pop(name).cancel()
                        proxy.vhds.pop(name, None)
                for r in resp.resources if t == RDS else ():
                    metadata = self.decoded.route(r)
                    if metadata is not None and r.name not in vhds_streams:
                        # A route configuration with VHDS: Envoy opens its subscription (and the route
                        # configuration is warm only with its first response).
                        proxy.vhds[r.name] = False
                        vhds_streams[r.name] = asyncio.create_task(vhds(r.name, metadata))
            outbox.put_nowait(Req(type_url=t, response_nonce=resp.nonce))  # the ACK
            proxy.acks.append((now, t, names))
            if t == LDS:
                proxy.lds_acked = True
            if not proxy.lds_requested and proxy.clusters and proxy.eds_names <= proxy.have[EDS]:
                # Cluster warming done: Envoy asks for listeners only now.
                proxy.lds_requested = True
                outbox.put_nowait(Req(type_url=LDS))
            check_synced(now)
            del data, resp
            r = None  # (an RDS response's last resource keeps the whole response)


# ---------------------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_pids(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out.extend(int(c) for c in (task / "children").read_text().split())
    return out


class ApiProbe:
    """Reads one resource over the API (as `gossamer get` does) every 50 ms, from a process of its own (not
    to share a GIL with the simulated Envoys); the longest wait per phase (`mark()` ends one): how long the
    control plane left a client waiting."""

    def __init__(self, socket: Path) -> None:
        self._child = subprocess.Popen(
            [sys.executable, __file__, "--probe-api", str(socket)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def mark(self) -> None:
        assert self._child.stdin is not None
        self._child.stdin.write("mark\n")
        self._child.stdin.flush()

    def stop(self) -> list[float]:
        out, _ = self._child.communicate("stop\n", timeout=600)
        return [float(x) for x in out.split()]


def probe_api(socket: str) -> None:
    from gossamer.cli.client import ApiClient

    client = ApiClient(Path(socket), timeout=600)
    stop = threading.Event()
    phases: list[float] = []
    longest = [0.0]

    def commands() -> None:
        for line in sys.stdin:
            phases.append(longest[0])
            longest[0] = 0.0
            if line.strip() == "stop":
                break
        stop.set()

    threading.Thread(target=commands, daemon=True).start()
    while not stop.is_set():
        t0 = time.monotonic()
        with contextlib.suppress(OSError):
            client.get("/v1/resources/VirtualService?namespace=ns-0&name=svc-0")
        waited = time.monotonic() - t0
        longest[0] = max(longest[0], waited)
        if waited > 0.1:  # (when: the monotonic clock, as the control plane's BENCH_STALLS report shows it)
            print(f"api probe: waited {waited * 1000:.0f} ms at {t0:.1f}", file=sys.stderr, flush=True)
        stop.wait(0.05)
    print(" ".join(str(p) for p in phases))


@dataclass
class Result:
    services: int
    sidecars: bool
    proxies: int = 0
    storm: float = 0.0
    storm_cpu: float = 0.0
    change_samples: list[float] = field(default_factory=list)
    change_affected: int = 0
    change_cpu: float = 0.0
    eds_samples: list[float] = field(default_factory=list)
    burst_seconds: float = 0.0
    burst_cpu: float = 0.0
    rss_mb: float = 0.0
    checker_rss_mb: float = 0.0  # apply's checker process (peak)
    api_max_wait: float = 0.0
    bytes_per_proxy: float = 0.0
    cancelled: int = 0
    apply_seconds: float = 0.0  # the longest `apply` of one VirtualService took
    api_max_wait_storm: float = 0.0
    errors: list[str] = field(default_factory=list)
    change_responses: dict[str, float] = field(default_factory=dict)  # per change: responses by xDS type
    change_bytes: float = 0.0  # per change: bytes every proxy received together
    change_after_apply: list[float] = field(default_factory=list)  # the same ACKs, from when apply answered
    change_p99s: list[float] = field(default_factory=list)  # each change's own p99 (one slow change shows)

    @property
    def label(self) -> str:
        return f"{self.services} services{' (Sidecar per namespace)' if self.sidecars else ''}"


def acked_after(proxies: list[SimProxy], t0: float, *wanted: tuple[str, str]) -> list[float]:
    """Per proxy that received any of the `wanted` (type URL, name) after t0: the last such ACK's delay. (Read
    from the newest back to t0: the measurement waits for the first ACK this way while the simulated Envoys
    receive - a scan of every ACK since the storm held their loop for tens of ms per call.)"""
    out = []
    for p in proxies:
        for t, typ, names in reversed(p.acks):
            if t < t0:
                break
            if any(w in names for wt, w in wanted if wt == typ):
                out.append(t - t0)
                break
    return out


def command(child: subprocess.Popen[str], line: str) -> None:
    """A command to the control plane's process (serve_control_plane reads them)."""
    assert child.stdin is not None
    child.stdin.write(line + "\n")
    child.stdin.flush()


def trace_start(child: subprocess.Popen[str], *, traced: bool = True) -> None:
    """BENCH_FANOUT (see FanoutTrace): the control plane's trace starts."""
    if traced and os.environ.get("BENCH_FANOUT"):
        command(child, "trace start")


def trace_write(
    child: subprocess.Popen[str], proxies: list[SimProxy], t0: float, what: str, *, traced: bool = True
) -> None:
    """BENCH_FANOUT=PREFIX: the control plane writes its trace to PREFIX-WHAT-cp.log, this process when each
    simulated Envoy received each response since T0 to PREFIX-WHAT-sim.log (first line: `T0 t0 WHAT`)."""
    prefix = os.environ.get("BENCH_FANOUT")
    if not (traced and prefix):
        return
    command(child, f"trace {prefix}-{what}-cp.log")
    with open(f"{prefix}-{what}-sim.log", "w") as out:
        out.write(f"{t0:.6f} t0 {what}\n")
        for p in proxies:
            for t, typ, _ in p.acks:
                if t >= t0:
                    out.write(f"{t:.6f} received {p.node_id} {SHORT_TYPES.get(typ, typ)}\n")


def settle_simulator_heap() -> None:
    """The simulated Envoys hold every proxy's subscriptions (millions of Python objects at 1000 services):
    this process's full garbage collections then paused all 2000 of them for 0.5-1.7 s at a time, which no
    Envoy (C++, no collector) does, and the pauses landed in the control plane's figures (a pod removed: the
    ACKs of most proxies 0.5 s later). What the simulator built so far is frozen out of the collector's
    generations (gc.freeze: still freed by reference counting)."""
    gc.freeze()


async def wait_quiet(proxies: list[SimProxy], t0: float, quiet: float = 0.5, limit: float = 120.0) -> None:
    """Until no ACK was sent for `quiet` seconds (after t0)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet / 2)
        last = max((p.acks[-1][0] for p in proxies if p.acks), default=t0)
        if time.monotonic() - max(last, t0) >= quiet:
            return


async def measure(n: int, sidecars: bool) -> Result:
    from gossamer.cli.client import ApiClient

    result = Result(n, sidecars)
    with tempfile.TemporaryDirectory(prefix="gsm-cpbench-") as tmp:
        manifest = Path(tmp) / "mesh.yaml"
        manifest.write_text(manifests(n, sidecars))
        run_dir = Path(tmp) / "run"
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve-control-plane", str(Path(tmp) / "state"), str(run_dir), str(manifest)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None and child.stdin is not None
            if child.stdout.readline().strip() != "ready":
                raise SystemExit("control plane did not start")
            client = ApiClient(run_dir / "api.sock", timeout=600)
            pods: list[dict[str, Any]] = []
            while len(pods) < n * REPLICAS + 1:
                pods = (await asyncio.to_thread(client.get, "/v1/status"))[1]["pods"]
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # the start-up push is done: the storm starts on a settled control plane
            envoys = Envoys(run_dir / "xds.sock", pods, Path(tmp) / "state" / "ca")
            result.proxies = len(envoys.proxies)
            probe = ApiProbe(run_dir / "api.sock")
            # BENCH_PROFILE=PREFIX: cProfile of the control plane in the storm and the changes (PREFIX-*.prof).
            profile_to = os.environ.get("BENCH_PROFILE")
            tag = f"{n}{'s' if sidecars else ''}"
            if profile_to:
                child.stdin.write("profile start\n")
                child.stdin.flush()
            child.stdin.write("gc-reset\n")
            child.stdin.flush()
            cpu0, t0 = cpu_seconds(child.pid), time.monotonic()
            await envoys.start()
            await asyncio.wait_for(envoys.all_synced.wait(), 900)
            result.storm = time.monotonic() - t0
            settle_simulator_heap()
            probe.mark()
            if profile_to:
                child.stdin.write(f"profile {profile_to}-{tag}-storm.prof\n")
                child.stdin.flush()
            status, synced = await asyncio.to_thread(client.get, "/v1/sync?timeout=120")
            assert synced["synced"], synced
            result.storm_cpu = cpu_seconds(child.pid) - cpu0
            result.bytes_per_proxy = sum(p.bytes for p in envoys.proxies) / len(envoys.proxies)

            if profile_to:
                child.stdin.write("profile start\n")
                child.stdin.flush()
            # One VirtualService change at a time -> every proxy that routes to its host ACKed.
            host_ns = namespace_of(0)
            route_name = str(PORT)
            changed_vhost = f"{route_name}/svc-0.{host_ns}.svc.cluster.local:{PORT}"
            cpu0, changes_began = cpu_seconds(child.pid), time.monotonic()
            bytes0 = sum(p.bytes for p in envoys.proxies)
            for change in range(CHANGES):
                trace_start(child, traced=change == 1)
                t0 = time.monotonic()
                text = ROUTED.format(i=0, ns=host_ns, timeout=change + 2)
                status, body = await asyncio.to_thread(
                    client.post, "/v1/apply", {"files": [{"name": "vs.yaml", "text": text}]}
                )
                assert status == 200, body
                applied = time.monotonic() - t0
                result.apply_seconds = max(result.apply_seconds, applied)
                status, synced = await asyncio.to_thread(
                    client.get, f"/v1/sync?revision={body['revision']}&timeout=120"
                )
                assert synced["synced"], synced
                await wait_quiet(envoys.proxies, t0, quiet=0.3)
                # The changed host's virtual host: over VHDS (sidecars), or its route table (gateways, RDS).
                samples = acked_after(envoys.proxies, t0, (RDS, route_name), (VHDS, changed_vhost))
                trace_write(child, envoys.proxies, t0, "change", traced=change == 1)
                result.change_affected = len(samples)
                result.change_samples.extend(samples)
                result.change_p99s.append(percentile(samples, 0.99))
                result.change_after_apply.extend(s - applied for s in samples)
            result.change_cpu = (cpu_seconds(child.pid) - cpu0) / CHANGES
            result.change_bytes = (sum(p.bytes for p in envoys.proxies) - bytes0) / CHANGES
            for p in envoys.proxies:
                for t, typ, _ in p.acks:
                    if t >= changes_began:
                        short = SHORT_TYPES.get(typ, typ)
                        result.change_responses[short] = result.change_responses.get(short, 0) + 1 / CHANGES

            if profile_to:
                child.stdin.write(f"profile {profile_to}-{tag}-changes.prof\n")
                child.stdin.flush()
            settle_simulator_heap()
            trace_start(child)
            # A pod removed -> every proxy that sees its service has the new endpoints.
            victim = next(p for p in pods if p["deployment"] == "svc-1")
            cluster = f"outbound|{PORT}||svc-1.{victim['namespace']}.svc.cluster.local"
            t0 = time.monotonic()
            child.stdin.write(f"delete {victim['namespace']} {victim['name']}\n")
            child.stdin.flush()
            # The pod's removal first reaches the control plane (the runtime's report), then a push: wait for
            # its first ACK before waiting for quiet (on a loaded machine that can take longer than `quiet`).
            deadline = time.monotonic() + 120
            while not acked_after(envoys.proxies, t0, (EDS, cluster)) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await wait_quiet(envoys.proxies, t0, quiet=1.0)
            result.eds_samples = acked_after(envoys.proxies, t0, (EDS, cluster))
            trace_write(child, envoys.proxies, t0, "eds")

            # 10 changes within one second (different VirtualServices): until every proxy is quiet again.
            cpu0, t0 = cpu_seconds(child.pid), time.monotonic()
            for change in range(CHANGES):
                i = ROUTED_EVERY * (change + 1)
                text = ROUTED.format(i=i, ns=namespace_of(i), timeout=7)
                status, body = await asyncio.to_thread(
                    client.post, "/v1/apply", {"files": [{"name": f"vs{i}.yaml", "text": text}]}
                )
                assert status == 200, body
                await asyncio.sleep(max(0.0, t0 + (change + 1) * 0.1 - time.monotonic()))
            status, synced = await asyncio.to_thread(client.get, f"/v1/sync?revision={body['revision']}&timeout=300")
            assert synced["synced"], synced
            result.burst_seconds = time.monotonic() - t0
            result.burst_cpu = cpu_seconds(child.pid) - cpu0

            waits = probe.stop()  # the storm's, then the changes'
            result.api_max_wait, result.api_max_wait_storm = max(waits), waits[0]
            result.rss_mb = peak_rss_mb(child.pid)
            # The control plane's own processes (apply's check): their peaks count too.
            result.checker_rss_mb = sum(peak_rss_mb(pid) for pid in child_pids(child.pid))
            result.cancelled = envoys.cancelled
            result.errors = sorted({e for p in envoys.proxies for e in p.errors})[:3]
            if envoys.error_times:
                result.errors.append(
                    f"errors between {min(envoys.error_times):.1f} s and "
                    f"{max(envoys.error_times):.1f} s after the storm began"
                )
            await envoys.stop()
        finally:
            if child.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    child.stdin.close()
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return result


def report(r: Result) -> None:
    ms = 1000
    print(f"{r.label}, {r.proxies} proxies:")
    print(
        f"  storm: every proxy has its full config after {r.storm:.1f} s ({r.storm_cpu:.1f} CPU-s); "
        f"{r.bytes_per_proxy / 1024:.0f} KiB per proxy"
    )
    print(
        f"  one VirtualService change -> {r.change_affected} affected proxies ACKed: "
        f"p50 {percentile(r.change_samples, 0.5) * ms:.0f} ms, p99 {percentile(r.change_samples, 0.99) * ms:.0f} ms, "
        f"{r.change_cpu:.2f} CPU-s per change (from apply's answer: "
        f"p50 {percentile(r.change_after_apply, 0.5) * ms:.0f} ms, "
        f"p99 {percentile(r.change_after_apply, 0.99) * ms:.0f} ms); "
        f"{r.change_bytes / 1024:.0f} KiB sent in all per change ("
        + ", ".join(f"{n:.0f} {t}" for t, n in sorted(r.change_responses.items()))
        + " responses); each change's p99: "
        + " ".join(f"{p * ms:.0f}" for p in r.change_p99s)
        + " ms"
    )
    print(
        f"  a pod removed -> {len(r.eds_samples)} proxies have the new endpoints: "
        f"first {min(r.eds_samples, default=float('nan')) * ms:.0f} ms, "
        f"p50 {percentile(r.eds_samples, 0.5) * ms:.0f} ms, p99 {percentile(r.eds_samples, 0.99) * ms:.0f} ms"
    )
    print(
        f"  10 changes within one second: all ACKed {r.burst_seconds:.1f} s after the first ({r.burst_cpu:.1f} CPU-s)"
    )
    print(
        f"  peak RSS {r.rss_mb:.0f} MB (and {r.checker_rss_mb:.0f} MB apply's checker process), "
        f"API max wait {r.api_max_wait * ms:.0f} ms (in the storm "
        f"{r.api_max_wait_storm * ms:.0f} ms; apply of one VirtualService: {r.apply_seconds * ms:.0f} ms), "
        f"cancelled streams {r.cancelled}" + "".join(f"\n    stream error: {e}" for e in r.errors),
        flush=True,
    )


def summary(r: Result) -> str:
    ms = 1000
    sidecar = " with a Sidecar per namespace" if r.sidecars else ""
    return (
        f"{r.services} services{sidecar}, {r.proxies} proxies: storm {r.storm:.1f} s, "
        f"change p50 {percentile(r.change_samples, 0.5) * ms:.0f} ms, "
        f"change p99 {percentile(r.change_samples, 0.99) * ms:.0f} ms, change CPU {r.change_cpu:.1f} s, "
        f"eds p99 {percentile(r.eds_samples, 0.99) * ms:.0f} ms, peak RSS {r.rss_mb:.0f} MB, "
        f"API max wait {r.api_max_wait * ms:.0f} ms, cancelled streams {r.cancelled}"
    )


def exponent(a: float, b: float, na: int, nb: int) -> float:
    return math.log(b / a) / math.log(nb / na) if a > 0 and b > 0 else float("nan")


def main(argv: list[str]) -> None:
    if argv[:1] == ["--serve-control-plane"]:
        serve_control_plane(*argv[1:4])
        return
    if argv[:1] == ["--simulate-runtime"]:
        asyncio.run(SimulatedRuntime(Path(argv[1])).run())
        return
    if argv[:1] == ["--probe-api"]:
        probe_api(argv[1])
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    # A reconnecting simulated Envoy leaves grpc's request task behind: asyncio's complaints are noise here.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    scenarios = [(int(a.rstrip("s")), a.endswith("s")) for a in argv] or [
        (100, False),
        (300, False),
        (1000, False),
        (300, True),
    ]
    print(
        f"control plane: real control plane, simulated Envoys (delta ADS); {NAMESPACES} namespaces, "
        f"{REPLICAS} replicas per service, 1 in {ROUTED_EVERY} services with a VirtualService and a "
        f"DestinationRule (2 subsets); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        flush=True,
    )
    results = []
    for n, sidecars in scenarios:
        results.append(asyncio.run(measure(n, sidecars)))
        report(results[-1])
    plain = [r for r in results if not r.sidecars]
    for a, b in zip(plain, plain[1:], strict=False):
        na, nb = a.services, b.services
        print(
            f"growth {na} -> {nb} services: storm CPU x{b.storm_cpu / a.storm_cpu:.1f} "
            f"(N^{exponent(a.storm_cpu, b.storm_cpu, na, nb):.2f}), change CPU x{b.change_cpu / a.change_cpu:.1f} "
            f"(N^{exponent(a.change_cpu, b.change_cpu, na, nb):.2f}), "
            f"RSS N^{exponent(a.rss_mb, b.rss_mb, na, nb):.2f}"
        )
    for r in results:
        print(summary(r))


if __name__ == "__main__":
    main(sys.argv[1:])
