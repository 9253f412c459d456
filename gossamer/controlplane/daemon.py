"""The control plane process: store, registry, translation, ADS, CA, REST API ("the istiod").

The runtime is another process (`gossamer runtime`, the kubelet): it reads the desired state this
process computes (`desired()`, a long poll on the API socket) and reports its pods
(`RuntimeView.report`). Either process may die and come back without touching the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

import grpc

from gossamer.controlplane.analyze import analyze
from gossamer.controlplane.apply_check import ApplyChecker
from gossamer.controlplane.config import ApplyResult, apply_files, delete_files
from gossamer.controlplane.envoycheck import stored_resources
from gossamer.controlplane.images import image_issues
from gossamer.controlplane.kubernetes import (
    BUILTIN_SOURCE,
    builtin_documents,
    deployment_spec,
    egress_gateway_documents,
    has_service_endpoints,
    named_ports,
    service_addresses,
    service_endpoints_of,
)
from gossamer.controlplane.paths import Paths
from gossamer.controlplane.proxies import proxy_from_node
from gossamer.controlplane.pusher import Pusher
from gossamer.controlplane.runtime_view import RuntimeView
from gossamer.controlplane.snapshots import SnapshotBuilder
from gossamer.controlplane.watch import ManifestWatcher
from gossamer.controlplane.xds_thread import XdsThread, run_on
from gossamer.mesh import DEFAULT_TRUST_DOMAINS, PROXY_GROUP, TrustDomains
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import MeshService
from gossamer.resources.apps import Deployment
from gossamer.resources.loader import resource_from_raw
from gossamer.runtime.images import ImageCache
from gossamer.runtime.wire import deployments_to_json, endpoints_to_json, services_to_json
from gossamer.security import CertificateAuthority
from gossamer.security.server_tls import ServerTls
from gossamer.security.settings import CertSettings
from gossamer.store import AppliedObject, Change, Store
from gossamer.telemetry import SpanStore, ZipkinCollector
from gossamer.telemetry.controlplane import PILOT
from gossamer.telemetry.prometheus import PrometheusServer
from gossamer.telemetry.scrape import MeshScraper, ScrapeTarget
from gossamer.xds.cache import ConfigCache
from gossamer.xds.proxy_status import ProxyStatus
from gossamer.xds.server import AdsServer, serve
from gossamer.xds.vhds import SidecarRouteSplit

log = logging.getLogger(__name__)

# ServiceEntry: its hosts resolve inside pods (hosts files).
# ConfigMap, Secret: the content of pod volumes and env references (updated in place, as the kubelet does)
RUNTIME_KINDS = {"Deployment", "Service", "Namespace", "ServiceAccount", "ServiceEntry", "ConfigMap", "Secret"}
# A restarted control plane waits this long for the runtime's pod report before serving xDS anyway
# (a mesh without a runtime); with one, the report comes within a fraction of a second.
PODS_KNOWN_TIMEOUT_S = 10.0


class ControlPlane:
    def __init__(
        self,
        paths: Paths,
        *,
        ingress_port: int = 8080,
        ingress_tls_port: int = 8443,
        egress_gateway: bool = False,
        certs: CertSettings | None = None,
        prometheus: bool = False,
        metrics_port: int = 0,
    ) -> None:
        certs = certs or CertSettings()
        self.paths = paths
        self.ingress_port = ingress_port
        self.egress_gateway = egress_gateway  # the built-in istio-system/istio-egressgateway (`up --egress-gateway`)
        paths.state_dir.mkdir(parents=True, exist_ok=True)
        paths.run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(paths.state_dir, 0o700)  # the store (Secrets) and the CA key: root only
        if os.geteuid() == 0:
            os.chown(paths.run_dir, 0, PROXY_GROUP)  # Envoys reach xds.sock and their pod's directory
        os.chmod(paths.run_dir, 0o710)
        self.store = Store(paths.store)
        self.images = ImageCache(paths.images_dir)  # pulled at apply, shared with the runtime
        self.snapshots = SnapshotBuilder(self.store)
        # Sidecars' route configurations: their virtual hosts over VHDS, a change sends only the changed ones.
        self.cache = ConfigCache(route_split=SidecarRouteSplit())
        # The proxies' ADS streams are served on a thread and event loop of their own (see xds_thread.py):
        # sending a push to thousands of proxies must not hold the loop that answers the API. The pusher
        # writes the cache here; the streams are told of it on their thread.
        self.xds = XdsThread()
        self._loop: asyncio.AbstractEventLoop | None = None  # this (the API's) loop, once started
        # The mesh CA (istiod's): its root persists in <state>/ca, so restarts keep it.
        self.ca = CertificateAuthority(paths.state_dir / "ca", default_ttl=certs.workload_cert_ttl)
        # The pods, as the runtime process reports them.
        self.runtime = RuntimeView(paths.runtime_socket, on_change=self._on_runtime_change)
        # The desired state for the runtime: a version (unique across restarts) and its content.
        self.instance = secrets.token_hex(4)
        self._desired_serial = 0
        # The desired state as the runtime is sent it: JSON, encoded off the event loop (~1 MB at 1000 services).
        self._desired: bytes | None = None
        self._desired_changed = asyncio.Event()
        self.pusher = Pusher(self.cache, self.snapshot)
        # The mesh config's trustDomain (and aliases): what the CA signs, what the ADS server accepts.
        self.trust: TrustDomains = DEFAULT_TRUST_DOMAINS
        self.ads = AdsServer(
            self.cache,
            self._group_for_node_from_xds,
            on_disconnect=self._on_proxy_disconnect_from_xds,
            trust=lambda: self.trust,
        )
        # Istio's standard metrics: computed by every proxy, read from the pods per scrape.
        self.metrics = MeshScraper(self._scrape_targets)
        PILOT.connected = lambda: len(self.ads.proxies())
        # `up --prometheus`: a real Prometheus scraping every pod and this control plane.
        # Its files sit beside the run dir, which only root and the Envoys' group may enter.
        self.prometheus = PrometheusServer(Path(f"{paths.run_dir}-prometheus")) if prometheus else None
        self._istiod_metrics = f"127.0.0.1:{metrics_port}" if metrics_port else None
        # Distributed tracing: every proxy posts its spans to this Zipkin collector (<run-dir>/zipkin.sock).
        self.traces = SpanStore()
        self.zipkin = ZipkinCollector(self.traces)
        self.watcher = ManifestWatcher(self._apply_watched)
        # apply's validation of a change (Envoy's rules, analysis), in a process of its own: off the GIL the
        # event loop needs.
        self.apply_checker = ApplyChecker()
        self._apply_lock = asyncio.Lock()
        self._reapplies: set[asyncio.Task[None]] = set()  # edited manifests being re-applied
        self.manifest_namespace: str | None = None  # `up -n`: the watched manifests' namespace
        self._grpc: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._desired_wanted = asyncio.Event()
        self._stopped = asyncio.Event()
        self.started_at = time.time()
        self._image_note_shown = False
        self.store.subscribe(self._on_store_change)

    # -- lifecycle ---------------------------------------------------------
    async def start(self, manifests: list[tuple[str, str]], namespace: str | None = None) -> ApplyResult:
        """Validate the manifests first: with any error nothing is started or stored. NAMESPACE (`up -n`):
        the namespace of their documents that name none, also when an edited file is re-applied.

        A restarted control plane gets no manifests: its store already holds what was applied."""
        self.manifest_namespace = namespace
        # What Envoy would reject, over the stored config and the built-in objects, in the checker's process
        # (which keeps what it built for the applies that follow; this process never builds it).
        self.apply_checker.start()
        builtins = [resource_from_raw(o.body, o.source_file, o.source_line) for o in self._builtins()]
        context = {r.key: r for r in [*stored_resources(self.store), *builtins]}
        issues, warnings = await self.apply_checker.precheck(manifests, namespace, list(context.values()))
        result = apply_files(
            self.store,
            manifests,
            dry_run=True,
            admit=lambda new: image_issues(new, self.images),
            namespace=namespace,
            envoy_issues=issues,
        )
        if not result.ok:
            return result
        self.store.apply(self._builtins())
        if not self.egress_gateway:
            # A store kept from an `up --egress-gateway`: its built-in egress gateway goes (a user's stays).
            stale = [
                key
                for key in sorted(_egress_keys())
                if (old := self.store.get(*key)) is not None and old.source_file == BUILTIN_SOURCE
            ]
            if stale:
                self.store.delete(stale)
        result = self.apply(manifests, namespace=namespace, envoy_issues=issues, warnings=warnings)
        self._follow_trust_domain(self.snapshot())  # before any proxy or agent is served
        await self.apply_checker.precheck([], None, self._resources())  # the checker holds the store's objects
        await self.zipkin.start(self.paths.zipkin_socket, writer_gid=PROXY_GROUP)  # root and the Envoys only
        if self.prometheus is not None:
            await self.prometheus.start(self._istiod_metrics)
        # Proxies may connect at once; their streams wait for the runtime's pod report (_group_for_node).
        # mTLS: proxies prove their identity with the workload certificate their agent serves them.
        self._loop = asyncio.get_running_loop()
        self.xds.start()
        self.cache.notify_through(self.xds.post)
        self._grpc = await self.xds.call(
            serve(self.ads, f"unix:{self.paths.xds_socket}", credentials=ServerTls(self.ca).credentials)
        )
        self._tasks = [
            asyncio.create_task(self._push_once_pods_known(), name="pusher"),
            asyncio.create_task(self._desired_loop(), name="desired"),
            asyncio.create_task(self.watcher.run(), name="watch"),
        ]
        self._desired_wanted.set()
        # A restart on an unchanged store makes no store change: push once anyway, so that
        # pushed_revision reaches the stored revision (`apply --wait`, /v1/sync wait on it).
        self.pusher.request_push(full=True)
        return result

    def _scrape_targets(self) -> list[ScrapeTarget]:
        """Every pod with a proxy (sidecar or router): each serves its metrics on :15020."""
        return [
            ScrapeTarget(p.namespace, p.name, p.ip)
            for p in self.runtime.pods()
            if (p.has_sidecar or p.proxy_type == "router") and p.ip
        ]

    async def stop(self, *, wipe: bool) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._grpc is not None:
            await self.xds.call(self._grpc.stop(grace=0.5))
        await asyncio.to_thread(self.xds.stop)
        self.apply_checker.stop()
        await self.zipkin.stop()
        self.paths.zipkin_socket.unlink(missing_ok=True)
        if self.prometheus is not None:
            await self.prometheus.stop()
        self.store.close()
        if wipe:
            self.paths.store.unlink(missing_ok=True)
            for suffix in ("-wal", "-shm"):
                Path(str(self.paths.store) + suffix).unlink(missing_ok=True)
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    # -- config ------------------------------------------------------------
    def apply(
        self,
        files: list[tuple[str, str]],
        *,
        dry_run: bool = False,
        namespace: str | None = None,
        envoy_issues: list[Any] | None = None,
        warnings: list[Any] | None = None,
    ) -> ApplyResult:
        """ENVOY_ISSUES, WARNINGS: config.precheck's results, when the caller worked them out already."""
        existing = [r for rs in self.snapshots.resources().values() for r in rs]
        result = apply_files(
            self.store,
            files,
            dry_run=dry_run,
            analyze=(lambda new: warnings) if warnings is not None else (lambda new: analyze(new, existing)),
            admit=lambda new: image_issues(new, self.images),
            namespace=namespace,
            existing=existing,
            envoy_issues=envoy_issues,
        )
        if (
            result.ok
            and not self._image_note_shown
            and any(c.object.kind == "Deployment" and c.object.source_file != BUILTIN_SOURCE for c in result.changes)
        ):
            self._image_note_shown = True
            result.notes.append(
                "note: a container with a `command` runs it on this machine (from the manifest's "
                "folder, as its pod's user); a container without one runs its image"
            )
        return result

    async def apply_checked(
        self, files: list[tuple[str, str]], *, dry_run: bool = False, namespace: str | None = None
    ) -> ApplyResult:
        """apply, its expensive validation (Envoy's rules over what every proxy would receive, analysis) in
        the checker's process: the event loop keeps serving the API and the proxies meanwhile. One apply at
        a time: its check must see the config it lands on."""
        async with self._apply_lock:
            issues = await self.apply_checker.check(files, namespace, self._resources())
            result = self.apply(files, dry_run=dry_run, namespace=namespace, envoy_issues=issues, warnings=[])
            if result.ok:
                # Analysis never rejects: it runs (in the checker's process) while the change is pushed.
                result.warnings.extend(await self.apply_checker.analysis(files, namespace))
            return result

    def _resources(self) -> list[Any]:
        return [r for rs in self.snapshots.resources().values() for r in rs]

    def _builtins(self) -> list[AppliedObject]:
        return _builtin_objects(egress_gateway=self.egress_gateway)

    def delete(self, files: list[tuple[str, str]], *, namespace: str | None = None) -> ApplyResult:
        return delete_files(self.store, files, namespace)

    def _apply_watched(self, path: Path, text: str) -> None:
        task = asyncio.get_running_loop().create_task(self._reapply(path, text))
        self._reapplies.add(task)
        task.add_done_callback(self._reapplies.discard)

    async def _reapply(self, path: Path, text: str) -> None:
        try:
            result = await self.apply_checked([(str(path), text)], namespace=self.manifest_namespace)
        except Exception:  # as the watcher does for a failure while applying: logged, the next edit retried
            log.exception("%s: re-applying the edited file failed", path)
            return
        for issue in result.errors:
            log.error("%s (file not re-applied)", issue)
        for change in result.changes:
            if change.kind != "unchanged":
                log.info("%s/%s %s (edited %s)", change.object.kind, change.object.name, change.kind, path)

    async def reapplied(self) -> None:
        """Until the edited manifests being re-applied are (tests)."""
        while self._reapplies:
            await asyncio.gather(*self._reapplies, return_exceptions=True)

    def _on_store_change(self, changes: list[Change]) -> None:
        if any(c.object.kind in RUNTIME_KINDS for c in changes):
            self._desired_wanted.set()
        # Which resources changed: the push re-translates only what they can touch.
        self.pusher.request_push(full=True, changed={c.object.key for c in changes})

    # -- registry ----------------------------------------------------------
    def snapshot(self) -> MeshSnapshot:
        snapshot = self.snapshots.build(self.runtime.pods())
        return snapshot

    async def _desired_loop(self, debounce: float = 0.05) -> None:
        """What the runtime must run: Deployments, the names pods resolve, and (kube-proxy) each
        Service port's ready endpoints; recomputed on config and pod changes, coalesced like pushes."""
        while True:
            await self._desired_wanted.wait()
            await asyncio.sleep(debounce)
            self._desired_wanted.clear()
            try:
                snapshot = self.snapshot()
                self._follow_trust_domain(snapshot)
                # Off the event loop (a pure function of the snapshot, ~0.2 s at 1000 services), and so is its
                # JSON: the API keeps answering, the ADS streams keep sending the push the same change started.
                desired = await asyncio.to_thread(
                    _desired_state_json, snapshot, self.trust.domain, self.runtime.known.is_set()
                )
            except Exception:
                log.exception("computing the runtime's desired state failed")
                continue
            if desired != self._desired:
                self._desired = desired
                self._desired_serial += 1
                self._desired_changed.set()
                self._desired_changed = asyncio.Event()

    def _follow_trust_domain(self, snapshot: MeshSnapshot) -> None:
        mesh = snapshot.mesh_config
        trust = TrustDomains(mesh.trust_domain, tuple(mesh.trust_domain_aliases))
        if trust != self.trust:
            log.info("trust domain %s (aliases: %s)", trust.domain, ", ".join(trust.aliases) or "none")
            self.trust = trust
            self.ca.set_trust(trust)

    @property
    def desired_version(self) -> str:
        return f"{self.instance}-{self._desired_serial}"

    async def desired_json(self, known_version: str | None, wait: float) -> bytes:
        """The desired state (JSON), once it differs from `known_version` (or after `wait` seconds)."""
        deadline = time.monotonic() + wait
        while self._desired is None or self.desired_version == known_version:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._desired_changed.wait(), remaining)
        head = json.dumps({"instance": self.instance, "version": self.desired_version}).encode()
        if self._desired is None or self._desired == b"{}":
            return head
        return head[:-1] + b"," + self._desired[1:]  # (one copy of the body: a fraction of a millisecond)

    async def _push_once_pods_known(self) -> None:
        """The pusher starts once the runtime has reported its pods (or after a timeout): a push before
        would translate a registry without them, and proxies connecting later are translated from the
        latest push's snapshot."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.runtime.known.wait(), PODS_KNOWN_TIMEOUT_S)
        self.runtime.assume_known()
        self.pusher.request_push(full=True)
        await self.pusher.run()

    def _on_runtime_change(self) -> None:
        if self.prometheus is not None:
            self.prometheus.update_pods(self._scrape_targets())
        self._desired_wanted.set()
        self.pusher.request_push(full=False)

    async def _group_for_node_from_xds(self, node: Any) -> str:
        """_group_for_node for a stream on the xDS thread: run on this loop (the pusher and the pods are here)."""
        assert self._loop is not None
        return await run_on(self._loop, self._group_for_node(node))

    def _on_proxy_disconnect_from_xds(self, status: ProxyStatus) -> None:
        assert self._loop is not None
        # (After any _group_for_node the same stream started: both are queued on this loop in order.)
        with contextlib.suppress(RuntimeError):  # (this loop closed: the control plane is gone anyway)
            self._loop.call_soon_threadsafe(self._on_proxy_disconnect, status)

    async def _group_for_node(self, node: Any) -> str:
        # A restarted control plane serves nobody before it knows the pods again: a proxy must never
        # get a registry without them (empty endpoints). Its stream just waits here.
        await self.runtime.known.wait()
        meta_name = ""
        if node.HasField("metadata") and "WORKLOAD_NAME" in node.metadata.fields:
            meta_name = node.metadata.fields["WORKLOAD_NAME"].string_value
        deployment = self.snapshots.deployment(proxy_from_node(node).namespace, meta_name)
        ports = named_ports(deployment) if deployment is not None else {}
        return await self.pusher.proxy_connected(proxy_from_node(node, ports))

    def _on_proxy_disconnect(self, status: ProxyStatus) -> None:
        self.pusher.proxy_disconnected(status.group)

    # -- status ------------------------------------------------------------
    def expected_pods(self) -> int:
        return sum(deployment_spec(d).replicas for d in self.snapshots.resources().get("Deployment", ()))

    def is_ready(self) -> bool:
        pods = self.runtime.pods()
        if len([p for p in pods if p.ready]) < self.expected_pods():
            return False
        proxies = self.ads.proxies()
        with_proxy = [p for p in pods if p.has_sidecar]
        return len(proxies) >= len(with_proxy) and all(p.is_synced() for p in proxies)

    async def wait_config_synced(self, revision: int, timeout: float) -> bool:
        """Until config up to `revision` is translated and every connected proxy has ACKed it."""
        deadline = time.monotonic() + timeout
        while self.pusher.pushed_revision < revision or self.pusher.pending:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return await self.xds.call(self.ads.wait_synced(None, max(0.0, deadline - time.monotonic())))

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"


def _egress_keys() -> set[tuple[str, str, str]]:
    return {(d["kind"], d["metadata"]["namespace"], d["metadata"]["name"]) for d in egress_gateway_documents()}


def _builtin_objects(*, egress_gateway: bool = False) -> list[AppliedObject]:
    out = []
    for doc in builtin_documents(egress_gateway=egress_gateway):
        meta = doc["metadata"]
        ns = meta.get("namespace", "") if doc["kind"] != "Namespace" else ""
        out.append(AppliedObject(doc["kind"], ns, meta["name"], doc, BUILTIN_SOURCE, 0))
    return out


# The desired Deployments and Services follow what they are made of only - the Deployments, ConfigMaps and
# Secrets (volumes, env; the mesh config is a ConfigMap) and the services: kept while those are the same (a pod
# change, or a VirtualService change, works out the endpoints alone). Worked out again, ~0.1 CPU-s at 1000
# services on a worker thread - but holding the GIL, largely in pydantic's serializer - it slowed the push of the
# pod change the runtime reported to every proxy (the ADS thread waits for the GIL): by half.
_DESIRED_KINDS = ("Deployment", "ConfigMap", "Secret")
_desired_config: tuple[tuple[object, ...], object, dict[str, Any]] | None = None


def _desired_state(snapshot: MeshSnapshot, trust_domain: str, pods_known: bool) -> dict[str, Any]:
    global _desired_config
    config = _desired_config
    # (Tuples of the store's objects: compared by identity, element by element, unless one was replaced.)
    made_of = tuple(snapshot.resources.get(kind, ()) for kind in _DESIRED_KINDS)
    if config is None or config[0] != made_of or config[1] != snapshot.services:
        specs = [deployment_spec(d, snapshot) for d in snapshot.of_kind(Deployment)]
        made = {
            "deployments": deployments_to_json(specs),
            "services": services_to_json(service_addresses(snapshot.services)),
        }
        config = _desired_config = (made_of, snapshot.services, made)
    return {
        # The agents ask for certificates in it (and get new ones when it changes).
        "trustDomain": trust_domain,
        **config[2],
    }


# Per Service: its kube-proxy endpoints as JSON, with the service and the workloads it selects they were made from
# (snapshot.endpoints_of: the same tuple while its pods stay) - a pod change encodes its service's alone (all of
# them: ~10 ms of the GIL at 1000 services, on a worker thread while the change was pushed to every proxy).
_endpoints_encoded: dict[tuple[str, str], tuple[MeshService, object, list[str]]] = {}


def _endpoints_json(snapshot: MeshSnapshot) -> str:
    global _endpoints_encoded
    known, kept = _endpoints_encoded, {}
    texts: list[str] = []
    for service in snapshot.services:
        if not has_service_endpoints(service):
            continue
        key, selected = (service.namespace, service.name), snapshot.endpoints_of(service)
        found = known.get(key)
        if found is None or found[0] is not service or found[1] is not selected:
            encoded = endpoints_to_json(service_endpoints_of(snapshot, service))
            found = (service, selected, [json.dumps(x) for x in encoded])
        kept[key] = found
        texts.extend(found[2])
    _endpoints_encoded = kept
    return "[" + ",".join(texts) + "]"


# Per key of the desired state: the list it had last, and its JSON (the Deployments and the Services are the same
# lists while the config stays: encoded once).
_encoded_lists: dict[str, tuple[list[Any], str]] = {}


def _desired_state_json(snapshot: MeshSnapshot, trust_domain: str, pods_known: bool) -> bytes:
    """_desired_state as JSON, encoded on the worker thread an item at a time: one dump of the whole (~1 MB at
    1000 services) would hold the GIL, and so the API's loop, for tens of ms."""
    parts = []
    for key, value in _desired_state(snapshot, trust_domain, pods_known).items():
        if isinstance(value, list):
            found = _encoded_lists.get(key)
            if found is None or found[0] is not value:
                found = _encoded_lists[key] = (value, "[" + ",".join(json.dumps(x) for x in value) + "]")
            text = found[1]
        else:
            text = json.dumps(value)
        parts.append(f"{json.dumps(key)}:{text}")
    # Until the runtime reported its pods, every endpoint would look gone: send none.
    parts.append('"endpoints":' + (_endpoints_json(snapshot) if pods_known else "null"))
    return ("{" + ",".join(parts) + "}").encode()
