"""Shared by the benchmarks: bring a mesh up with the CLI (one mesh per machine), percentiles."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.mesh import Mesh, free_port, machine_lock  # noqa: E402


@contextlib.contextmanager
def running_mesh(*paths: str) -> Iterator[Mesh]:
    with machine_lock(), tempfile.TemporaryDirectory(prefix="gsm-bench-") as tmp:
        mesh = Mesh(state_dir=Path(tmp) / "state", run_dir=Path("/run/gsm-bench"), ingress_port=free_port())
        try:
            mesh.cli("up", *paths, "--detach", "--ingress-port", str(mesh.ingress_port), timeout=300)
            yield mesh
        finally:
            mesh.cli("down", check=False)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
