"""The runtime <-> control plane protocol over the API socket, with a real control plane (store, API on a
unix socket) and the runtime's real Kubelet loops driving a stand-in for the LocalRuntime (no root): the
desired state reaches the runtime, pod reports reach the registry, and a restarted control plane gets
the pods again before it serves anything built from them."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gossamer.api.server import Api
from gossamer.controlplane.daemon import ControlPlane
from gossamer.controlplane.paths import Paths
from gossamer.runtime.daemon import Kubelet
from gossamer.runtime.types import DeploymentSpec, PodStatus, ServiceAddress, ServiceEndpoints

MANIFEST = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8000}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: python, command: [python3, -m, http.server, "8000"], ports: [{containerPort: 8000}]}
"""


class FakeRuntime:
    """What the Kubelet needs of a LocalRuntime: it records what it was asked to run and reports pods."""

    def __init__(self) -> None:
        self.applied: list[tuple[list[DeploymentSpec], list[ServiceAddress]]] = []
        self.endpoints: list[list[ServiceEndpoints]] = []
        self.statuses: list[PodStatus] = []
        self.trust_domains: list[str] = []

    def set_trust_domain(self, trust_domain: str) -> None:
        if not self.trust_domains or self.trust_domains[-1] != trust_domain:
            self.trust_domains.append(trust_domain)

    async def apply(self, deployments: Sequence[DeploymentSpec], services: Sequence[ServiceAddress]) -> None:
        self.applied.append((list(deployments), list(services)))
        self.statuses = [
            PodStatus(
                name=f"{d.name}-{i}",
                namespace=d.namespace,
                deployment=d.name,
                ip=f"10.244.0.{10 + i}",
                labels=d.labels,
                service_account=d.service_account,
                has_sidecar=False,
                proxy_type=d.proxy_type,
                phase="Running",
                app_ready=True,
                proxy_ready=True,
                ports=(8000,),
            )
            for d in deployments
            for i in range(d.replicas)
        ]

    async def set_service_endpoints(self, services: Sequence[ServiceEndpoints]) -> None:
        self.endpoints.append(list(services))

    def pod_reports(self) -> list[tuple[PodStatus, dict[str, object]]]:
        return [(s, {"netns": f"gsm-{s.name}", "adminSocket": "", "logs": {}}) for s in self.statuses]


@contextlib.asynccontextmanager
async def control_plane(paths: Paths, manifests: list[tuple[str, str]]) -> AsyncIterator[ControlPlane]:
    cp = ControlPlane(paths)
    result = await cp.start(manifests)
    assert result.ok, result.errors
    runner = web.AppRunner(Api(cp, asyncio.Event()).app(), shutdown_timeout=1.0)
    await runner.setup()
    paths.api_socket.unlink(missing_ok=True)
    await web.UnixSite(runner, str(paths.api_socket)).start()
    try:
        yield cp
    finally:
        await runner.cleanup()
        await cp.stop(wipe=False)


async def eventually(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "state", Path(tempfile.mkdtemp(prefix="gsm-k", dir="/tmp")))  # short socket paths


async def test_desired_state_in_pod_reports_out_and_a_restarted_control_plane_is_told_again(paths: Paths) -> None:
    runtime = FakeRuntime()
    kubelet = Kubelet(paths, runtime)  # type: ignore[arg-type]
    task = asyncio.create_task(kubelet.run())
    try:
        async with control_plane(paths, [("web.yaml", MANIFEST)]) as cp:
            await eventually(lambda: any(any(d.name == "web" for d in ds) for ds, _ in runtime.applied))
            web_spec = next(d for ds, _ in runtime.applied for d in ds if d.name == "web")
            assert web_spec.replicas == 2 and web_spec.containers[0].command == ("python3", "-m", "http.server", "8000")
            assert any(s.name == "web" and s.vip.startswith("10.96.") for s in runtime.applied[-1][1])
            kubelet.pods_changed()  # the pods the stand-in "started"
            await eventually(lambda: {p.name for p in cp.runtime.pods()} >= {"web-0", "web-1"})
            reported = {p.name for p in cp.runtime.pods()}
            # kube-proxy: the Service's endpoints, once the control plane knows the pods.
            await eventually(
                lambda: any(e.name == "web" and len(e.endpoints) == 2 for es in runtime.endpoints for e in es)
            )
        applied_before = len(runtime.applied)
        await asyncio.sleep(0.3)  # no control plane: the kubelet keeps retrying, the pods stay
        # A new control plane on the same store: it knows no pod until the runtime reports, and the runtime
        # reports at once although none of its pods changed.
        async with control_plane(paths, []) as cp:
            await eventually(lambda: cp.runtime.known.is_set(), timeout=2.0)
            assert {p.name for p in cp.runtime.pods()} == reported
            # Its desired state is the same: the runtime re-applies it (nothing to change there).
            await eventually(lambda: len(runtime.applied) > applied_before)
            assert [d.name for d in runtime.applied[-1][0]] == [d.name for d in runtime.applied[applied_before - 1][0]]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


MESH = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    trustDomain: %s
    trustDomainAliases: [cluster.local]
"""


async def test_the_mesh_trust_domain_reaches_the_ca_the_ads_check_and_the_runtime(paths: Paths) -> None:
    from gossamer.controlplane.csr import sign_pod_csr
    from gossamer.security import CsrRejected
    from tests.unit.test_ca import make_csr

    runtime = FakeRuntime()
    kubelet = Kubelet(paths, runtime)  # type: ignore[arg-type]
    task = asyncio.create_task(kubelet.run())
    try:
        async with control_plane(paths, [("web.yaml", MANIFEST), ("mesh.yaml", MESH % "new-td")]) as cp:
            await eventually(lambda: runtime.trust_domains == ["new-td"])
            assert cp.ca.trust_domain == "new-td" and cp.trust.all == ("new-td", "cluster.local")
            kubelet.pods_changed()
            await eventually(lambda: cp.runtime.find("default", "web-0") is not None)

            def sign(identity: str) -> str:
                return sign_pod_csr(
                    cp.ca,
                    cp.runtime,
                    namespace="default",
                    pod="web-0",
                    identity=identity,
                    csr_pem=make_csr(identity)[1],
                    ttl_seconds=3600,
                )

            assert "BEGIN CERTIFICATE" in sign("spiffe://new-td/ns/default/sa/default")
            with pytest.raises(CsrRejected, match="runs as 'spiffe://new-td/ns/default/sa/default'"):
                sign("spiffe://cluster.local/ns/default/sa/default")  # an alias is accepted, never issued
            # Applied live: the runtime is told (its agents renew their certificates).
            result = cp.apply([("mesh.yaml", MESH % "newer-td")])
            assert result.ok, result.errors
            await eventually(lambda: runtime.trust_domains == ["new-td", "newer-td"])
            assert cp.ca.trust_domain == "newer-td"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_the_desired_state_encoded_in_pieces_is_the_whole_of_it(paths: Paths) -> None:
    """The desired state's JSON is built an item at a time (off the event loop, letting it have the GIL between
    them), the Deployments and Services kept while the config stays: it reads back as the whole state would."""
    import json

    from gossamer.controlplane.daemon import _desired_state_json
    from gossamer.controlplane.kubernetes import deployment_spec, service_addresses, service_endpoints
    from gossamer.resources.apps import Deployment
    from gossamer.runtime.wire import deployments_to_json, endpoints_to_json, services_to_json

    cp = ControlPlane(paths)
    result = cp.apply([("m.yaml", "---\n".join(MANIFEST.replace("web", f"web{i}") for i in range(40)))])
    assert result.ok, result.errors
    snapshot = cp.snapshot()
    for pods_known in (True, False):
        whole: dict[str, Any] = {
            "trustDomain": "cluster.local",
            "deployments": deployments_to_json([deployment_spec(d, snapshot) for d in snapshot.of_kind(Deployment)]),
            "services": services_to_json(service_addresses(snapshot.services)),
            "endpoints": endpoints_to_json(service_endpoints(snapshot)) if pods_known else None,
        }
        assert len(whole["deployments"]) == 40
        assert json.loads(_desired_state_json(snapshot, "cluster.local", pods_known)) == whole
        assert json.loads(_desired_state_json(snapshot, "cluster.local", pods_known)) == whole  # (kept)
    cp.store.close()


async def test_a_pod_change_is_reported_as_that_change(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    """After its first report to a control plane, the runtime sends only the pods that changed (PATCH, one pod
    for one pod's change, not every pod); the control plane's view is then what the runtime has."""
    from gossamer.controlplane.runtime_view import RuntimeView

    sent: list[tuple[int, list[str]]] = []
    read_changes = RuntimeView.read_changes

    def recorded(self: RuntimeView, body: dict[str, Any], instance: str) -> Any:
        sent.append((len(body["pods"]), [name for _ns, name in body["removed"]]))
        return read_changes(self, body, instance)

    monkeypatch.setattr(RuntimeView, "read_changes", recorded)
    runtime = FakeRuntime()
    kubelet = Kubelet(paths, runtime)  # type: ignore[arg-type]
    task = asyncio.create_task(kubelet.run())
    try:
        async with control_plane(paths, [("web.yaml", MANIFEST.replace("replicas: 2", "replicas: 3"))]) as cp:
            await eventually(lambda: sum(s.deployment == "web" for s in runtime.statuses) == 3)
            kubelet.pods_changed()
            await eventually(lambda: cp.runtime.find("default", "web-2") is not None)
            first = cp.runtime.find("default", "web-0")
            others = [s for s in runtime.statuses if s.deployment != "web"]
            web = [s for s in runtime.statuses if s.deployment == "web"]
            runtime.statuses = [*others, web[0], replace(web[1], app_ready=False)]  # web-2 gone
            kubelet.pods_changed()
            await eventually(lambda: cp.runtime.find("default", "web-2") is None)
            assert [(p.name, p.ready) for p in cp.runtime.pods() if p.deployment == "web"] == [
                ("web-0", True),
                ("web-1", False),
            ]
            assert cp.runtime.find("default", "web-0") is first  # not parsed again
            assert sent[-1] == (1, ["web-2"])
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
