"""What the runtime is told to run: a pod change works out the endpoints again, not every Deployment's spec
(thousands at 1000 services, while the same pod change is being pushed to the proxies)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

import gossamer.controlplane.daemon as daemon
import gossamer.runtime.wire as wire
from gossamer.controlplane.daemon import _desired_state, _desired_state_json
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.translate.incremental import carry_over
from tests.support.offline import snapshot_from_yaml

MESH = """
apiVersion: v1
kind: Service
metadata: {name: a, namespace: default}
spec:
  selector: {app: a}
  ports: [{name: http, port: 8000}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: a, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: a}}
    spec:
      containers: [{name: app, command: [sleep, "1"], ports: [{containerPort: 8000}]}]
"""


def _endpoints(snapshot: MeshSnapshot, name: str = "a") -> str:
    desired = json.loads(_desired_state_json(snapshot, "cluster.local", True))
    return str([e for e in desired["endpoints"] if name == e["name"]])


def test_a_pod_change_works_out_only_the_endpoints_again() -> None:
    before = snapshot_from_yaml(MESH)
    first = _desired_state(before, "cluster.local", True)
    gone = next(w for w in before.workloads if w.deployment == "a")
    after = replace(before, workloads=tuple(w for w in before.workloads if w is not gone))
    second = _desired_state(after, "cluster.local", True)
    assert second["deployments"] is first["deployments"] and second["services"] is first["services"]
    assert gone.ip in _endpoints(before) and gone.ip not in _endpoints(after)
    # Another config: worked out again (and the same as from scratch).
    other = snapshot_from_yaml(MESH.replace("replicas: 2", "replicas: 3"))
    third = _desired_state(other, "cluster.local", True)
    assert third["deployments"] is not first["deployments"]
    assert [d["replicas"] for d in third["deployments"] if d["name"] == "a"] == [3]


VIRTUAL_SERVICE = """
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a]
  http: [{route: [{destination: {host: a}}], timeout: TIMEOUT}]
"""


def test_a_change_of_other_kinds_keeps_the_deployments_but_a_configmap_does_not() -> None:
    first = _desired_state(snapshot_from_yaml(MESH + VIRTUAL_SERVICE.replace("TIMEOUT", "1s")), "cluster.local", True)
    # A VirtualService changed (a snapshot of other resources, the Deployments parsed again): nothing a pod runs.
    routed = snapshot_from_yaml(MESH + VIRTUAL_SERVICE.replace("TIMEOUT", "2s"))
    second = _desired_state(routed, "cluster.local", True)
    assert second["deployments"] is first["deployments"] and second["services"] is first["services"]
    # A ConfigMap (the mesh config: holdApplicationUntilProxyStarts) is something a pod is made of.
    mesh = """
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    defaultConfig: {holdApplicationUntilProxyStarts: true}
"""
    third = _desired_state(
        snapshot_from_yaml(MESH + VIRTUAL_SERVICE.replace("TIMEOUT", "2s") + mesh), "cluster.local", True
    )
    assert third["deployments"] is not first["deployments"]
    held = {d["name"]: d["hold_application_until_proxy_starts"] for d in third["deployments"]}
    assert held["a"] is True
    assert {d["name"]: d["hold_application_until_proxy_starts"] for d in first["deployments"]}["a"] is False


def test_a_pod_change_encodes_only_its_services_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kube-proxy endpoints of the services whose pods stayed are the JSON of the last time (at 1000 services
    encoding all of them took ~10 ms of the GIL while the pod change was pushed to every proxy)."""
    encoded: list[str] = []
    to_json = wire.endpoints_to_json

    def counted(endpoints: list[Any]) -> list[Any]:
        encoded.append(endpoints[0].name)  # (one service's ports per call)
        return to_json(endpoints)

    monkeypatch.setattr(daemon, "endpoints_to_json", counted)
    before = snapshot_from_yaml(MESH + "---\n" + MESH.replace("{name: a,", "{name: b,").replace("{app: a}", "{app: b}"))
    whole = json.loads(_desired_state_json(before, "cluster.local", True))["endpoints"]
    assert sorted(encoded) == ["a", "b", "istio-ingressgateway"]
    encoded.clear()
    gone = next(w for w in before.workloads if w.deployment == "b")
    after = replace(before, workloads=tuple(w for w in before.workloads if w is not gone))
    carry_over(before, after, set())  # as the pusher's push of the pod change leaves it (the same snapshot)
    endpoints = json.loads(_desired_state_json(after, "cluster.local", True))["endpoints"]
    assert encoded == ["b"]
    by_name = {e["name"]: e for e in endpoints}
    assert {e["name"]: e for e in whole} == {**by_name, "b": whole[[e["name"] for e in whole].index("b")]}
    assert gone.ip not in str(by_name["b"]) and gone.ip in str(whole)
    assert json.loads(_desired_state_json(after, "cluster.local", False))["endpoints"] is None
