"""The control plane process: store, registry, translation, ADS, runtime, REST API.

One asyncio process, as DESIGN.md describes ("the istiod"). The local runtime
and the agents of all its pods live in the same process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import grpc

from gossamer.controlplane.analyze import analyze
from gossamer.controlplane.config import ApplyResult, apply_files, delete_files
from gossamer.controlplane.images import image_issues
from gossamer.controlplane.paths import Paths
from gossamer.controlplane.proxies import proxy_from_node
from gossamer.controlplane.pusher import Pusher
from gossamer.controlplane.snapshots import SnapshotBuilder
from gossamer.controlplane.watch import ManifestWatcher
from gossamer.controlplane.workloads import (
    BUILTIN_SOURCE,
    builtin_documents,
    deployment_spec,
    egress_gateway_documents,
    named_ports,
    service_addresses,
    service_endpoints,
)
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.runtime.images import ImageCache
from gossamer.runtime.local import LocalRuntime
from gossamer.runtime.sandbox import PROXY_GROUP
from gossamer.security import CertificateAuthority
from gossamer.security.server_tls import ServerTls
from gossamer.security.settings import CertSettings
from gossamer.store import Change, Store
from gossamer.telemetry import AccessLogServicer, MeshMetrics, SpanStore, ZipkinCollector
from gossamer.xds.cache import ConfigCache
from gossamer.xds.server import AdsServer, ProxyStatus, serve

log = logging.getLogger(__name__)

# ServiceEntry: its hosts resolve inside pods (hosts files).
# ConfigMap, Secret: the content of pod volumes and env references (updated in place, as the kubelet does)
RUNTIME_KINDS = {"Deployment", "Service", "Namespace", "ServiceAccount", "ServiceEntry", "ConfigMap", "Secret"}


class ControlPlane:
    def __init__(self, paths: Paths, *, ingress_port: int = 8080, ingress_tls_port: int = 8443,
                 egress_gateway: bool = False, certs: CertSettings | None = None) -> None:
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
        self.images = ImageCache(paths.state_dir / "images")  # pulled at apply, shared with the runtime
        self.snapshots = SnapshotBuilder(self.store)
        self.cache = ConfigCache()
        # The mesh CA (istiod's): its root persists in <state>/ca, so restarts keep it.
        self.ca = CertificateAuthority(paths.state_dir / "ca", default_ttl=certs.workload_cert_ttl)
        self.runtime = LocalRuntime(state_dir=paths.state_dir / "runtime", run_dir=paths.run_dir,
                                    xds_socket=paths.xds_socket, ingress_port=ingress_port,
                                    ingress_tls_port=ingress_tls_port,
                                    on_change=self._on_runtime_change, ca=self.ca,
                                    cert_ttl=certs.workload_cert_ttl, cert_rotate_fraction=certs.rotate_fraction,
                                    zipkin_socket=paths.zipkin_socket)
        self.pusher = Pusher(self.cache, self.snapshot)
        self.ads = AdsServer(self.cache, self._group_for_node, on_disconnect=self._on_proxy_disconnect)
        # Istio's standard metrics, from the access log entries proxies stream next to ADS.
        self._last_snapshot: MeshSnapshot | None = None
        self.metrics = MeshMetrics(lambda: self._last_snapshot)
        self.access_logs = AccessLogServicer(self.metrics)
        # Distributed tracing: every proxy posts its spans to this Zipkin collector (<run-dir>/zipkin.sock).
        self.traces = SpanStore()
        self.zipkin = ZipkinCollector(self.traces)
        self.watcher = ManifestWatcher(self._apply_watched)
        self._grpc: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._reconcile_wanted = asyncio.Event()
        self._endpoints_wanted = asyncio.Event()
        self._stopped = asyncio.Event()
        self.started_at = time.time()
        self._image_note_shown = False
        self.store.subscribe(self._on_store_change)

    # -- lifecycle ---------------------------------------------------------
    async def start(self, manifests: list[tuple[str, str]]) -> ApplyResult:
        """Validate the manifests first: with any error nothing is started or stored."""
        result = apply_files(self.store, manifests, dry_run=True, admit=lambda new: image_issues(new, self.images))
        if not result.ok:
            return result
        self.store.apply(_builtin_tuples(egress_gateway=self.egress_gateway))
        if not self.egress_gateway:
            # A store kept from an `up --egress-gateway`: its built-in egress gateway goes (a user's stays).
            stale = [key for key in sorted(_egress_keys())
                     if (old := self.store.get(*key)) is not None and old.source_file == BUILTIN_SOURCE]
            if stale:
                self.store.delete(stale)
        result = self.apply(manifests)
        await self.zipkin.start(self.paths.zipkin_socket)
        await self.runtime.start()
        # mTLS: proxies prove their identity with the workload certificate their agent serves them.
        self._grpc = await serve(self.ads, f"unix:{self.paths.xds_socket}", others=[self.access_logs],
                                 credentials=ServerTls(self.ca).credentials)
        self._tasks = [asyncio.create_task(self.pusher.run(), name="pusher"),
                       asyncio.create_task(self._reconcile_loop(), name="reconcile"),
                       asyncio.create_task(self._endpoints_loop(), name="kube-proxy"),
                       asyncio.create_task(self.watcher.run(), name="watch")]
        self._reconcile_wanted.set()
        self._endpoints_wanted.set()
        # A restart on an unchanged store makes no store change: push once anyway, so that
        # pushed_revision reaches the stored revision (`apply --wait`, /v1/sync wait on it).
        self.pusher.request_push(full=True)
        return result

    async def stop(self, *, wipe: bool) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.runtime.stop()
        if self._grpc is not None:
            await self._grpc.stop(grace=0.5)
        await self.zipkin.stop()
        self.paths.zipkin_socket.unlink(missing_ok=True)
        self.store.close()
        if wipe:
            self.paths.store.unlink(missing_ok=True)
            for suffix in ("-wal", "-shm"):
                Path(str(self.paths.store) + suffix).unlink(missing_ok=True)
            shutil.rmtree(self.paths.state_dir / "runtime", ignore_errors=True)
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    # -- config ------------------------------------------------------------
    def apply(self, files: list[tuple[str, str]], *, dry_run: bool = False,
              namespace: str | None = None, envoy_issues: list[Any] | None = None,
              warnings: list[Any] | None = None) -> ApplyResult:
        """ENVOY_ISSUES, WARNINGS: config.precheck's results, when the caller worked them out already."""
        existing = [r for rs in self.snapshots.resources().values() for r in rs]
        result = apply_files(self.store, files, dry_run=dry_run,
                             analyze=(lambda new: warnings) if warnings is not None else
                             (lambda new: analyze(new, existing)),
                             admit=lambda new: image_issues(new, self.images), namespace=namespace,
                             existing=existing, envoy_issues=envoy_issues)
        if result.ok and not self._image_note_shown and any(
                c.object.kind == "Deployment" and c.object.source_file != BUILTIN_SOURCE for c in result.changes):
            self._image_note_shown = True
            result.notes.append("note: a container with a `command` runs it on this machine (from the manifest's "
                                "folder, as its pod's user); a container without one runs its image")
        return result

    def delete(self, files: list[tuple[str, str]], *, namespace: str | None = None) -> ApplyResult:
        return delete_files(self.store, files, namespace)

    def _apply_watched(self, path: Path, text: str) -> None:
        result = self.apply([(str(path), text)])
        for issue in result.errors:
            log.error("%s (file not re-applied)", issue)
        for change in result.changes:
            if change.kind != "unchanged":
                log.info("%s/%s %s (edited %s)", change.object.kind, change.object.name, change.kind, path)

    def _on_store_change(self, changes: list[Change]) -> None:
        if any(c.object.kind in RUNTIME_KINDS for c in changes):
            self._reconcile_wanted.set()
            self._endpoints_wanted.set()
        for c in changes:
            if c.kind == "deleted" and c.object.kind == "Service":
                self.store.release_vip(c.object.namespace, c.object.name)
        # Which resources changed: the push re-translates only what they can touch.
        self.pusher.request_push(full=True, changed={c.object.key for c in changes})

    # -- registry ----------------------------------------------------------
    def snapshot(self) -> MeshSnapshot:
        snapshot = self.snapshots.build(self.runtime.pods())
        self._last_snapshot = snapshot  # pod IPs -> workloads for the metrics' labels
        return snapshot

    async def _reconcile_loop(self) -> None:
        while True:
            await self._reconcile_wanted.wait()
            self._reconcile_wanted.clear()
            snapshot = self.snapshot()
            deployments = [deployment_spec(d, snapshot) for d in snapshot.of_kind("Deployment")]
            try:
                await self.runtime.apply(deployments, service_addresses(snapshot.services))
            except Exception:
                log.exception("runtime reconcile failed")

    async def _endpoints_loop(self, debounce: float = 0.05) -> None:
        """kube-proxy: service VIPs -> ready endpoints in sidecar-less pods, on every endpoint change
        (pod readiness, Services, Deployments), coalesced like pushes."""
        last: tuple[object, ...] | None = None
        while True:
            await self._endpoints_wanted.wait()
            await asyncio.sleep(debounce)
            self._endpoints_wanted.clear()
            endpoints = tuple(service_endpoints(self.snapshot()))
            if endpoints == last:
                continue
            try:
                await self.runtime.set_service_endpoints(endpoints)
                last = endpoints
            except Exception:
                log.exception("service endpoints update failed")

    def _on_runtime_change(self) -> None:
        self._endpoints_wanted.set()
        self.pusher.request_push(full=False)

    async def _group_for_node(self, node: Any) -> str:
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
        return len(proxies) >= len(with_proxy) and all(p.is_synced for p in proxies)

    async def wait_config_synced(self, revision: int, timeout: float) -> bool:
        """Until config up to `revision` is translated and every connected proxy has ACKed it."""
        deadline = time.monotonic() + timeout
        while self.pusher.pushed_revision < revision or self.pusher.pending:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return await self.ads.wait_synced(None, max(0.0, deadline - time.monotonic()))

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"


def _egress_keys() -> set[tuple[str, str, str]]:
    return {(d["kind"], d["metadata"]["namespace"], d["metadata"]["name"]) for d in egress_gateway_documents()}


def _builtin_tuples(*, egress_gateway: bool = False) -> list[tuple[tuple[str, str, str], dict[str, Any], str, int]]:
    out = []
    for doc in builtin_documents(egress_gateway=egress_gateway):
        meta = doc["metadata"]
        ns = meta.get("namespace", "") if doc["kind"] != "Namespace" else ""
        out.append(((doc["kind"], ns, meta["name"]), doc, BUILTIN_SOURCE, 0))
    return out
