"""LocalRuntime: a cluster on one machine.

Each pod is a Linux network namespace on the `gsm0` bridge, running its
containers' commands as the pod's own unprivileged user (and, for meshed pods,
Envoy as the pod's proxy user behind Istio's iptables capture; see sandbox.py).
Everything created is recorded in `state_dir/runtime.json` so that a crashed
runtime can be cleaned up (`cleanup_leftovers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import string
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from gossamer.agent.envoy import envoy_binary
from gossamer.agent.sds import DEFAULT_CERT_TTL, DEFAULT_ROTATE_FRACTION, CertificateSigner, SdsServer
from gossamer.mesh import PROXY_GROUP, TRUST_DOMAIN, IngressPortMap
from gossamer.runtime import kube_proxy, network
from gossamer.runtime.host_ports import IngressForwarding
from gossamer.runtime.pods import Pod, PodContext, has_sidecar, log_path
from gossamer.runtime.probes import unix_http_get
from gossamer.runtime.state import (
    RuntimeAlreadyRunning,
    StateRecord,
    cleanup_leftovers,
    cleanup_record,
    load_record,
    owner_alive,
)
from gossamer.runtime.types import DeploymentSpec, PodStatus, ServiceAddress, ServiceEndpoints
from gossamer.runtime.wire import deployment_from_json

__all__ = ["LocalRuntime", "RuntimeAlreadyRunning", "cleanup_leftovers"]

log = logging.getLogger(__name__)

_ALNUM = string.ascii_lowercase + string.digits
# A pod whose creation failed is tried again after this back-off, doubling up to the maximum.
CREATE_RETRY_S = 2.0
CREATE_RETRY_MAX_S = 60.0
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
        ingress_port_map: IngressPortMap = (),
        on_change: Callable[[], None] | None = None,
        envoy: Path | None = None,
        ca: CertificateSigner | None = None,
        cert_ttl: timedelta = DEFAULT_CERT_TTL,
        cert_rotate_fraction: float = DEFAULT_ROTATE_FRACTION,
        zipkin_socket: Path | None = None,
        pod_signer: Callable[[str, str], CertificateSigner] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.run_dir = Path(run_dir)
        self.xds_socket = Path(xds_socket)
        # The ingress gateway's listeners on the host's 127.0.0.1: 8080 at ingress_port, 8443 at
        # ingress_tls_port (0: off), the port map's at theirs, others at their own number.
        self._forwarding = IngressForwarding(
            ingress_port=ingress_port, ingress_tls_port=ingress_tls_port, port_map=ingress_port_map
        )
        self.on_change = on_change
        self._envoy = envoy
        self.ca = ca  # when set, each pod's Envoy gets its workload certificate over SDS
        self.cert_ttl = cert_ttl
        self.cert_rotate_fraction = cert_rotate_fraction
        self.zipkin_socket = zipkin_socket  # the control plane's span collector (bootstrap cluster `zipkin`)
        self.pod_signer = pod_signer  # per pod: the control plane signs only for pods it was told about
        self._record = StateRecord(self.state_dir)
        self._ips = network.IpAllocator(reserved=(str(network.BRIDGE_IP),))
        self._pods: dict[tuple[str, str], Pod] = {}  # (namespace, pod name) -> Pod
        self._desired: dict[DeployKey, DeploymentSpec] = {}
        self._services: tuple[ServiceAddress, ...] = ()
        self._snapshots: dict[tuple[str, str], PodStatus] = {}
        self._lock = asyncio.Lock()
        self._retire_tasks: set[asyncio.Task[None]] = set()
        self._retry_tasks: set[asyncio.Task[None]] = set()  # pods whose creation failed, tried again
        self._started = False
        self._ctx: PodContext | None = None
        self.trust_domain = TRUST_DOMAIN  # the mesh's, as the control plane says (set_trust_domain)
        # kube-proxy in sidecar-less pods: the rules for the current endpoints, and what each pod has.
        self._service_rules = kube_proxy.service_rules(())
        self._service_rules_applied: dict[tuple[str, str], str] = {}
        self._service_rules_lock = asyncio.Lock()

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Adopt the pods a previous runtime left running (and clean up the rest of what it left), or
        start afresh: create the bridge."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Only root and the pods' Envoys (the proxies' group) may enter; each pod's own directory
        # inside is its proxy user's alone.
        if os.geteuid() == 0:
            os.chown(self.run_dir, 0, PROXY_GROUP)
        self.run_dir.chmod(0o710)
        previous = load_record(self.state_dir)
        adoptable: dict[str, dict[str, Any]] = {}
        if previous is not None:
            pid = owner_alive(previous)
            if pid is not None:
                raise RuntimeAlreadyRunning(f"another runtime owns {self.state_dir} (pid {pid})")
            adoptable = _adoptable_pods(previous)
            await asyncio.to_thread(cleanup_record, _not_adopted(previous, adoptable))
        if not adoptable and network.link_exists(network.BRIDGE):
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
            envoy_binary=self._envoy or envoy_binary(),
            notify=self._pod_changed,
            ca=self.ca,
            cert_ttl=self.cert_ttl,
            cert_rotate_fraction=self.cert_rotate_fraction,
            zipkin_socket=self.zipkin_socket,
            pod_signer=self.pod_signer,
            ingress_listeners=self._ingress_listeners,
            trust_domain=self.trust_domain,
        )
        self._record.set_bridge(network.BRIDGE)
        self._record.set_host_rules(True)  # recorded first: a crash in between still gets them removed
        if not adoptable:
            await network.create_bridge(network.BRIDGE)
        await self._forwarding.install(network.BRIDGE)
        self._started = True
        for entry in adoptable.values():
            try:
                await self._adopt_pod(entry)
            except Exception:  # one pod's trouble is its own: the others are adopted all the same
                log.exception("adopting pod %s/%s failed; it is removed", entry.get("namespace"), entry.get("name"))
                pod = self._pods.get((str(entry.get("namespace")), str(entry.get("name"))))
                if pod is not None:
                    with contextlib.suppress(Exception):
                        await self._delete_pod(pod)
        # The adopted ingress pods' recorded ports are forwarded again (the same rules: traffic never
        # stopped), or none if there is no such pod any more.
        await self._forwarding.sync()

    async def _ingress_listeners(self, pod: tuple[str, str], ip: str, ports: frozenset[int] | None) -> None:
        if ports is None:
            await self._forwarding.remove_pod(pod)
        else:
            await self._forwarding.set_pod(pod, ip, ports)

    async def _adopt_pod(self, entry: dict[str, Any]) -> None:
        assert self._ctx is not None
        spec = deployment_from_json(entry["spec"])
        pod = Pod(
            spec=spec, name=str(entry["name"]), short_id=str(entry["shortId"]), ip=str(entry["ip"]), ctx=self._ctx
        )
        pod.template_hash = str(entry.get("templateHash") or spec.template_hash)
        self._ips.reserve(pod.net.ip)
        rec = self._record
        for kind, value in (
            ("netns", pod.net.netns),
            ("veths", pod.net.veth),
            ("etc_netns", pod.net.netns),
            ("dirs", str(pod.run_dir)),
        ):
            rec.add(kind, value)
        self._pods[(pod.namespace, pod.name)] = pod
        if not has_sidecar(spec):
            self._service_rules_applied[(pod.namespace, pod.name)] = ""  # reprogrammed with the next endpoints
        await pod.adopt(entry)
        log.info("pod %s/%s adopted (%s, netns %s)", pod.namespace, pod.name, pod.net.ip, pod.net.netns)
        self._pod_changed()

    async def stop(self) -> None:
        """Stop every process and remove every pod, then the bridge and the record."""
        async with self._lock:
            for t in [*self._retire_tasks, *self._retry_tasks]:
                t.cancel()
            self._desired = {}
            await asyncio.gather(*(self._delete_pod(p) for p in list(self._pods.values())), return_exceptions=True)
            self._started = False  # no pod is recorded any more
            if self._record.data.get("owner"):  # we claimed the state dir in start()
                await asyncio.to_thread(self._forwarding.close)
                await network.delete_bridge(network.BRIDGE)
                # Anything the pods did not remove themselves (errors above).
                await asyncio.to_thread(cleanup_record, self._record.data)
                self._record.delete()
            self._started = False

    # ---- reconciliation ----------------------------------------------------------------

    def set_trust_domain(self, trust_domain: str) -> None:
        """The mesh's trust domain changed: pods get their SPIFFE ids in it, running ones at once (their
        agents ask for a new certificate and push it to Envoy; nothing restarts)."""
        if trust_domain == self.trust_domain:
            return
        log.info("trust domain %s: renewing the pods' certificates", trust_domain)
        self.trust_domain = trust_domain
        if self._ctx is not None:
            self._ctx.trust_domain = trust_domain
        for pod in self._pods.values():
            if pod.sds is not None:
                pod.sds.set_identity(pod.identity)

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
            for pod, result in zip(
                gone, await asyncio.gather(*(self._delete_pod(p) for p in gone), return_exceptions=True), strict=True
            ):
                if isinstance(result, Exception):
                    log.error("pod %s/%s: removing it failed: %s", pod.namespace, pod.name, result)
            for key, spec in self._desired.items():
                # One Deployment's failure is its own: the others are reconciled all the same.
                try:
                    await self._reconcile(key, spec)
                except Exception:
                    log.exception("reconciling deployment %s/%s failed", *key)

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
        updates = await asyncio.gather(*(p.update_sources(spec) for p in current), return_exceptions=True)
        for pod, result in zip(current, updates, strict=True):
            if isinstance(result, Exception):  # ConfigMap/Secret content: the pod keeps what it has
                log.error("pod %s/%s: volumes not updated: %s", pod.namespace, pod.name, result)
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

    async def _create_pod(self, spec: DeploymentSpec, *, name: str = "", attempts: int = 0) -> Pod:
        """A new pod of `spec` (NAME: the one a failed attempt had). When creating it fails, it stays
        listed, not created, with the reason (`get pods`: CreateContainerError) and is tried again
        after a back-off; the caller goes on either way."""
        assert self._ctx is not None
        while True:
            suffix = "".join(secrets.choice(_ALNUM) for _ in range(5))
            name = name or f"{spec.name}-{spec.template_hash[:10]}-{suffix}"
            short_id = secrets.token_hex(4)
            if (spec.namespace, name) not in self._pods and not network.netns_exists(network.names_for(short_id)[0]):
                break
            name = ""
        ip = self._ips.allocate()
        pod = Pod(spec=spec, name=name, short_id=short_id, ip=ip, ctx=self._ctx)
        self._pods[(spec.namespace, name)] = pod
        self._pod_changed()  # reported (Pending) before its agent asks the CA for its certificate
        try:
            await pod.create(self._services, prepare=self._install_service_rules)
        except Exception as exc:
            self._creation_failed(pod, exc, attempts + 1)
            return pod
        except BaseException:
            self._forget(pod)
            raise
        log.info("pod %s/%s created (%s, netns %s)", spec.namespace, name, ip, pod.net.netns)
        return pod

    def _creation_failed(self, pod: Pod, exc: Exception, attempts: int) -> None:
        log.error("pod %s/%s: creating it failed (attempt %d): %s", pod.namespace, pod.name, attempts, exc)
        pod.mark_failed(exc, attempts)
        self._ips.release(pod.net.ip)  # its network is gone; the failed pod reports no IP
        self._pod_changed()
        delay = min(CREATE_RETRY_S * 2 ** (attempts - 1), CREATE_RETRY_MAX_S)
        task = asyncio.get_running_loop().create_task(self._retry_create(pod, delay))
        self._retry_tasks.add(task)
        task.add_done_callback(self._retry_tasks.discard)

    async def _retry_create(self, pod: Pod, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self._lock:
            if self._pods.get((pod.namespace, pod.name)) is not pod:
                return  # deleted meanwhile (scaled down, Deployment changed or gone)
            self._forget(pod)
            key = (pod.namespace, pod.spec.name)
            spec = self._desired.get(key)
            if spec is None:
                return
            if spec.template_hash == pod.template_hash and len(self._live_pods(key)) < spec.replicas:
                await self._create_pod(spec, name=pod.name, attempts=pod.create_attempts)
            else:
                try:
                    await self._reconcile(key, spec)
                except Exception:
                    log.exception("reconciling deployment %s/%s failed", *key)

    async def _delete_pod(self, pod: Pod) -> None:
        try:
            await pod.delete()
        finally:
            self._forget(pod)

    def _forget(self, pod: Pod) -> None:
        if self._pods.get((pod.namespace, pod.name)) is pod:
            del self._pods[(pod.namespace, pod.name)]
            if pod.failure is None:  # a failed pod's address was released when it failed
                self._ips.release(pod.net.ip)
            self._service_rules_applied.pop((pod.namespace, pod.name), None)
            self._pod_changed()

    def _pod_changed(self) -> None:
        """Called on any pod event: record running pods, diff the snapshots, notify, advance rolling updates."""
        if self._started:
            self._record.set_pods(
                {
                    f"{ns}/{name}": pod.record_entry()
                    for (ns, name), pod in sorted(self._pods.items())
                    if pod.phase == "Running"
                }
            )
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

    def pod_reports(self) -> list[tuple[PodStatus, dict[str, object]]]:
        """Every pod's status and where its things are (netns, Envoy admin socket, container logs)."""
        out: list[tuple[PodStatus, dict[str, object]]] = []
        for key in sorted(self._pods):
            pod = self._pods[key]
            containers = [c.name for c in pod.spec.containers] + (["istio-proxy"] if pod.has_sidecar else [])
            out.append(
                (
                    pod.status(),
                    {
                        "netns": pod.net.netns,
                        "adminSocket": str(pod.admin_socket) if pod.has_sidecar else "",
                        "logs": {c: str(pod.log_path(c)) for c in containers},
                    },
                )
            )
        return out

    def container_processes(self, pod: str, namespace: str) -> list[dict[str, object]]:
        """Each container's running process (`gossamer exec` enters it): name, pid (None if not
        running), whether it runs an image (chrooted)."""
        return [
            {"name": c.spec.name, "pid": c.proc.pid if c.proc.running else None, "image": bool(c.spec.image)}
            for c in self._get(pod, namespace).containers
        ]

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


def _adoptable_pods(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The recorded running pods whose network is still there (the bridge, their netns and veth)."""
    if not record.get("bridge") or not network.link_exists(str(record["bridge"])):
        return {}
    out = {}
    for key, entry in (record.get("pods") or {}).items():
        try:
            deployment_from_json(entry["spec"])
        except (KeyError, ValueError):
            continue
        if network.netns_exists(str(entry.get("netns"))) and network.link_exists(str(entry.get("veth"))):
            out[key] = entry
    return out


def _not_adopted(record: dict[str, Any], adopted: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What of `record` is not part of an adopted pod (to clean up): other netns, processes, the bridge if no pod
    is adopted. Adopted pods' processes stay whether alive or not (a dead one is restarted)."""
    netns = {e["netns"] for e in adopted.values()}
    veths = {e["veth"] for e in adopted.values()}
    dirs = {d for d in record.get("dirs", []) if any(d.endswith(f"/{e['shortId']}") for e in adopted.values())}
    pids = {
        (p.get("pid"), p.get("start"))
        for e in adopted.values()
        for p in [e.get("proxy") or {}, *(e.get("containers") or {}).values()]
        if p.get("pid")
    }
    return {
        **record,
        "processes": [p for p in record.get("processes", []) if (p.get("pid"), p.get("start")) not in pids],
        "netns": [n for n in record.get("netns", []) if n not in netns],
        "etc_netns": [n for n in record.get("etc_netns", []) if n not in netns],
        "veths": [v for v in record.get("veths", []) if v not in veths],
        "dirs": [d for d in record.get("dirs", []) if d not in dirs],
        "bridge": None if adopted else record.get("bridge"),
        "host_netns": None if adopted else record.get("host_netns"),
        "host_rules": None if adopted else record.get("host_rules"),
    }
