"""Pods from container images (issue 12): an image with no `command` runs chrooted in its pod, as its user,
routed through the gateway like cncamp's `simple` example; an image that cannot be pulled is an apply error.
Every image here is built locally from Debian's static busybox: never a network registry."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mesh import REPO, Mesh, curl_status_body, own_mesh, wait_until
from tests.support.images import build_busybox_image, tools_missing
from tests.support.manifests import deployment, line_of, service
from tests.support.manifests import manifest as manifest_text

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(tools_missing() is not None, reason=str(tools_missing()))]

RUN_DIR = Path("/run/gsm-e2e-img")
ORIGINAL_IMAGE = "cncamp/httpserver:v1.0-metrics"  # the seed example's image: on Docker Hub, no registry here


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of samples/simple with its image built (the copy's own OCI layout)."""
    sample = tmp_path_factory.mktemp("images") / "simple"
    shutil.copytree(REPO / "samples/simple", sample, ignore=shutil.ignore_patterns("gossamer-httpserver"))
    subprocess.run([str(sample / "build-image")], check=True, capture_output=True)
    return sample


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, sample: Path) -> Iterator[Mesh]:
    """`gossamer up -n simple samples/simple`, as the README says; then the curl client in default."""
    tmp = tmp_path_factory.mktemp("images-state")
    with own_mesh(RUN_DIR, tmp / "state", sample, up_args=("-n", "simple")) as m:
        m.apply(REPO / "samples/curl")
        yield m


def test_seed_example_runs_from_its_image_through_the_gateway(mesh: Mesh, sample: Path) -> None:
    def served(body: str, header: str | None = None) -> bool:
        try:
            r = mesh.get("/", {"Host": "simple.cncamp.io"}, timeout=3)
        except OSError:  # the gateway's listener for the new Gateway is not bound yet
            return False
        return r.status == 200 and body in r.body and (header is None or header in r.headers)

    assert wait_until(lambda: served("hello from gossamer-httpserver"), 90, 0.5), mesh.cli(
        "get", "pods", "-A", check=False
    ).stdout
    metrics = mesh.get("/metrics", {"Host": "simple.cncamp.io"})
    assert metrics.status == 200 and "httpserver_up 1" in metrics.body
    # -n simple: the documents that name no namespace are there, not in default.
    pods = mesh.cli("get", "pods", "-n", "simple").stdout
    assert "Running" in pods and "simple-" in pods
    assert "simple" in mesh.cli("get", "vs", "simple", "-n", "simple").stdout
    assert mesh.cli("get", "vs", "simple", check=False).returncode != 0
    # exec and logs: -n names the pod's namespace, as kubectl's; without it the pod is looked for in default.
    inside = mesh.cli("exec", "-n", "simple", "deploy/simple", "--", "cat", "/www/healthz", check=False)
    assert inside.returncode == 0 and inside.stdout == "ok\n", inside.stdout + inside.stderr
    elsewhere = mesh.cli("exec", "deploy/simple", "--", "true", check=False)
    assert elsewhere.returncode != 0 and "not found" in elsewhere.stderr, elsewhere.stderr
    assert mesh.cli("logs", "-n", "simple", "deploy/simple", check=False).returncode == 0
    # An edit of a watched file is re-applied in the namespace `up -n` gave.
    specs = sample / "istio-specs.yaml"
    edited = specs.read_text().replace(
        "      route:\n", "      headers: {response: {set: {x-edited: up-n}}}\n      route:\n", 1
    )
    assert "x-edited" in edited
    specs.write_text(edited)
    assert wait_until(lambda: served("hello from gossamer-httpserver", "x-edited"), 30, 0.5)
    assert "x-edited" in mesh.cli("get", "vs", "simple", "-n", "simple", "-o", "yaml").stdout
    assert mesh.cli("get", "vs", "simple", check=False).returncode != 0


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
    manifest.write_text(manifest_text(service("whoami", 8080), deployment("whoami", image=ref, port=8080)))
    mesh.cli("apply", "-f", str(manifest))

    def uid() -> str:
        r = mesh.exec("deploy/curl", "curl", "-sS", "--max-time", "3", "http://whoami:8080/cgi-bin/id", check=False)
        return r.stdout.strip()

    assert wait_until(lambda: uid() == "4242", 90, 0.5), uid()
    # exec joins the container: its image's files and its USER, as kubectl exec.
    joined = mesh.exec("deploy/whoami", "sh", "-c", "id -u; cat /www/index.html")
    assert joined.stdout == "4242\nwhoami\n", joined.stdout + joined.stderr
    whoami = next(p for p in mesh.status()["pods"] if p["deployment"] == "whoami")
    assert whoami["runAs"] == [{"container": "whoami", "uid": 4242, "gid": 4242}], whoami

    broken = tmp_path / "broken.yaml"
    broken.write_text(manifest_text(deployment("broken", image=ORIGINAL_IMAGE)))
    refused = mesh.cli("apply", "-f", str(broken), check=False)
    assert refused.returncode != 0
    line = line_of(broken.read_text(), "image:")
    assert (
        f"{broken}:{line}: Deployment/broken: spec.template.spec.containers[0].image: cannot pull {ORIGINAL_IMAGE}: "
    ) in refused.stdout + refused.stderr
    assert "broken" not in mesh.cli("get", "deployments", "-A").stdout
    assert uid() == "4242"  # nothing else disturbed


def test_a_pull_that_fails_at_pod_start_backs_off_and_recovers(mesh: Mesh, tmp_path: Path) -> None:
    """The image was there at apply but is gone when the pod's containers start (imagePullPolicy:
    Always, its ConfigMap arriving later): the pod shows ErrImagePull, then ImagePullBackOff, and
    starts on the next try once the image is back, as the kubelet retries."""
    layout = tmp_path / "layout"
    ref = build_busybox_image(
        layout,
        "late",
        entrypoint=["/bin/httpd"],
        cmd=["-f", "-p", "8080", "-h", "/www"],
        files={"/www/index.html": "late but here\n"},
    )
    manifest = tmp_path / "late.yaml"
    manifest.write_text(
        manifest_text(
            service("late", 8080),
            deployment(
                "late",
                image=ref,
                port=8080,
                imagePullPolicy="Always",
                volumeMounts=[{"name": "config", "mountPath": "/config"}],
                pod={"volumes": [{"name": "config", "configMap": {"name": "late-config"}}]},
            ),
        )
    )
    mesh.cli("apply", "-f", str(manifest))  # pulled here; the pod waits for its ConfigMap
    hidden = tmp_path / "layout.away"
    layout.rename(hidden)
    config = tmp_path / "config.yaml"
    config.write_text(manifest_text({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late-config"}}))
    mesh.cli("apply", "-f", str(config))

    seen: list[str] = []

    def status() -> str:
        line = next((ln for ln in mesh.cli("get", "pods").stdout.splitlines() if "late-" in ln), "")
        state = line.split()[3] if len(line.split()) > 3 else ""
        if state and (not seen or seen[-1] != state):
            seen.append(state)
        return state

    assert wait_until(lambda: status() == "ImagePullBackOff", 60, 0.3), seen
    assert "ErrImagePull" in seen, seen
    pod = next(p for p in mesh.status()["pods"] if p["deployment"] == "late")
    assert any("ImagePullBackOff: back-off 10s" in w and f"cannot pull {ref}" in w for w in pod["waiting"]), pod
    # A runtime killed meanwhile: the next one adopts the pod still waiting for its image (no crash loop).
    old_runtime = mesh.status()["runtime"]["pid"]
    os.kill(old_runtime, signal.SIGKILL)

    def adopted() -> bool:
        try:
            runtime = mesh.status()["runtime"]
        except AssertionError:  # the control plane answers while the runtime is away; be patient
            return False
        return runtime["pid"] not in (None, old_runtime) and runtime["state"] == "Running"

    assert wait_until(adopted, 30, 0.5)
    assert wait_until(lambda: status() in ("ErrImagePull", "ImagePullBackOff"), 20, 0.3), seen
    again = next(p for p in mesh.status()["pods"] if p["deployment"] == "late")
    assert again["name"] == pod["name"] and again["restarts"] == 0 and again["waiting"], again
    hidden.rename(layout)

    def served() -> bool:
        code, body = curl_status_body(mesh, "http://late:8080/")
        return code == "200" and "late but here" in body

    assert wait_until(served, 60, 0.5), (seen, mesh.cli("get", "pods").stdout)
    assert status() == "Running"
    mesh.cli("delete", "-f", str(manifest), "-f", str(config))
