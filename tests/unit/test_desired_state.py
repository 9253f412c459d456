"""What the runtime is told to run: a pod change works out the endpoints again, not every Deployment's spec
(thousands at 1000 services, while the same pod change is being pushed to the proxies)."""

from __future__ import annotations

from dataclasses import replace

from gossamer.controlplane.daemon import _desired_state
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


def _endpoints(desired: dict[str, object]) -> str:
    return str([e for e in desired["endpoints"] if "a" == e["name"]])  # type: ignore[attr-defined]


def test_a_pod_change_works_out_only_the_endpoints_again() -> None:
    before = snapshot_from_yaml(MESH)
    first = _desired_state(before, "cluster.local", True)
    gone = next(w for w in before.workloads if w.deployment == "a")
    after = replace(before, workloads=tuple(w for w in before.workloads if w is not gone))
    second = _desired_state(after, "cluster.local", True)
    assert second["deployments"] is first["deployments"] and second["services"] is first["services"]
    assert gone.ip in _endpoints(first) and gone.ip not in _endpoints(second)
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
