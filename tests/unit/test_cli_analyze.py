"""`gossamer analyze` with no mesh running: validation and cross-references, offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NET = REPO / "samples/bookinfo/networking"


def analyze(tmp_path: Path, *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gossamer.cli.main", "--run-dir", str(tmp_path / "run"),
                           "--state-dir", str(tmp_path / "state"), "analyze", *map(str, paths)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)


def test_consistent_files_have_no_issues(tmp_path: Path) -> None:
    proc = analyze(tmp_path, REPO / "samples/bookinfo", NET / "destination-rule-all.yaml",
                   NET / "virtual-service-all-v1.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "No validation issues found" in proc.stdout
    assert not (tmp_path / "state").exists()  # offline: nothing started, nothing stored


def test_missing_subset_is_a_warning_with_its_line(tmp_path: Path) -> None:
    proc = analyze(tmp_path, REPO / "samples/bookinfo", NET / "virtual-service-all-v1.yaml")
    assert proc.returncode == 0
    assert (f"{NET / 'virtual-service-all-v1.yaml'}:25: warning: VirtualService/reviews: "
            "spec.http[0].route[0].destination.subset: referenced host+subset in destinationrule not found"
            ) in proc.stdout


def test_errors_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\n"
                   "spec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n"
                   "      weight: 30\n    - destination: {host: ratings}\n      weight: 30\n")
    proc = analyze(tmp_path, bad)
    assert proc.returncode == 1
    assert f"{bad}:7: VirtualService/x: spec.http[0].route" in proc.stdout
