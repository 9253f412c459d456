"""One pod: a netns wired to the bridge, its name files, capture rules, Envoy and app processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from gossamer.agent.bootstrap import (
    build_bootstrap,
    proxy_metadata,
    service_cluster,
    write_bootstrap,
)
from gossamer.agent.envoy import as_proxy_user, envoy_args
from gossamer.agent.sds import (
    DEFAULT_CERT_TTL,
    DEFAULT_ROTATE_FRACTION,
    CertificateSigner,
    SdsServer,
    sds_socket_for,
)
from gossamer.mesh import TRUST_DOMAIN, TrustDomains, node_id
from gossamer.runtime import host_ports, hosts, iptables, network, sandbox, volumes
from gossamer.runtime.image_containers import (
    ERR_IMAGE_PULL,
    ERR_IMAGE_PULL_SHOWN_S,
    IMAGE_PULL_BACKOFF,
    PULL_BACKOFF_INITIAL_S,
    ContainerUser,
    backing_off,
    launch_argv,
    launched_user,
    next_pull_delay,
    prepare_image_container,
    pull_failed,
)
from gossamer.runtime.images import ImageCache, ImageError
from gossamer.runtime.linux import same_process_alive
from gossamer.runtime.probes import run_probe, unix_http_get
from gossamer.runtime.processes import SupervisedProcess, base_env
from gossamer.runtime.state import StateRecord, kill_netns_processes
from gossamer.runtime.types import ContainerSpec, DeploymentSpec, PodStatus, ServiceAddress
from gossamer.runtime.wire import deployment_to_json
from gossamer.telemetry.merge import StatsMerger, app_scrape
from gossamer.telemetry.peer import peer_values, proxy_env

log = logging.getLogger(__name__)

HOLD_APPLICATION_TIMEOUT_S = 60.0

PROXY_CONTAINER = "istio-proxy"
STOP_GRACE = 3.0
PROBE_FAILURE_THRESHOLD = 3


def has_sidecar(spec: DeploymentSpec) -> bool:
    """Router pods always run Envoy; others when injected and not opted out by annotation."""
    if spec.proxy_type == "router":
        return True
    return spec.inject_sidecar and dict(spec.annotations).get("sidecar.istio.io/inject", "true") != "false"


@dataclass
class PodContext:
    """What every pod needs from the runtime."""

    record: StateRecord
    state_dir: Path
    run_dir: Path
    xds_socket: Path
    envoy_binary: Path
    notify: Callable[[], None]
    # The mesh CA: when set, every pod with Envoy gets an SDS server (its agent) serving the
    # pod's workload certificate (`default`) and the root (`ROOTCA`) on <run_dir>/sds.sock.
    ca: CertificateSigner | None = None
    cert_ttl: timedelta = DEFAULT_CERT_TTL
    cert_rotate_fraction: float = DEFAULT_ROTATE_FRACTION  # up --secret-grace-period-ratio (1 - it)
    # The control plane's Zipkin collector: every Envoy's bootstrap gets a `zipkin` cluster to it.
    zipkin_socket: Path | None = None
    # A signer per pod (namespace, pod name): the runtime process asks the control plane's CA for that pod.
    pod_signer: Callable[[str, str], CertificateSigner] | None = None
    # The ingress gateway pod (namespace, name) at IP now listens on these container ports (None: the pod
    # is going): the runtime forwards the host's 127.0.0.1 ports to them (runtime/host_ports.py).
    ingress_listeners: Callable[[tuple[str, str], str, frozenset[int] | None], Awaitable[None]] | None = None
    # The mesh's trust domain (the control plane's desired state): the pods' SPIFFE ids are in it.
    trust_domain: str = TRUST_DOMAIN


class Container:
    def __init__(self, spec: ContainerSpec, proc: SupervisedProcess) -> None:
        self.spec = spec
        self.proc = proc
        self.probe_ready = False
        self.task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        if not self.proc.running:
            return False
        return True if self.spec.readiness_probe is None else self.probe_ready


class Pod:
    def __init__(self, *, spec: DeploymentSpec, name: str, short_id: str, ip: str, ctx: PodContext) -> None:
        self.spec = spec
        self.name = name
        self.namespace = spec.namespace
        self.short_id = short_id
        self.template_hash = spec.template_hash
        self.ctx = ctx
        netns, veth = network.names_for(short_id)
        self.net = network.PodNetwork(netns=netns, veth=veth, ip=ip)
        self.has_sidecar = has_sidecar(spec)
        self.proxy_type: Literal["sidecar", "router"] = spec.proxy_type
        # Every Envoy, sidecar or gateway, runs as the pod's own proxy user, without capabilities: the
        # ingress gateway binds in its pod only, and the runtime forwards the host's ports to it.
        self.proxy_uid: int | None = sandbox.proxy_uid(ip) if self.has_sidecar else None
        # Only the ingress gateway is on the host (the egress gateway and other routers are not).
        self.ingress = self.proxy_type == "router" and dict(spec.labels).get("istio") == "ingressgateway"
        self.ingress_ports: frozenset[int] = frozenset()  # its listeners' container ports, as last forwarded
        self.phase: Literal["Pending", "Running", "Terminating"] = "Pending"
        self.started_at = time.time()
        self.containers: list[Container] = []
        self.proxy: SupervisedProcess | None = None
        self.proxy_live = False
        self.sds: SdsServer | None = None
        self.volumes = volumes.PodVolumes(volumes.volumes_dir(ctx.run_dir / short_id), spec)
        self.waiting: list[str] = []  # references (volumes, env) and images the containers wait for
        self._image_argv: dict[str, list[str]] = {}  # container -> its container_init command (image containers)
        self._images_lock = asyncio.Lock()  # one pull and unpack at a time (a retry and a ConfigMap update)
        self._pull_retry: asyncio.Task[None] | None = None
        self._image_users: dict[str, tuple[int, int]] = {}  # container -> (uid, gid) its image runs as
        self.stats: StatsMerger | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._deleting: asyncio.Task[None] | None = None
        self._adopting: dict[str, Any] | None = None  # a previous runtime's record of this pod, while adopting it
        # Why creating it failed ("CreateContainerError: ..."): what was made is removed, the runtime keeps
        # the pod listed (no IP) with this reason and retries with back-off (as the kubelet does).
        self.failure: str | None = None
        self.create_attempts = 0

    # ---- paths -------------------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        return self.ctx.run_dir / self.short_id

    @property
    def admin_socket(self) -> Path:
        return self.run_dir / "admin.sock"

    @property
    def sds_socket(self) -> Path:
        return sds_socket_for(self.run_dir)

    @property
    def identity(self) -> str:
        """The pod's SPIFFE id: spiffe://<trust domain>/ns/<namespace>/sa/<service account>."""
        return TrustDomains(self.ctx.trust_domain).spiffe_id(self.namespace, self.spec.service_account)

    @property
    def bootstrap_path(self) -> Path:
        return self.run_dir / "envoy.json"

    def log_path(self, container: str) -> Path:
        return log_path(self.ctx.state_dir, self.name, self.namespace, container)

    # ---- status ------------------------------------------------------------------------

    @property
    def proxy_ready(self) -> bool:
        if not self.has_sidecar:
            return True
        return self.proxy is not None and self.proxy.running and self.proxy_live

    @property
    def app_ready(self) -> bool:
        return self.failure is None and not self.waiting and all(c.ready for c in self.containers)

    @property
    def restarts(self) -> int:
        return sum(c.proc.restarts for c in self.containers) + (self.proxy.restarts if self.proxy else 0)

    @property
    def ready(self) -> bool:
        return self.phase == "Running" and self.app_ready and self.proxy_ready

    def status(self) -> PodStatus:
        ports: list[int] = []
        for c in self.spec.containers:
            ports += [p for p in c.ports if p not in ports]
        return PodStatus(
            name=self.name,
            namespace=self.namespace,
            deployment=self.spec.name,
            ip="" if self.failure is not None else self.net.ip,
            labels=self.spec.labels,
            service_account=self.spec.service_account,
            has_sidecar=self.has_sidecar,
            proxy_type=self.proxy_type,
            phase=self.phase,
            app_ready=self.app_ready,
            proxy_ready=self.proxy_ready,
            restarts=self.restarts if self.failure is None else max(self.create_attempts - 1, 0),
            started_at=self.started_at,
            ports=tuple(ports),
            proxy_uid=self.proxy_uid,
            run_as=tuple((c.name, *self._image_users.get(c.name, self.run_as(c))) for c in self.spec.containers),
            waiting=tuple(self.waiting) if self.failure is None else (self.failure,),
        )

    def run_as(self, cspec: ContainerSpec) -> tuple[int, int]:
        """(uid, gid) of a container: its securityContext's, else the pod's own app user."""
        uid = cspec.run_as_user if cspec.run_as_user is not None else sandbox.app_uid(self.net.ip)
        if cspec.run_as_group is not None:
            gid = cspec.run_as_group
        else:
            gid = 0 if uid == 0 else sandbox.app_uid(self.net.ip)
        return uid, gid

    # ---- lifecycle ---------------------------------------------------------------------

    async def create(
        self, services: Sequence[ServiceAddress], prepare: Callable[[Pod], Awaitable[None]] | None = None
    ) -> None:
        """Build the pod; on failure, whatever was created is removed and the error re-raised.
        `prepare` runs once the network is up, before any process starts."""
        rec = self.ctx.record
        # Record first, create second: a crash in between still gets cleaned up.
        rec.add("netns", self.net.netns)
        rec.add("veths", self.net.veth)
        rec.add("etc_netns", self.net.netns)
        rec.add("dirs", str(self.run_dir))
        try:
            await network.create_netns(self.net.netns)
            await network.setup_pod_network(self.net)
            self.write_name_files(services)
            # Apps bind ports below 1024 without capabilities, as in a container runtime.
            await network.run(
                "ip", "netns", "exec", self.net.netns, "sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=0"
            )
            # The pod's sockets (Envoy admin, SDS: the workload's key) are for its proxy user only.
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.run_dir.chmod(0o700)
            if self.has_sidecar:
                if self.proxy_uid is not None:
                    if self.proxy_type == "sidecar":  # a gateway captures nothing
                        await iptables.apply_capture(self.net.netns, self.proxy_uid)
                    os.chown(self.run_dir, self.proxy_uid, self.proxy_uid)
                if self.ingress:
                    await self._forward_ingress(frozenset())  # the ports `up` names, from now on
                await self._start_sds()
                await self._start_stats()
                self._start_proxy()
                if self.spec.hold_application_until_proxy_starts:
                    await self._wait_proxy_live(HOLD_APPLICATION_TIMEOUT_S)
            if prepare is not None:
                await prepare(self)
            self.waiting = await asyncio.to_thread(self.volumes.prepare)
            self.waiting += await self._prepare_images()
            if self.waiting:
                log.warning("pod %s/%s: containers wait for %s", self.namespace, self.name, "; ".join(self.waiting))
            else:
                self._start_containers()
            self.phase = "Running"
            self._retry_pulls_if_failed()
            self.ctx.notify()
        except BaseException:
            await self._teardown()
            raise

    # ---- adoption (a restarted runtime takes over its running pods) ----------------------

    def record_entry(self) -> dict[str, Any]:
        """What the state record keeps so that the next runtime can adopt this pod."""
        return {
            "namespace": self.namespace,
            "name": self.name,
            "shortId": self.short_id,
            "ip": self.net.ip,
            "netns": self.net.netns,
            "veth": self.net.veth,
            "templateHash": self.template_hash,
            "spec": deployment_to_json(self.spec),
            "startedAt": self.started_at,
            "proxyLive": self.proxy_live,
            # The ingress gateway's forwarded ports: a restarted runtime forwards them at once.
            "ingressPorts": sorted(self.ingress_ports),
            # Containers not started yet (a reference or an image missing): the next runtime waits on.
            "waiting": list(self.waiting),
            "proxy": self.proxy.entry() if self.proxy is not None else None,
            "containers": {c.spec.name: {**c.proc.entry(), "probeReady": c.probe_ready} for c in self.containers},
        }

    async def adopt(self, entry: dict[str, Any]) -> None:
        """Take over this pod from a previous runtime: its network is there, its processes that still run
        are watched (never restarted), the others started; readiness as last recorded until re-checked."""
        self._adopting = entry
        self.phase = "Running"
        self.started_at = float(entry.get("startedAt") or self.started_at)
        self.proxy_live = bool(entry.get("proxyLive"))
        if self.ingress:
            await self._forward_ingress(frozenset(int(p) for p in entry.get("ingressPorts") or ()))
        try:
            if self.has_sidecar:
                self._tasks.append(asyncio.get_running_loop().create_task(self._adopt_sds()))
                self._start_proxy()
            if entry.get("waiting"):
                # Its containers never started (their image has no launch spec yet): wait on, as before.
                self.waiting = await asyncio.to_thread(self.volumes.prepare) or await self._prepare_images()
                if not self.waiting:
                    self._start_containers()
                self._retry_pulls_if_failed()
            else:
                for cspec in self.spec.containers:
                    self._start_container(cspec)
        finally:
            self._adopting = None

    async def _adopt_sds(self) -> None:
        """A new agent for an adopted pod (the old one died with its runtime; Envoy keeps its certificate
        meanwhile and reconnects to the new one). Retries while the control plane's CA is away."""
        while True:
            try:
                await self._start_sds()
                if self.stats is None:
                    await self._start_stats()  # its :15020 merge server too (the old one died with the runtime)
                return
            except Exception as e:  # noqa: BLE001 - keep trying; Envoy serves with its current certificate
                self.sds = None
                log.warning("pod %s/%s: agent not started (%s); retrying", self.namespace, self.name, e)
                await asyncio.sleep(1.0)

    def _adopt_process(self, proc: SupervisedProcess, recorded: dict[str, Any] | None) -> None:
        pid = recorded.get("pid") if recorded else None
        if recorded and isinstance(pid, int) and same_process_alive(pid, recorded.get("start")):
            proc.adopt(
                recorded["pid"],
                recorded.get("start"),
                restarts=int(recorded.get("restarts", 0)),
                started_at=float(recorded.get("startedAt") or 0.0),
            )
        elif recorded:
            proc.restarts = int(recorded.get("restarts", 0)) + (1 if recorded.get("pid") else 0)

    def write_name_files(self, services: Sequence[ServiceAddress]) -> None:
        hosts.write_pod_files(
            self.net.netns,
            pod_name=self.name,
            pod_ip=self.net.ip,
            namespace=self.namespace,
            services=services,
        )

    async def update_sources(self, spec: DeploymentSpec) -> None:
        """The same template with new ConfigMap/Secret content: the volumes are updated in place (as the
        kubelet does); containers waiting for a reference start once it is there."""
        if self.phase != "Running" or spec.sources == self.spec.sources:
            return
        self.spec = spec
        await asyncio.to_thread(self.volumes.refresh, spec)
        if self.waiting and not self.containers:
            self.waiting = self.volumes.missing()
            if not self.waiting:
                self.waiting = await self._prepare_images()
            if not self.waiting:
                self._start_containers()
            self._retry_pulls_if_failed()
            self.ctx.notify()

    def _start_containers(self) -> None:
        if self.containers:  # started already (a pull retry and a ConfigMap update can both get here)
            return
        for cspec in self.spec.containers:
            self._start_container(cspec)

    def _pull_failed(self) -> bool:
        return any(f": {ERR_IMAGE_PULL}: " in w for w in self.waiting)

    def _retry_pulls_if_failed(self) -> None:
        if self._pull_failed() and (self._pull_retry is None or self._pull_retry.done()):
            self._pull_retry = asyncio.get_running_loop().create_task(self._pull_retry_loop())
            self._tasks.append(self._pull_retry)

    async def _pull_retry_loop(self) -> None:
        """kubelet's image pull back-off: ErrImagePull right after a failed pull, then ImagePullBackOff
        until the next try (10 s, doubling to 5 minutes); the containers start once every image is there."""
        delay = PULL_BACKOFF_INITIAL_S
        while self._pull_failed() and not self.containers:
            shown = min(ERR_IMAGE_PULL_SHOWN_S, delay)
            await asyncio.sleep(shown)
            if not self._pull_failed() or self.containers:
                return
            self.waiting = [backing_off(w, delay) for w in self.waiting]
            self.ctx.notify()
            await asyncio.sleep(delay - shown)
            if self.containers or not any(f": {IMAGE_PULL_BACKOFF}: " in w for w in self.waiting):
                return  # started or re-prepared meanwhile (update_sources)
            # References (ConfigMaps, Secrets) that went missing meanwhile: update_sources takes over.
            self.waiting = self.volumes.missing() or await self._prepare_images()
            if not self.waiting:
                log.info("pod %s/%s: images pulled; starting its containers", self.namespace, self.name)
                self._start_containers()
            self.ctx.notify()
            delay = next_pull_delay(delay)

    def _pod_env(self) -> dict[str, str]:
        return {
            "HOSTNAME": self.name,
            "POD_NAME": self.name,
            "POD_NAMESPACE": self.namespace,
            "POD_IP": self.net.ip,
            "INSTANCE_IP": self.net.ip,
            "SERVICE_ACCOUNT": self.spec.service_account,
        }

    async def _start_sds(self) -> None:
        """The agent's SDS server, up before Envoy asks for its certificate."""
        if self.ctx.ca is None:
            return
        self.sds = SdsServer(
            identity=self.identity,
            signer=self.ctx.pod_signer(self.namespace, self.name) if self.ctx.pod_signer else self.ctx.ca,
            socket_path=self.sds_socket,
            ttl=self.ctx.cert_ttl,
            rotate_fraction=self.ctx.cert_rotate_fraction,
            # Only the pod's proxy user.
            socket_owner=self.proxy_uid,
        )
        await self.sds.start()

    async def _start_stats(self) -> None:
        """The pod's :15020 merge of Envoy's and the app's metrics (Envoy forwards the port to it)."""
        scrape = app_scrape(dict(self.spec.annotations))
        self.stats = StatsMerger(
            socket_path=self.run_dir / "stats.sock",
            admin_socket=self.admin_socket,
            app_socket=self.run_dir / "app-metrics.sock" if scrape is not None else None,
            app=scrape,
            socket_owner=self.proxy_uid,
            local=peer_values(
                workload=self.spec.name,
                namespace=self.namespace,
                service_account=self.spec.service_account,
                labels=dict(self.spec.labels),
                trust_domain=self.ctx.trust_domain,
            ),
        )
        await self.stats.start()

    def _start_proxy(self) -> None:
        labels = dict(self.spec.labels)
        bootstrap = build_bootstrap(
            node_id=node_id(self.proxy_type, self.net.ip, self.name, self.namespace),
            cluster=service_cluster(labels, self.spec.name, self.namespace),
            metadata=proxy_metadata(
                pod=self.name,
                namespace=self.namespace,
                ip=self.net.ip,
                labels=labels,
                service_account=self.spec.service_account,
                workload=self.spec.name,
                proxy_type=self.proxy_type,
            ),
            xds_socket=self.ctx.xds_socket,
            admin_socket=self.admin_socket,
            sds_socket=self.sds_socket if self.sds is not None else None,
            zipkin_socket=self.ctx.zipkin_socket,
            merged_stats_socket=self.stats.socket_path if self.stats is not None else None,
            app_metrics=(self.stats.app_socket, self.stats.app.port)
            if self.stats is not None and self.stats.app is not None and self.stats.app_socket is not None
            else None,
        )
        if self._adopting is None or not self.bootstrap_path.exists():
            write_bootstrap(self.bootstrap_path, bootstrap)
        argv = envoy_args(self.bootstrap_path, binary=self.ctx.envoy_binary)
        if self.proxy_uid is not None:
            # The pod's proxy user: the identity its capture rules let through.
            argv = as_proxy_user(argv, self.proxy_uid)
        self.proxy = SupervisedProcess(
            name=f"{self.namespace}/{self.name}/{PROXY_CONTAINER}",
            argv=["ip", "netns", "exec", self.net.netns, *argv],
            # Envoy's own side of Istio's metric labels (gossamer/xds/build/telemetry.py).
            env={
                **base_env(),
                **self._pod_env(),
                **self.proxy_labels_env(),
            },
            cwd=self.run_dir,
            log_path=self.log_path(PROXY_CONTAINER),
            record=self.ctx.record,
            on_change=self._proxy_changed,
        )
        if self._adopting is not None:
            self._adopt_process(self.proxy, self._adopting.get("proxy"))
        self.proxy.start()
        self._tasks.append(asyncio.get_running_loop().create_task(self._proxy_ready_loop()))

    def proxy_labels_env(self) -> dict[str, str]:
        """Envoy's own side of Istio's metric labels (telemetry/peer.py), its principal in the trust domain."""
        return proxy_env(
            workload=self.spec.name,
            namespace=self.namespace,
            service_account=self.spec.service_account,
            labels=dict(self.spec.labels),
            trust_domain=self.ctx.trust_domain,
        )

    def _proxy_changed(self) -> None:
        if self.proxy is not None and not self.proxy.running:
            self.proxy_live = False
        self.ctx.notify()

    def _container_env(self, cspec: ContainerSpec) -> dict[str, str]:
        fields = volumes.pod_fields(
            name=self.name,
            namespace=self.namespace,
            ip=self.net.ip,
            service_account=self.spec.service_account,
            uid=self.short_id,
        )
        return {**self._pod_env(), **volumes.container_env(cspec, self.spec, fields)}

    @property
    def image_dir(self) -> Path:
        """Root-only: each image container's root filesystem and launch spec (`image_containers`)."""
        return self.ctx.state_dir / "pod-images" / self.short_id

    async def _prepare_images(self) -> list[str]:
        """Obtain and unpack the images of containers that run one; what cannot be pulled keeps the
        pod's containers waiting, with the reason (kubectl's ErrImagePull)."""
        async with self._images_lock:
            return await self._prepare_images_locked()

    async def _prepare_images_locked(self) -> list[str]:
        problems: list[str] = []
        for cspec in self.spec.containers:
            if not cspec.image:
                continue
            self.ctx.record.add("dirs", str(self.image_dir))
            uid, gid = self.run_as(cspec)
            try:
                self._image_argv[cspec.name] = await prepare_image_container(
                    # The control plane's cache (Paths.images_dir): what apply pulled is there already.
                    cache=ImageCache(self.ctx.state_dir.parent / "images"),
                    spec=cspec,
                    pod_dir=self.image_dir,
                    hostname=self.name,
                    env=self._container_env(cspec),
                    user=ContainerUser(uid, gid, explicit=cspec.run_as_user is not None),
                    etc_dir=hosts.etc_dir(self.net.netns),
                    mounts=self.volumes.mounts(cspec),
                )
            except (ImageError, OSError) as exc:
                problems.append(pull_failed(cspec.name, cspec.image, exc))
        return problems

    def _start_container(self, cspec: ContainerSpec) -> None:
        mounts = self.volumes.mounts(cspec)
        if cspec.image:
            # Runs its image: container_init (as root) makes the mount namespace, chroots, drops to its user.
            env = self._container_env(cspec)
            launch = self._image_argv.get(cspec.name) or launch_argv(self.image_dir, cspec.name)  # adopted pods
            user = launched_user(self.image_dir, cspec.name)  # the image's USER may be the one (status' runAs)
            if user is not None:
                self._image_users[cspec.name] = user
            argv = ["ip", "netns", "exec", self.net.netns, *launch]
            cwd = None
        else:
            env = {**base_env(), **self._container_env(cspec)}
            volumes.ensure_mountpoints(mounts, self.ctx.record)
            uid, gid = self.run_as(cspec)
            argv = volumes.with_mounts(
                sandbox.app_argv(
                    self.net.netns, cspec.command, uid=uid, gid=gid, expose=sandbox.default_exposed(cspec.workdir)
                ),
                self.net.netns,
                mounts,
            )
            cwd = cspec.workdir
        proc = SupervisedProcess(
            name=f"{self.namespace}/{self.name}/{cspec.name}",
            argv=argv,
            env=env,
            cwd=cwd,
            log_path=self.log_path(cspec.name),
            record=self.ctx.record,
            on_change=self.ctx.notify,
        )
        container = Container(cspec, proc)
        self.containers.append(container)
        if self._adopting is not None:
            recorded = (self._adopting.get("containers") or {}).get(cspec.name)
            self._adopt_process(proc, recorded)
            container.probe_ready = bool(recorded and recorded.get("probeReady")) and proc.running
        proc.start()
        if cspec.readiness_probe is not None:
            container.task = asyncio.get_running_loop().create_task(self._probe_loop(container))
            self._tasks.append(container.task)

    async def _probe_loop(self, c: Container) -> None:
        probe = c.spec.readiness_probe
        assert probe is not None
        period = min(max(probe.period_seconds, 0.25), 1.0)
        # An adopted container keeps its recorded readiness until a probe says otherwise.
        generation = c.proc.generation if c.probe_ready else -1
        failures = 0
        started = 0.0
        while True:
            if c.proc.generation != generation:  # (re)started: not ready until the probe passes again
                generation = c.proc.generation
                started = time.monotonic()
                failures = 0
                self._set_probe(c, False)
            if c.proc.running and time.monotonic() - started >= probe.initial_delay_seconds:
                ok = await run_probe(self.net.path, probe)
                if ok:
                    failures = 0
                    self._set_probe(c, True)
                else:
                    failures += 1
                    if not c.probe_ready or failures >= PROBE_FAILURE_THRESHOLD:
                        self._set_probe(c, False)
            await asyncio.sleep(period)

    def _set_probe(self, c: Container, value: bool) -> None:
        if c.probe_ready != value:
            c.probe_ready = value
            self.ctx.notify()

    async def _wait_proxy_live(self, timeout: float) -> None:
        """holdApplicationUntilProxyStarts: until Envoy says LIVE (its first config arrived), at most
        TIMEOUT seconds (Istio's `pilot-agent wait` default); the app starts either way."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.proxy_live and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        if not self.proxy_live:
            log.warning(
                "pod %s/%s: proxy not ready after %.0fs; starting the app anyway", self.namespace, self.name, timeout
            )

    async def _proxy_ready_loop(self) -> None:
        while True:
            live = False
            if self.proxy is not None and self.proxy.running:
                try:
                    code, body = await unix_http_get(self.admin_socket, "/ready", timeout=1.0)
                    live = code == 200 and body.strip() == "LIVE"
                except (OSError, TimeoutError, Exception):  # noqa: BLE001 - any failure means not ready
                    live = False
            if live and self.ingress:
                # Before the pod is ready: what `up` waits for is reachable on the host then.
                await self._follow_ingress_listeners()
            if live != self.proxy_live:
                self.proxy_live = live
                self.ctx.notify()
            await asyncio.sleep(0.5 if live and self.ingress else 1.0 if live else 0.5)

    async def _follow_ingress_listeners(self) -> None:
        """The ingress gateway's listeners as its Envoy has them now -> the host's forwarded ports."""
        try:
            code, body = await unix_http_get(self.admin_socket, "/listeners?format=json", timeout=1.0)
            ports = host_ports.listener_ports(json.loads(body)) if code == 200 else None
        except (OSError, TimeoutError, ValueError):
            ports = None  # asked again at the next turn; what is forwarded stays
        if ports is not None and ports != self.ingress_ports:
            await self._forward_ingress(ports)
            self.ctx.notify()  # the record keeps them

    async def _forward_ingress(self, ports: frozenset[int] | None) -> None:
        if self.ctx.ingress_listeners is None:
            return
        try:
            await self.ctx.ingress_listeners((self.namespace, self.name), self.net.ip, ports)
        except Exception:  # noqa: BLE001 - the rules are written again at the next change
            log.exception("pod %s/%s: forwarding the host's ports to it failed", self.namespace, self.name)
            return
        self.ingress_ports = ports or frozenset()

    def mark_failed(self, exc: BaseException, attempts: int) -> None:
        """`create` raised (and removed what it made): the pod stays listed as not created, with why."""
        self.failure = f"pod: CreateContainerError: {_short_error(exc)}"
        self.create_attempts = attempts
        self.phase = "Pending"
        self.waiting = []

    async def delete(self) -> None:
        """Stop everything and remove the pod (idempotent; concurrent callers share the work)."""
        if self.failure is not None:  # nothing of it is left to remove
            self.phase = "Terminating"
            return
        if self._deleting is None:
            self._deleting = asyncio.get_running_loop().create_task(self._teardown())
        await asyncio.shield(self._deleting)

    async def _teardown(self) -> None:
        self.phase = "Terminating"
        self.ctx.notify()
        if self.ingress:
            await self._forward_ingress(None)  # the host stops sending it connections first
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        procs = [c.proc for c in self.containers] + ([self.proxy] if self.proxy else [])
        await asyncio.gather(*(p.stop(STOP_GRACE) for p in procs), return_exceptions=True)
        if self.stats is not None:
            await self.stats.stop()
            self.stats = None
        if self.sds is not None:
            with contextlib.suppress(Exception):
                await self.sds.stop()
            self.sds = None
        # Whatever the apps forked and left behind in the netns.
        await asyncio.to_thread(kill_netns_processes, self.net.netns)
        await network.delete_pod_network(self.net.netns, self.net.veth)
        shutil.rmtree(hosts.etc_dir(self.net.netns), ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        rec = self.ctx.record
        rec.remove("netns", self.net.netns)
        rec.remove("veths", self.net.veth)
        rec.remove("etc_netns", self.net.netns)
        rec.remove("dirs", str(self.run_dir))


def _short_error(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def log_path(state_dir: Path, pod: str, namespace: str, container: str) -> Path:
    return state_dir / "logs" / namespace / pod / f"{container}.log"
