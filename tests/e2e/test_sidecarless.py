"""kube-proxy for pods without a sidecar: service names/VIPs reach ready endpoints (iptables DNAT),
as Istio's mTLS migration task needs (`legacy` pods call httpbin.foo:8000 by name)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.mesh import REPO, Mesh, own_mesh, wait_until
from tests.e2e.test_lifecycle import ECHO_PY, deployment, service

pytestmark = pytest.mark.e2e

RUN_DIR = Path("/run/gsm-e2e-kp")


def echo_manifest(folder: Path, replicas: int) -> Path:
    path = folder / "echo.yaml"
    path.write_text(service("echo") + "---\n" + deployment("echo", ["python3", "echo.py"], replicas=replicas))
    return path


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("sidecarless")
    app = tmp / "app"
    app.mkdir()
    (app / "echo.py").write_text(ECHO_PY)
    echo_manifest(app, replicas=2)
    (app / "legacy.yaml").write_text(
        deployment("legacy", ["sleep", "infinity"], port=None, annotations={"sidecar.istio.io/inject": "false"})
    )
    with own_mesh(RUN_DIR, tmp / "state", REPO / "samples/httpbin", REPO / "samples/curl", app) as m:
        yield m


def curl(mesh: Mesh, ref: str, url: str, max_time: float = 5) -> subprocess.CompletedProcess[str]:
    return mesh.exec(ref, "curl", "-sS", "--max-time", str(max_time), "-w", "\n%{http_code}", url, check=False)


def status_of(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout.rsplit("\n", 1)[-1]


def legacy_pod(mesh: Mesh) -> dict[str, object]:
    pods = [p for p in mesh.status()["pods"] if p["deployment"] == "legacy"]
    assert len(pods) == 1 and pods[0]["hasSidecar"] is False, pods
    pod: dict[str, object] = pods[0]
    return pod


def test_a_sidecarless_pod_reaches_a_service_by_name(mesh: Mesh) -> None:
    proc = curl(mesh, "deploy/legacy", "http://httpbin:8000/get")
    assert status_of(proc) == "200", proc.stdout + proc.stderr
    rules = mesh.root_exec("deploy/legacy", "iptables-save", "-t", "nat").stdout
    assert "GSM_SERVICES" in rules and "ISTIO" not in rules, rules
    # Sidecar pods keep Istio's capture only (their Envoy routes VIP traffic).
    assert "GSM_SERVICES" not in mesh.root_exec("deploy/curl", "iptables-save").stdout


def test_requests_spread_over_the_ready_endpoints(mesh: Mesh) -> None:
    seen = set()
    for _ in range(20):
        proc = curl(mesh, "deploy/legacy", "http://echo:8000/")
        assert status_of(proc) == "200", proc.stdout + proc.stderr
        seen.add(proc.stdout.rsplit("\n", 1)[0])
    assert len(seen) == 2 and all(s.startswith("echo-") for s in seen), seen


def test_a_service_without_endpoints_refuses_quickly(mesh: Mesh, tmp_path: Path) -> None:
    before = legacy_pod(mesh)
    (tmp_path / "echo.py").write_text(ECHO_PY)
    mesh.apply(echo_manifest(tmp_path, replicas=0))
    try:

        def refused() -> bool:
            started = time.monotonic()
            proc = curl(mesh, "deploy/legacy", "http://echo:8000/", max_time=10)
            quick = time.monotonic() - started < 5
            return proc.returncode == 7 and quick and status_of(proc) == "000"

        assert wait_until(refused, timeout=10, interval=0.2)
        started = time.monotonic()
        proc = curl(mesh, "deploy/legacy", "http://echo:8000/", max_time=10)
        assert proc.returncode == 7, proc.stdout + proc.stderr  # connection refused (tcp-reset), not a hang
        assert time.monotonic() - started < 5
    finally:
        mesh.apply(echo_manifest(tmp_path, replicas=2))
    assert wait_until(lambda: status_of(curl(mesh, "deploy/legacy", "http://echo:8000/")) == "200", timeout=20)
    after = legacy_pod(mesh)  # the rules changed under the running pod
    assert (after["name"], after["restarts"]) == (before["name"], before["restarts"])


def test_the_peer_header_is_read_and_removed_before_the_app(mesh: Mesh) -> None:
    """Istio's metadata exchange: curl's sidecar tells httpbin's who calls in one header, which httpbin's
    sidecar turns into its metrics' source labels and removes, so the app never sees it. A sidecar-less
    client forging it with the separator in it is counted as `unknown`, not as what it wrote."""
    meshed = curl(mesh, "deploy/curl", "http://httpbin:8000/headers")
    assert status_of(meshed) == "200" and "peer" not in meshed.stdout.lower(), meshed.stdout
    forged = mesh.exec(
        "deploy/legacy",
        *("curl", "-sS", "-w", "\n%{http_code}", "-H", "x-istio-peer-metadata: a|b|c|d|e|f"),
        "http://httpbin:8000/headers",
        check=False,
    )
    assert status_of(forged) == "200" and "peer" not in forged.stdout.lower(), forged.stdout
    [httpbin] = [p for p in mesh.status()["pods"] if p["deployment"] == "httpbin"]

    def sources() -> set[str]:
        text = curl(mesh, "deploy/legacy", f"http://{httpbin['ip']}:15020/stats/prometheus").stdout.rsplit("\n", 1)[0]
        return {
            str(s.labels["source_workload"])
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "istio_requests_total" and s.labels["reporter"] == "destination"
        }

    assert wait_until(lambda: {"curl", "unknown"} <= sources(), timeout=10), sources()
    assert "a" not in sources()


def test_strict_mtls_refuses_the_sidecarless_client_only(mesh: Mesh, tmp_path: Path) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        "metadata:\n  name: default\n  namespace: default\nspec:\n  mtls:\n    mode: STRICT\n"
    )
    mesh.apply(strict)
    try:
        assert wait_until(
            lambda: status_of(curl(mesh, "deploy/legacy", "http://httpbin:8000/get")) == "000", timeout=10
        )
        proc = curl(mesh, "deploy/legacy", "http://httpbin:8000/get")
        assert proc.returncode != 0 and status_of(proc) == "000", proc.stdout + proc.stderr
        meshed = curl(mesh, "deploy/curl", "http://httpbin:8000/get")
        assert status_of(meshed) == "200", meshed.stdout + meshed.stderr
    finally:
        mesh.delete(strict)
    assert wait_until(lambda: status_of(curl(mesh, "deploy/legacy", "http://httpbin:8000/get")) == "200", timeout=10)
