"""The runtime's reconcile loop contains a failure to the Deployment it concerns (issue 11 point 9).

Pods are not really created here (no root): `Pod.create` is replaced by a stand-in that fails for
the Deployments a test says, so what is checked is the loop's containment, the failed pod's status
and the retries, not the pod machinery itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gossamer.runtime import local, network
from gossamer.runtime.local import LocalRuntime
from gossamer.runtime.pods import Pod, PodContext
from gossamer.runtime.types import ContainerSpec, DeploymentSpec

FAILING: dict[str, Exception] = {}


def spec(name: str, replicas: int = 1, command: str = "serve") -> DeploymentSpec:
    return DeploymentSpec(
        name=name,
        namespace="default",
        replicas=replicas,
        labels=(("app", name),),
        annotations=(),
        service_account=name,
        containers=(ContainerSpec("app", (command,), (), (8080,), None, None),),
        inject_sidecar=False,
    )


async def fake_create(self: Pod, services: Any, prepare: Any = None) -> None:
    exc = FAILING.get(self.spec.name)
    if exc is not None:
        self.phase = "Terminating"  # as Pod.create's own clean-up leaves it
        raise exc
    self.phase = "Running"


async def fake_teardown(self: Pod) -> None:
    self.phase = "Terminating"


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalRuntime]:
    FAILING.clear()
    monkeypatch.setattr(Pod, "create", fake_create)
    monkeypatch.setattr(Pod, "_teardown", fake_teardown)
    monkeypatch.setattr(local, "CREATE_RETRY_S", 0.05)
    monkeypatch.setattr(network, "netns_exists", lambda name: False)  # as local.py calls it
    rt = LocalRuntime(state_dir=tmp_path / "state", run_dir=tmp_path / "run", xds_socket=tmp_path / "xds.sock")
    rt._ctx = PodContext(
        record=rt._record,
        state_dir=rt.state_dir,
        run_dir=rt.run_dir,
        xds_socket=rt.xds_socket,
        envoy_binary=Path("/bin/false"),
        notify=rt._pod_changed,
    )
    rt._started = True
    yield rt
    for t in [*rt._retry_tasks, *rt._retire_tasks]:
        t.cancel()


def by_deployment(rt: LocalRuntime) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for p in rt.pods():
        out.setdefault(p.deployment, []).append(p)
    return out


async def test_a_deployment_whose_pod_cannot_be_created_does_not_stop_the_others(runtime: LocalRuntime) -> None:
    FAILING["broken"] = NotADirectoryError(20, "Not a directory", "/etc/hostname/data")
    # The failing one first: before, its exception ended the loop and `good` was never created.
    await runtime.apply([spec("broken"), spec("good", replicas=2)], [])
    pods = by_deployment(runtime)
    assert [p.phase for p in pods["good"]] == ["Running", "Running"]
    assert all(p.ip for p in pods["good"])
    (failed,) = pods["broken"]
    assert failed.phase == "Pending" and not failed.ready and not failed.app_ready
    assert failed.reason == "CreateContainerError"
    assert failed.ip == ""  # its address went back to the pool
    assert "Not a directory" in failed.waiting[0] and "/etc/hostname/data" in failed.waiting[0]


async def test_a_failed_pod_is_tried_again_under_its_name_until_it_is_created(runtime: LocalRuntime) -> None:
    FAILING["broken"] = OSError("boom")
    await runtime.apply([spec("broken")], [])
    (first,) = runtime.pods()
    for _ in range(100):  # the second attempt (after CREATE_RETRY_S) fails too
        await asyncio.sleep(0.02)
        (again,) = runtime.pods()
        if again.restarts >= 1:
            break
    assert again.name == first.name and again.reason == "CreateContainerError" and again.restarts >= 1
    del FAILING["broken"]
    for _ in range(100):
        await asyncio.sleep(0.02)
        (now,) = runtime.pods()
        if now.phase == "Running":
            break
    assert now.name == first.name and now.phase == "Running" and now.ip and not now.waiting


async def test_a_new_template_replaces_a_failed_pod_and_scaling_down_removes_it_first(runtime: LocalRuntime) -> None:
    FAILING["web"] = OSError("boom")
    await runtime.apply([spec("web")], [])
    del FAILING["web"]
    await runtime.apply([spec("web", command="serve-fixed")], [])
    for _ in range(100):  # the failed pod of the old template goes once the new one is ready
        await asyncio.sleep(0.02)
        if len(runtime.pods()) == 1:
            break
    (pod,) = runtime.pods()
    assert pod.phase == "Running" and pod.ip


async def test_an_exception_reconciling_one_deployment_is_contained(
    runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    reconcile = LocalRuntime._reconcile

    async def failing_for_a(self: LocalRuntime, key: tuple[str, str], s: DeploymentSpec) -> None:
        if key[1] == "a":
            raise RuntimeError("a bug")
        await reconcile(self, key, s)

    monkeypatch.setattr(LocalRuntime, "_reconcile", failing_for_a)
    await runtime.apply([spec("a"), spec("b"), spec("c")], [])
    assert sorted(by_deployment(runtime)) == ["b", "c"]


async def test_failing_volume_updates_leave_the_pod_and_the_other_deployments_alone(
    runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    await runtime.apply([spec("a"), spec("b")], [])

    async def update_sources(self: Pod, s: DeploymentSpec) -> None:
        if self.spec.name == "a":
            raise OSError("disk full")

    monkeypatch.setattr(Pod, "update_sources", update_sources)
    await runtime.apply([spec("a"), spec("b", replicas=2)], [])
    pods = by_deployment(runtime)
    assert len(pods["a"]) == 1 and pods["a"][0].phase == "Running"
    assert len(pods["b"]) == 2
