"""Pods from container images (issue 12): an image with no `command` runs chrooted in its pod, as its user,
routed through the gateway like cncamp's `simple` example; an image that cannot be pulled is an apply error.
Every image here is built locally from Debian's static busybox: never a network registry."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mesh import REPO, Mesh, own_mesh, wait_until
from tests.support.images import build_busybox_image, tools_missing

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(tools_missing() is not None, reason=str(tools_missing()))]

RUN_DIR = Path("/run/gsm-e2e-img")

WHOAMI = """\
apiVersion: v1
kind: Service
metadata: {name: whoami}
spec:
  ports: [{name: http, port: 8080}]
  selector: {app: whoami}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: whoami}
spec:
  selector: {matchLabels: {app: whoami}}
  template:
    metadata: {labels: {app: whoami}}
    spec:
      containers:
      - name: whoami
        image: IMAGE
        ports: [{containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
"""

BROKEN = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken}
spec:
  selector: {matchLabels: {app: broken}}
  template:
    metadata: {labels: {app: broken}}
    spec:
      containers:
      - name: broken
        image: cncamp/httpserver:v1.0-metrics
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("images")
    with own_mesh(RUN_DIR, tmp / "state", REPO / "samples/curl") as m:
        yield m


def test_seed_example_runs_from_its_image_through_the_gateway(mesh: Mesh, tmp_path: Path) -> None:
    sample = tmp_path / "simple"
    shutil.copytree(REPO / "samples/simple", sample, ignore=shutil.ignore_patterns("gossamer-httpserver"))
    subprocess.run([str(sample / "build-image")], check=True, capture_output=True)
    applied = mesh.cli(
        "apply", "-n", "simple", "-f", str(sample / "simple.yaml"), "-f", str(sample / "istio-specs.yaml")
    )
    assert "namespace/simple created" in applied.stdout + applied.stderr

    def served() -> bool:
        try:
            r = mesh.get("/", {"Host": "simple.cncamp.io"}, timeout=3)
        except OSError:  # the gateway's listener for the new Gateway is not bound yet
            return False
        return r.status == 200 and "hello from gossamer-httpserver" in r.body

    assert wait_until(served, 90, 0.5), mesh.cli("get", "pods", "-A", check=False).stdout
    metrics = mesh.get("/metrics", {"Host": "simple.cncamp.io"})
    assert metrics.status == 200 and "httpserver_up 1" in metrics.body
    pods = mesh.cli("get", "pods", "-n", "simple").stdout
    assert "Running" in pods and "simple-" in pods


def test_image_user_is_honoured_and_an_unpullable_image_is_refused(mesh: Mesh, tmp_path: Path) -> None:
    cgi = "#!/bin/sh\necho Content-Type: text/plain\necho\nid -u\n"
    ref = build_busybox_image(
        tmp_path / "layout",
        "whoami",
        entrypoint=["/bin/httpd"],
        cmd=["-f", "-p", "8080", "-h", "/www"],
        user="app",
        passwd="root:x:0:0::/root:/bin/sh\napp:x:4242:4242::/tmp:/bin/sh\n",
        files={"/www/index.html": "whoami\n", "/www/cgi-bin/id": cgi},
    )
    manifest = tmp_path / "whoami.yaml"
    manifest.write_text(WHOAMI.replace("IMAGE", ref))
    mesh.cli("apply", "-f", str(manifest))

    def uid() -> str:
        r = mesh.exec("deploy/curl", "curl", "-sS", "--max-time", "3", "http://whoami:8080/cgi-bin/id", check=False)
        return r.stdout.strip()

    assert wait_until(lambda: uid() == "4242", 90, 0.5), uid()

    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN)
    refused = mesh.cli("apply", "-f", str(broken), check=False)
    assert refused.returncode != 0
    assert (
        f"{broken}:11: Deployment/broken: spec.template.spec.containers[0].image: "
        "cannot pull cncamp/httpserver:v1.0-metrics: "
    ) in refused.stdout + refused.stderr
    assert "broken" not in mesh.cli("get", "deployments", "-A").stdout
    assert uid() == "4242"  # nothing else disturbed
