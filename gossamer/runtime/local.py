"""LocalRuntime: a cluster on one machine.

Each pod is a Linux network namespace on the `gsm0` bridge, running its
containers' commands as the pod's own unprivileged user (and, for meshed pods,
Envoy as the pod's proxy user behind Istio's iptables capture; see sandbox.py).
Everything created is recorded in `state_dir/runtime.json` so that a crashed
runtime can be cleaned up (`cleanup_leftovers`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import string
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from gossamer.agent.envoy import envoy_binary
from gossamer.agent.sds import DEFAULT_CERT_TTL, DEFAULT_ROTATE_FRACTION, CertificateSigner, SdsServer
from gossamer.runtime import kube_proxy, network
from gossamer.runtime.pods import Pod, PodContext, has_sidecar, log_path
from gossamer.runtime.probes import unix_http_get
from gossamer.runtime.sandbox import PROXY_GROUP
from gossamer.runtime.state import (
    RuntimeAlreadyRunning,
    StateRecord,
    cleanup_leftovers,
    cleanup_record,
    load_record,
    owner_alive,
)
from gossamer.runtime.types import DeploymentSpec, PodStatus, ServiceAddress, ServiceEndpoints

__all__ = ["LocalRuntime", "RuntimeAlreadyRunning", "cleanup_leftovers"]

log = logging.getLogger(__name__)

_ALNUM = string.ascii_lowercase + string.digits
DeployKey = tuple[str, str]  # (namespace, deployment)


class LocalRuntime:
    def __init__(
        self,
        *,
        state_dir: Path,
        run_dir: Path,
        xds_socket: Path,
        ingress_port: int = 8080,
        ingress_tls_port: int = 0,
        on_change: Callable[[], None] | None = None,
        envoy: Path | None = None,
        ca: CertificateSigner | None = None,
        cert_ttl: timedelta = DEFAULT_CERT_TTL,
        cert_rotate_fraction: float = DEFAULT_ROTATE_FRACTION,
        zipkin_socket: Path | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.run_dir = Path(run_dir)
        self.xds_socket = Path(xds_socket)
        self.ingress_port = ingress_port
        self.ingress_tls_port = ingress_tls_port  # routers' TLS servers on 127.0.0.1:<port> (0: off)
        self.on_change = on_change
        self._envoy = envoy
        self.ca = ca  # when set, each pod's Envoy gets its workload certificate over SDS
        self.cert_ttl = cert_ttl
        self.cert_rotate_fraction = cert_rotate_fraction
        self.zipkin_socket = zipkin_socket  # the control plane's span collector (bootstrap cluster `zipkin`)
        self._record = StateRecord(self.state_dir)
        self._ips = network.IpAllocator(reserved=(str(network.BRIDGE_IP),))
        self._pods: dict[tuple[str, str], Pod] = {}  # (namespace, pod name) -> Pod
        self._desired: dict[DeployKey, DeploymentSpec] = {}
        self._services: tuple[ServiceAddress, ...] = ()
        self._snapshots: dict[tuple[str, str], PodStatus] = {}
        self._lock = asyncio.Lock()
        self._retire_tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._ctx: PodContext | None = None
        # kube-proxy in sidecar-less pods: the rules for the current endpoints, and what each pod has.
        self._service_rules = kube_proxy.service_rules(())
        self._service_rules_applied: dict[tuple[str, str], str] = {}
        self._service_rules_lock = asyncio.Lock()

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Clean up after a crashed previous run, then create the bridge."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Only root and the pods' Envoys (the proxies' group) may enter; each pod's own directory
        # inside is its proxy user's alone.
        if os.geteuid() == 0:
            os.chown(self.run_dir, 0, PROXY_GROUP)
        self.run_dir.chmod(0o710)
        previous = load_record(self.state_dir)
        if previous is not None:
            pid = owner_alive(previous)
            if pid is not None:
                raise RuntimeAlreadyRunning(f"another runtime owns {self.state_dir} (pid {pid})")
            await asyncio.to_thread(cleanup_record, previous)
        if network.link_exists(network.BRIDGE):
            raise RuntimeError(
                f"bridge {network.BRIDGE} already exists and is not recorded in {self.state_dir}: "
                "another gossamer runtime is running on this machine "
                "(or run `gossamer down` with its state dir)"
            )
        self._record.claim()
        self._ctx = PodContext(
            record=self._record,
            state_dir=self.state_dir,
            run_dir=self.run_dir,
            xds_socket=self.xds_socket,
            ingress_port=self.ingress_port,
            ingress_tls_port=self.ingress_tls_port,
            envoy_binary=self._envoy or envoy_binary(),
            notify=self._pod_changed,
            ca=self.ca,
            cert_ttl=self.cert_ttl,
            cert_rotate_fraction=self.cert_rotate_fraction,
            zipkin_socket=self.zipkin_socket,
        )
        self._record.set_bridge(network.BRIDGE)
        await network.create_bridge(network.BRIDGE)
        self._started = True

    async def stop(self) -> None:
        """Stop every process and remove every pod, then the bridge and the record."""
        async with self._lock:
            for t in list(self._retire_tasks):
                t.cancel()
            self._desired = {}
            await asyncio.gather(*(self._delete_pod(p) for p in list(self._pods.values())), return_exceptions=True)
            if self._record.data.get("owner"):  # we claimed the state dir in start()
                await network.delete_bridge(network.BRIDGE)
                # Anything the pods did not remove themselves (errors above).
                await asyncio.to_thread(cleanup_record, self._record.data)
                self._record.delete()
            self._started = False

    # ---- reconciliation ----------------------------------------------------------------

    async def apply(self, deployments: Sequence[DeploymentSpec], services: Sequence[ServiceAddress]) -> None:
        if not self._started:
            raise RuntimeError("LocalRuntime.start() has not been called")
        async with self._lock:
            services_t = tuple(sorted(set(services), key=lambda s: (s.namespace, s.name, s.vip)))
            if services_t != self._services:
                self._services = services_t
                for pod in self._pods.values():
                    if pod.phase != "Terminating":
                        pod.write_name_files(self._services)
            self._desired = {(d.namespace, d.name): d for d in deployments}
            # Deployments that disappeared.
            gone = [p for p in self._pods.values() if (p.namespace, p.spec.name) not in self._desired]
            await asyncio.gather(*(self._delete_pod(p) for p in gone))
            for key, spec in self._desired.items():
                await self._reconcile(key, spec)

    async def set_service_endpoints(self, services: Sequence[ServiceEndpoints]) -> None:
        """kube-proxy: reprogram every sidecar-less pod whose rules differ (pods keep running)."""
        async with self._service_rules_lock:
            self._service_rules = kube_proxy.service_rules(services)
            for key, applied in list(self._service_rules_applied.items()):
                pod = self._pods.get(key)
                if pod is None or pod.phase == "Terminating" or applied == self._service_rules:
                    continue
                try:
                    await kube_proxy.apply_service_rules(pod.net.netns, self._service_rules)
                except Exception:  # noqa: BLE001 - the pod may be going away; the next change retries
                    log.exception("service rules for %s/%s failed", pod.namespace, pod.name)
                    continue
                self._service_rules_applied[key] = self._service_rules

    async def _install_service_rules(self, pod: Pod) -> None:
        """Pod.create's hook: a sidecar-less pod gets the current service rules before its processes start."""
        if has_sidecar(pod.spec):
            return
        async with self._service_rules_lock:
            await kube_proxy.apply_service_rules(pod.net.netns, self._service_rules)
            self._service_rules_applied[(pod.namespace, pod.name)] = self._service_rules

    def _live_pods(self, key: DeployKey) -> list[Pod]:
        return [p for p in self._pods.values() if (p.namespace, p.spec.name) == key and p.phase != "Terminating"]

    async def _reconcile(self, key: DeployKey, spec: DeploymentSpec) -> None:
        pods = self._live_pods(key)
        current = [p for p in pods if p.template_hash == spec.template_hash]
        old = [p for p in pods if p.template_hash != spec.template_hash]
        await asyncio.gather(*(p.update_sources(spec) for p in current))  # ConfigMap/Secret content
        missing = spec.replicas - len(current)
        if missing > 0:
            await asyncio.gather(*(self._create_pod(spec) for _ in range(missing)))
        elif missing < 0:
            # Scale down: not-ready first, then the newest.
            extra = sorted(current, key=lambda p: (p.ready, -p.started_at))[:-missing]
            await asyncio.gather(*(self._delete_pod(p) for p in extra))
        if old:
            self._maybe_retire(key)

    def _maybe_retire(self, key: DeployKey) -> None:
        """Rolling update: delete old-template pods once the new ones are all ready."""
        spec = self._desired.get(key)
        if spec is None:
            return
        pods = self._live_pods(key)
        current = [p for p in pods if p.template_hash == spec.template_hash]
        old = [p for p in pods if p.template_hash != spec.template_hash]
        if not old or len(current) < spec.replicas or not all(p.ready for p in current):
            return
        for p in old:
            task = asyncio.get_running_loop().create_task(self._delete_pod(p))
            self._retire_tasks.add(task)
            task.add_done_callback(self._retire_tasks.discard)

    async def _create_pod(self, spec: DeploymentSpec) -> Pod:
        assert self._ctx is not None
        while True:
            suffix = "".join(secrets.choice(_ALNUM) for _ in range(5))
            name = f"{spec.name}-{spec.template_hash[:10]}-{suffix}"
            short_id = secrets.token_hex(4)
            if (spec.namespace, name) not in self._pods and not network.netns_exists(network.names_for(short_id)[0]):
                break
        ip = self._ips.allocate()
        pod = Pod(spec=spec, name=name, short_id=short_id, ip=ip, ctx=self._ctx)
        self._pods[(spec.namespace, name)] = pod
        try:
            await pod.create(self._services, prepare=self._install_service_rules)
        except BaseException:
            self._forget(pod)
            raise
        log.info("pod %s/%s created (%s, netns %s)", spec.namespace, name, ip, pod.net.netns)
        return pod

    async def _delete_pod(self, pod: Pod) -> None:
        try:
            await pod.delete()
        finally:
            self._forget(pod)

    def _forget(self, pod: Pod) -> None:
        if self._pods.get((pod.namespace, pod.name)) is pod:
            del self._pods[(pod.namespace, pod.name)]
            self._ips.release(pod.net.ip)
            self._service_rules_applied.pop((pod.namespace, pod.name), None)
            self._pod_changed()

    def _pod_changed(self) -> None:
        """Called on any pod event: diff the snapshots, notify, advance rolling updates."""
        snapshots = {key: pod.status() for key, pod in self._pods.items()}
        if snapshots == self._snapshots:
            return
        self._snapshots = snapshots
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:  # noqa: BLE001 - a listener bug must not break the runtime
                log.exception("on_change callback failed")
        for key in {(p.namespace, p.spec.name) for p in self._pods.values()}:
            self._maybe_retire(key)

    # ---- queries -----------------------------------------------------------------------

    def pods(self) -> list[PodStatus]:
        return [self._pods[k].status() for k in sorted(self._pods)]

    def _get(self, pod: str, namespace: str) -> Pod:
        try:
            return self._pods[(namespace, pod)]
        except KeyError:
            raise KeyError(f"pod {namespace}/{pod} not found") from None

    def pod(self, name_or_deploy_ref: str, namespace: str = "default") -> PodStatus:
        """ "POD" or "deploy/NAME" (the first ready pod of that deployment); KeyError if none."""
        if name_or_deploy_ref.startswith(("deploy/", "deployment/")):
            deploy = name_or_deploy_ref.split("/", 1)[1]
            candidates = sorted(
                (p for p in self._live_pods((namespace, deploy)) if p.ready),
                key=lambda p: (p.started_at, p.name),
            )
            if not candidates:
                raise KeyError(f"no ready pod for deployment {namespace}/{deploy}")
            return candidates[0].status()
        return self._get(name_or_deploy_ref, namespace).status()

    def pod_sds(self, pod: str, namespace: str) -> SdsServer | None:
        """The pod's agent SDS server (its workload certificate and Envoy's SDS streams), if it runs one."""
        return self._get(pod, namespace).sds

    def netns_name(self, pod: str, namespace: str) -> str:
        return self._get(pod, namespace).net.netns

    def log_path(self, pod: str, namespace: str, container: str) -> Path:
        return log_path(self.state_dir, pod, namespace, container)

    def admin_socket(self, pod: str, namespace: str) -> Path:
        return self._get(pod, namespace).admin_socket

    async def admin_get(self, pod: str, namespace: str, path: str) -> tuple[int, str]:
        """GET on the pod's Envoy admin socket; raises OSError if Envoy is not listening."""
        return await unix_http_get(self.admin_socket(pod, namespace), path)

    @property
    def pid(self) -> int:
        return os.getpid()
