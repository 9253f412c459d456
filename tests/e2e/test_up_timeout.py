"""`gossamer up` never waits forever: a pod that cannot become ready is named, with why and its last log
lines, after `--timeout`; `up --detach` exits 1 and leaves the mesh running for `gossamer logs`/`down`,
a foreground `up` stops the mesh and exits 1. An image no registry can serve fails `up` at once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.mesh import REPO, Mesh, free_port, leftovers, skip_without_root, stop_shared_bookinfo
from tests.support.images import tools_missing
from tests.support.manifests import deployment, line_of, manifest

pytestmark = pytest.mark.e2e

ORIGINAL_IMAGE = "cncamp/httpserver:v1.0-metrics"  # the seed example's image, on Docker Hub

CRASHING = manifest(
    deployment(
        "crashy",
        command=["sh", "-c", "echo missing config file /etc/crashy.conf; sleep 0.3; exit 3"],
        readinessProbe={"tcpSocket": {"port": 9999}, "periodSeconds": 1},
    )
)


def _mesh(tmp_path: Path) -> Mesh:
    skip_without_root()
    stop_shared_bookinfo()
    return Mesh(state_dir=tmp_path / "state", run_dir=Path("/run/gsm-e2e-timeout"), ingress_port=free_port())


def test_up_detached_gives_up_naming_the_pod_and_why(tmp_path: Path) -> None:
    manifest_path = tmp_path / "crashy.yaml"
    manifest_path.write_text(CRASHING)
    mesh = _mesh(tmp_path)
    try:
        up = mesh.cli(
            "up",
            str(manifest_path),
            "--detach",
            "--timeout",
            "30",
            "--ingress-port",
            str(mesh.ingress_port),
            check=False,
            timeout=120,
        )
        assert up.returncode == 1
        assert "mesh not ready after 30s" in up.stderr
        assert "pod default/crashy-" in up.stderr and "restarts" in up.stderr, up.stderr
        assert "missing config file /etc/crashy.conf" in up.stderr, up.stderr
        # The mesh keeps running: the crashed run's output is there.
        previous = mesh.cli("logs", "deploy/crashy", "--previous", check=False)
        assert "exited (code 3)" in previous.stdout, previous.stdout + previous.stderr
    finally:
        mesh.cli("down", check=False, timeout=120)
    assert leftovers() == []


def test_up_in_the_foreground_gives_up_stops_the_mesh_and_exits_1(tmp_path: Path) -> None:
    manifest_path = tmp_path / "crashy.yaml"
    manifest_path.write_text(CRASHING)
    mesh = _mesh(tmp_path)
    try:
        up = mesh.cli(
            "up", str(manifest_path), "--timeout", "30", "--ingress-port", str(mesh.ingress_port), check=False
        )
        assert up.returncode == 1, up.stdout + up.stderr
        assert "mesh not ready after 30s; stopping it" in up.stderr
        assert "pod default/crashy-" in up.stderr and "missing config file /etc/crashy.conf" in up.stderr, up.stderr
        # Stopped: nothing runs and nothing is left on the machine.
        assert "no mesh is running" in mesh.cli("get", "pods", check=False).stderr
        assert leftovers() == []
    finally:
        mesh.cli("down", check=False, timeout=120)


@pytest.mark.skipif(tools_missing() is not None, reason=str(tools_missing()))
@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detach"])
def test_the_seed_example_with_its_original_image_fails_at_once(tmp_path: Path, detach: bool) -> None:
    """samples/simple with cncamp/httpserver:v1.0-metrics and no registry: `up` exits 1 with the pull
    error (file:line), long before its ready timeout, and starts nothing."""
    sample = tmp_path / "simple"
    shutil.copytree(REPO / "samples/simple", sample, ignore=shutil.ignore_patterns("gossamer-httpserver"))
    simple = sample / "simple.yaml"
    simple.write_text(simple.read_text().replace("oci:gossamer-httpserver:v1.0-metrics", ORIGINAL_IMAGE))
    mesh = _mesh(tmp_path)
    try:
        up = mesh.cli(
            "up",
            "-n",
            "simple",
            str(sample),
            *(["--detach"] if detach else []),
            "--ingress-port",
            str(mesh.ingress_port),
            check=False,
            timeout=90,  # its ready timeout is 300 s: this is "at once"
        )
        assert up.returncode == 1
        line = line_of(simple.read_text(), "image:")
        assert (
            f"{simple}:{line}: Deployment/simple: spec.template.spec.containers[0].image: "
            f"cannot pull {ORIGINAL_IMAGE}: "
        ) in up.stderr, up.stdout + up.stderr
        assert leftovers() == []
    finally:
        mesh.cli("down", check=False, timeout=120)
