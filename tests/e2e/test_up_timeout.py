"""`gossamer up --detach --timeout`: a pod that cannot become ready is named, with why and its last log
lines; up exits 1 and leaves the mesh running for `gossamer logs`/`down`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.mesh import Mesh, free_port, leftovers, skip_without_root, stop_shared_bookinfo

pytestmark = pytest.mark.e2e

CRASHING = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: crashy}
spec:
  selector: {matchLabels: {app: crashy}}
  template:
    metadata: {labels: {app: crashy}}
    spec:
      containers:
      - name: crashy
        image: busybox
        command: ["sh", "-c", "echo missing config file /etc/crashy.conf; sleep 0.3; exit 3"]
        readinessProbe: {tcpSocket: {port: 9999}, periodSeconds: 1}
"""


def test_up_gives_up_naming_the_pod_and_why(tmp_path: Path) -> None:
    skip_without_root()
    stop_shared_bookinfo()
    manifest = tmp_path / "crashy.yaml"
    manifest.write_text(CRASHING)
    mesh = Mesh(state_dir=tmp_path / "state", run_dir=Path("/run/gsm-e2e-timeout"), ingress_port=free_port())
    try:
        up = mesh.cli(
            "up",
            str(manifest),
            "--detach",
            "--timeout",
            "15",
            "--ingress-port",
            str(mesh.ingress_port),
            check=False,
            timeout=120,
        )
        assert up.returncode == 1
        assert "mesh not ready after 15s" in up.stderr
        assert "pod default/crashy-" in up.stderr and "restarts" in up.stderr, up.stderr
        assert "missing config file /etc/crashy.conf" in up.stderr, up.stderr
        previous = mesh.cli("logs", "deploy/crashy", "--previous", check=False)
        assert "exited (code 3)" in previous.stdout, previous.stdout + previous.stderr
    finally:
        mesh.cli("down", check=False, timeout=120)
    assert leftovers() == []
