"""The snapshot builder: follows the store's changes (no re-reads), one snapshot per event, VIPs
allocated and released when the store changes, never while reading."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from gossamer.controlplane.config import apply_files, delete_files
from gossamer.controlplane.snapshots import SnapshotBuilder
from gossamer.runtime.types import PodStatus
from gossamer.store import Store

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, command: [sleep, "1"], ports: [{name: http, containerPort: 8080}]}]
"""

ENTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: DNS
"""


def pod(name: str, ip: str, ready: bool = True) -> PodStatus:
    return PodStatus(
        name=name,
        namespace="default",
        deployment="web",
        ip=ip,
        labels=(("app", "web"),),
        service_account="default",
        has_sidecar=True,
        proxy_type="sidecar",
        phase="Running",
        app_ready=ready,
        proxy_ready=True,
        started_at=time.time(),
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store.db")


def test_a_snapshot_is_built_once_per_event(store: Store) -> None:
    builder = SnapshotBuilder(store)
    apply_files(store, [("web.yaml", SERVICE)])
    pods = [pod("web-0", "10.244.0.2")]
    first = builder.build(pods)
    assert builder.build(list(pods)) is first  # nothing changed: the same snapshot
    [service] = first.services
    [workload] = first.workloads
    assert (service.name, workload.ip, dict(workload.named_ports)) == ("web", "10.244.0.2", {"http": 8080})
    second = builder.build([pod("web-0", "10.244.0.2", ready=False)])  # a pod event
    assert second is not first and not second.workloads[0].ready
    apply_files(store, [("web.yaml", SERVICE.replace("port: 80", "port: 81"))])  # a config event
    third = builder.build([pod("web-0", "10.244.0.2", ready=False)])
    assert third is not second and third.services[0].ports[0].port == 81
    assert third.version == store.revision()


def test_the_store_is_read_once(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    apply_files(store, [("web.yaml", SERVICE)])
    builder = SnapshotBuilder(store)

    def no_reads(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the builder re-read the store")

    monkeypatch.setattr(store, "objects", no_reads)
    assert [s.name for s in builder.build([]).services] == ["web"]
    # as the control plane applies: the resources it has are the apply's Envoy check's baseline
    apply_files(store, [("entry.yaml", ENTRY)], existing=[r for rs in builder.resources().values() for r in rs])
    assert {s.hostname for s in builder.build([]).services} == {"web.default.svc.cluster.local", "api.example.com"}
    assert [d.metadata.name for d in builder.resources()["Deployment"]] == ["web"]


def test_vips_are_allocated_and_released_when_the_store_changes(store: Store) -> None:
    SnapshotBuilder(store)
    apply_files(store, [("web.yaml", SERVICE), ("entry.yaml", ENTRY)])
    vips = store.service_vips()
    assert ("default", "web") in vips
    assert any(name != "web" for _ns, name in vips)  # the ServiceEntry host's auto-allocated address
    delete_files(store, [("entry.yaml", ENTRY)])
    assert list(store.service_vips()) == [("default", "web")]
    delete_files(store, [("web.yaml", SERVICE)])
    assert store.service_vips() == {}


def test_reading_allocates_nothing(store: Store) -> None:
    builder = SnapshotBuilder(store)
    apply_files(store, [("web.yaml", SERVICE)])
    before = store.service_vips()
    revision = store.revision()
    builder.build([])
    builder.resources()
    assert store.service_vips() == before and store.revision() == revision


def test_a_pod_change_builds_the_workload_of_that_pod_only(store: Store) -> None:
    """The other pods' workloads are the very objects of the previous snapshot (what a pod change re-translates is
    found by identity first), until their Deployment changes (its named ports are theirs)."""
    builder = SnapshotBuilder(store)
    apply_files(store, [("web.yaml", SERVICE)])
    pods = [pod("web-0", "10.244.0.2"), pod("web-1", "10.244.0.3"), pod("web-2", "10.244.0.4")]
    first = builder.build(pods).workloads
    second = builder.build([pods[0], pod("web-1", "10.244.0.3", ready=False), pods[2]]).workloads
    assert [a is b for a, b in zip(first, second, strict=True)] == [True, False, True]
    assert not second[1].ready and second[1] == replace(first[1], ready=False)
    third = builder.build([pods[0], pods[2]]).workloads
    assert third == (second[0], second[2]) and third[0] is second[0] and third[1] is second[2]
    apply_files(store, [("web.yaml", SERVICE.replace("name: http, containerPort", "name: web, containerPort"))])
    fourth = builder.build([pods[0], pods[2]]).workloads
    assert all(a is not b for a, b in zip(third, fourth, strict=True))
    assert [dict(w.named_ports) for w in fourth] == [{"web": 8080}] * 2
