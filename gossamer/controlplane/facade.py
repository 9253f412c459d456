"""What the edges may do with the control plane: the one interface the REST API (`api/server.py`) and
the dashboard (`dashboard/`) use, instead of reaching through the control plane's parts (store, runtime
view, ADS server, pusher, cache, CA, telemetry). A change inside the control plane then changes this
class, not every handler; and this class lists everything the outside can ask.

Grouped as the API is: readiness, config (apply, delete, analyze, resources), pods and proxies (status,
describe, proxy config, explain), telemetry (metrics, traces), and the runtime's side (desired state,
pod reports, its agents' certificates).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import any_pb2

from gossamer.controlplane.config import ApplyResult
from gossamer.controlplane.csr import sign_pod_csr
from gossamer.controlplane.daemon import ControlPlane
from gossamer.controlplane.pusher import PushStats
from gossamer.controlplane.supervision import processes_status
from gossamer.debug import explain
from gossamer.debug.describe import describe, find_workload
from gossamer.runtime.types import PodStatus
from gossamer.store import StoredObject
from gossamer.telemetry.tracing import Span
from gossamer.xds.proxy_status import ProxyStatus
from gossamer.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

EXPLAINED_TYPES = (LISTENER, ROUTE, CLUSTER, ENDPOINT)


# A report of changes of up to this many pods is read on the event loop (well under a millisecond).
SMALL_REPORT = 20


class NoPrometheus(Exception):
    """The mesh runs no Prometheus (`up --prometheus` was not given)."""


class ControlPlaneFacade:
    def __init__(self, cp: ControlPlane) -> None:
        self._cp = cp
        self._pod_reports = asyncio.Lock()

    # ---- readiness -----------------------------------------------------------------------------

    def is_ready(self) -> bool:
        return self._cp.is_ready()

    @property
    def ingress_url(self) -> str:
        return self._cp.ingress_url

    def pods_known(self) -> bool:
        """The runtime has reported its pods since this control plane started."""
        return self._cp.runtime.known.is_set()

    def processes(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(control plane, runtime) as `gossamer status` shows them: pid, state, uptime, restarts."""
        return processes_status(self._cp.paths, self._cp.runtime.process(), self._cp.started_at)

    # ---- config --------------------------------------------------------------------------------

    def revision(self) -> int:
        return self._cp.store.revision()

    async def apply(self, files: list[tuple[str, str]], *, dry_run: bool, namespace: str | None) -> ApplyResult:
        # The Envoy check builds every proxy's config (most of a CPU-second at a thousand services) and analysis
        # reads everything: in the checker's process, so the event loop keeps serving the API and the proxies
        # meanwhile (a thread would hold the GIL they need). One apply at a time (edited manifests too).
        return await self._cp.apply_checked(files, dry_run=dry_run, namespace=namespace)

    def delete(self, files: list[tuple[str, str]], *, namespace: str | None) -> ApplyResult:
        return self._cp.delete(files, namespace=namespace)

    async def analyze(
        self,
        files: list[tuple[str, str]],
        *,
        namespace: str,
        all_namespaces: bool,
        mesh_config: tuple[str, str] | None,
        analyzers: Sequence[str] | None,
    ) -> dict[str, Any]:
        """`gossamer analyze` of FILES over the running mesh's config and pods (ValueError: bad request)."""
        from gossamer.analyze.live import analyze_mesh

        result = await asyncio.to_thread(  # building every proxy's config for Envoy's check takes a while
            analyze_mesh,
            files,
            self.resources(),
            self.pods(),
            namespace=namespace,
            all_namespaces=all_namespaces,
            mesh_config=mesh_config,
            analyzers=analyzers,
        )
        return result.to_json()

    def resources(self) -> list[Any]:
        """Every stored resource, parsed, oldest first per kind."""
        return [r for rs in self._cp.snapshots.resources().values() for r in rs]

    def resources_by_kind(self) -> dict[str, tuple[Any, ...]]:
        return self._cp.snapshots.resources()

    def stored_objects(
        self, kind: str | None = None, namespace: str | None = None, name: str | None = None
    ) -> list[StoredObject]:
        """The store's objects as applied (metadata, source file and line); by NAME, a lookup."""
        if name is not None and kind is not None and namespace is not None:
            found = self._cp.store.get(kind, namespace, name)
            return [found] if found is not None else []
        return [o for o in self._cp.store.objects(kind, namespace) if name is None or o.name == name]

    def service_vips(self) -> dict[tuple[str, str], str]:
        return self._cp.store.service_vips()

    async def wait_config_synced(self, revision: int, timeout: float) -> bool:
        """Until config up to REVISION is translated and every connected proxy has ACKed it."""
        return await self._cp.wait_config_synced(revision, timeout)

    # ---- pods and proxies ----------------------------------------------------------------------

    def pods(self) -> list[PodStatus]:
        return self._cp.runtime.pods()

    def pod(self, ref: str, namespace: str) -> PodStatus | None:
        """The pod REF names (a pod name or deploy/NAME), or None."""
        try:
            return self._cp.runtime.pod(ref, namespace)
        except KeyError:
            return None

    def netns_name(self, pod: PodStatus) -> str:
        return self._cp.runtime.netns_name(pod.name, pod.namespace)

    def log_paths(self, pod: PodStatus) -> dict[str, str]:
        return self._cp.runtime.log_paths(pod.name, pod.namespace)

    def containers(self, pod: PodStatus) -> list[str]:
        """The container names of the pod's Deployment (none for a pod without one)."""
        deployment = self._cp.snapshots.deployment(pod.namespace, pod.deployment)
        return [c.name for c in deployment.spec.template.spec.containers] if deployment is not None else []

    def proxies(self) -> list[ProxyStatus]:
        return self._cp.ads.proxies()

    def proxy_of(self, pod: PodStatus) -> ProxyStatus | None:
        """The pod's connected proxy."""
        return next((p for p in self.proxies() if f"~{pod.name}.{pod.namespace}~" in p.node_id), None)

    def push_stats(self) -> PushStats:
        return self._cp.pusher.stats

    def proxy_config(self, proxy: ProxyStatus, type_url: str) -> tuple[str, Mapping[str, any_pb2.Any]]:
        """(version, name -> packed resource) of one xDS type as the proxy's group was last given it."""
        return self._cp.cache.given(proxy.group, type_url)

    def describe(self, pod: PodStatus) -> dict[str, Any]:
        """The config that applies to the pod (DescribeError: it is not a workload of the mesh)."""
        snapshot = self._cp.snapshot()
        return describe(snapshot, find_workload(snapshot, pod.name, pod.namespace))

    def explain(
        self, pod: PodStatus, proxy: ProxyStatus, *, url: str, method: str, headers: Any, inbound: bool
    ) -> dict[str, Any]:
        """Where one request goes on the config the pod's proxy was sent (ExplainError: bad request)."""
        packed = {t: self._cp.cache.given(proxy.group, t) for t in EXPLAINED_TYPES}
        return explain.explain(
            explain.unpack({t: res for t, (_, res) in packed.items()}),
            url=url,
            method=method,
            headers=headers,
            inbound=inbound,
            namespace=pod.namespace,
            services=self._cp.snapshot().services,
            pod_ip=pod.ip,
            proxy=proxy.node_id,
            sync=explain.sync_states(proxy.types, proxy.synced, {t: v for t, (v, _) in packed.items()}),
        )

    async def pod_secret(self, pod: PodStatus) -> tuple[int, dict[str, Any]]:
        """The pod's workload certificate and root as its agent serves them (never the key): (HTTP status,
        body) from the runtime, where the agents live."""
        return await self._cp.runtime.pod_secret(pod.name, pod.namespace)

    async def envoy_stats(self, pod: PodStatus) -> str:
        return (await self._cp.runtime.admin_get(pod.name, pod.namespace, "/stats"))[1]

    # ---- telemetry -----------------------------------------------------------------------------

    async def metrics_text(self) -> str:
        """Istio's standard metrics of the whole mesh, read from the pods now (Prometheus text)."""
        return await self._cp.metrics.text()

    @property
    def has_prometheus(self) -> bool:
        return self._cp.prometheus is not None

    async def prometheus_query(self, query: str) -> list[dict[str, Any]]:
        """A PromQL instant query (NoPrometheus; PrometheusError: a bad query or Prometheus not up)."""
        if self._cp.prometheus is None:
            raise NoPrometheus("no Prometheus: start the mesh with `gossamer up --prometheus`")
        return await self._cp.prometheus.query(query)

    async def request_counters(self) -> list[tuple[dict[str, str], float]]:
        """istio_requests_total per series from Prometheus (NoPrometheus; PrometheusError: not up yet)."""
        if self._cp.prometheus is None:
            raise NoPrometheus("no Prometheus")
        return await self._cp.prometheus.request_counters()

    def trace(self, trace_id: str) -> list[Span]:
        return self._cp.traces.trace(trace_id)

    def traces(self, *, service: str | None, limit: int) -> list[dict[str, Any]]:
        return self._cp.traces.traces(service=service, limit=limit)

    def span_count(self) -> int:
        return len(self._cp.traces)

    # ---- the runtime's side (a kubelet's) ------------------------------------------------------

    @property
    def instance(self) -> str:
        return self._cp.instance

    async def desired_json(self, known_version: str | None, wait: float) -> bytes:
        return await self._cp.desired_json(known_version, wait)

    async def report_pods(self, body: dict[str, Any]) -> int:
        """A runtime's pod report: read on a worker thread (thousands of pods at 1000 services: the API's loop
        keeps answering meanwhile), taken on the loop; one report at a time, in the order they came. Returns the
        report's number (a report of changes names it as its base)."""
        async with self._pod_reports:
            self._cp.runtime.take(await asyncio.to_thread(self._cp.runtime.read, body))
            return self._cp.runtime.reports

    async def report_pod_changes(self, body: dict[str, Any]) -> int:
        """A runtime's report of the pods that changed since its last report (StaleReport if this control plane
        did not take that one): read on the loop when it is a few pods (the common case: the pod change is pushed
        without a hop to a thread), like report_pods otherwise."""
        view = self._cp.runtime
        async with self._pod_reports:
            if len(body.get("pods") or ()) <= SMALL_REPORT:
                view.take(view.read_changes(body, self._cp.instance))
            else:
                view.take(await asyncio.to_thread(view.read_changes, body, self._cp.instance))
            return view.reports

    async def sign_pod_csr(self, *, namespace: str, pod: str, identity: str, csr_pem: str, ttl_seconds: float) -> str:
        """Sign a pod agent's CSR, only for a pod the runtime reported and with its own identity (PodUnknown,
        CsrRejected)."""
        return await asyncio.to_thread(
            sign_pod_csr,
            self._cp.ca,
            self._cp.runtime,
            namespace=namespace,
            pod=pod,
            identity=identity,
            csr_pem=csr_pem,
            ttl_seconds=ttl_seconds,
        )

    @property
    def root_pem(self) -> str:
        return self._cp.ca.root_pem
