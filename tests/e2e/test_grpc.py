"""gRPC end to end, on a mesh of its own (curl, grpc-echo v1/v2 and a flaky grpc-echo).

The client (samples/grpc-echo/src/client.py, grpcio, one channel for all its calls) runs in the curl
pod through `gossamer exec`; `python3` there is the Python running Gossamer (the runtime puts its
directory first on the PATH), so grpcio is importable. The Service port is named `grpc`:

* calls go client sidecar -> server sidecar over HTTP/2 and reach both versions (routed per call);
* a VirtualService weighted 100% to v2 sends every call on the one channel to v2;
* a fault abort `grpcStatus: UNAVAILABLE` ends every call with StatusCode.UNAVAILABLE;
* against a server failing every second call with UNAVAILABLE, `retries: {attempts: 5, retryOn:
  unavailable}` hides the failures and `attempts: 0` shows them;
* `gossamer proxy-config clusters` shows the grpc-echo cluster with HTTP/2 protocol options.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mesh import ACCESS_LOGGING, REPO, Applied, Mesh, applying, own_mesh, wait_until

pytestmark = pytest.mark.e2e

CURL = REPO / "samples" / "curl"
GRPC_ECHO = REPO / "samples" / "grpc-echo"
SERVER = GRPC_ECHO / "src" / "grpc_echo.py"
CLIENT = GRPC_ECHO / "src" / "client.py"
NETWORKING = GRPC_ECHO / "networking"
DESTINATION_RULE = NETWORKING / "destination-rule-all.yaml"
ALL_V2 = NETWORKING / "virtual-service-all-v2.yaml"
ABORT = NETWORKING / "virtual-service-abort-unavailable.yaml"
RUN_DIR = Path("/run/gsm-e2e-grpc")
CLUSTER = "outbound|7070||grpc-echo.default.svc.cluster.local"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

# A third grpc-echo that fails every second call with UNAVAILABLE (FAIL_RATE spreads failures evenly).
FLAKY = f"""
apiVersion: v1
kind: Service
metadata: {{name: grpc-flaky, labels: {{app: grpc-flaky}}}}
spec:
  ports:
  - {{name: grpc, port: 7070}}
  selector: {{app: grpc-flaky}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: grpc-flaky}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: grpc-flaky}}}}
  template:
    metadata: {{labels: {{app: grpc-flaky, version: v1}}}}
    spec:
      containers:
      - name: grpc-flaky
        image: python:3.11
        command: ["python3", "{SERVER}"]
        env:
        - {{name: PORT, value: "7070"}}
        - {{name: SERVICE_VERSION, value: flaky}}
        - {{name: FAIL_CODE, value: UNAVAILABLE}}
        - {{name: FAIL_RATE, value: "0.5"}}
        ports: [{{containerPort: 7070}}]
        readinessProbe: {{tcpSocket: {{port: 7070}}, periodSeconds: 1}}
"""


def flaky_retries(attempts: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: grpc-flaky}}
spec:
  hosts: [grpc-flaky]
  http:
  - route:
    - destination: {{host: grpc-flaky}}
    retries: {{attempts: {attempts}, retryOn: unavailable}}
"""


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gsm-e2e-grpc")


@pytest.fixture(scope="module")
def mesh(tmp: Path) -> Iterator[Mesh]:
    config = tmp / "config"
    config.mkdir()
    (config / "flaky.yaml").write_text(FLAKY)
    try:
        with own_mesh(RUN_DIR, tmp / "state", CURL, GRPC_ECHO, config / "flaky.yaml", ACCESS_LOGGING) as m:
            yield m
    finally:
        shutil.rmtree(config, ignore_errors=True)


@pytest.fixture
def applied(mesh: Mesh, tmp_path: Path) -> Iterator[Applied]:
    """Files a test applies; deleted after it, so every test starts from the samples alone."""
    with applying(mesh, tmp_path) as a:
        yield a


def call(mesh: Mesh, target: str, n: int, *extra: str) -> list[str]:
    """One client process, one channel, n calls: the reply or the status code name of each."""
    proc = mesh.exec("deploy/curl", "python3", str(CLIENT), target, "--count", str(n), *extra, check=False)
    lines = proc.stdout.splitlines()
    assert len(lines) == n, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return lines


def calls_until(mesh: Mesh, target: str, n: int, want: Counter[str], timeout: float = 10) -> Counter[str]:
    last: list[Counter[str]] = []

    def ok() -> bool:
        last.append(Counter(call(mesh, target, n)))
        return last[-1] == want

    assert wait_until(ok, timeout=timeout, interval=0.2), last[-1]
    return last[-1]


def test_calls_go_through_both_sidecars_and_reach_both_versions(mesh: Mesh) -> None:
    lines = call(mesh, "grpc-echo:7070", 20, "--metadata", "echo-user=jason")
    assert set(lines) == {"v1 hello echo-user=jason", "v2 hello echo-user=jason"}, lines
    # Balanced per call on one channel (one HTTP/2 connection), not per connection: both versions,
    # about evenly (least request picks between two idle hosts at random; < 3 of 20 is 1 in 2500).
    assert min(Counter(lines).values()) >= 3, Counter(lines)
    # Both sidecars logged the calls as HTTP/2 requests.
    for ref in ("deploy/curl", "deploy/grpc-echo-v1", "deploy/grpc-echo-v2"):
        assert wait_until(
            lambda ref=ref: '"POST /echo.Echo/Say HTTP/2" 200' in mesh.cli("logs", ref, "-c", "istio-proxy").stdout,
            timeout=5,
            interval=0.2,
        ), mesh.cli("logs", ref, "-c", "istio-proxy").stdout[-2000:]


def test_weighted_route_sends_every_call_on_one_channel_to_v2(mesh: Mesh, applied: Applied) -> None:
    applied(DESTINATION_RULE, ALL_V2)
    calls_until(mesh, "grpc-echo:7070", 30, Counter({"v2 hello": 30}))


def test_fault_abort_grpc_status(mesh: Mesh, applied: Applied) -> None:
    applied(ABORT)
    calls_until(mesh, "grpc-echo:7070", 10, Counter({"UNAVAILABLE": 10}))


def test_retries_on_unavailable(mesh: Mesh, applied: Applied, tmp: Path) -> None:
    retry5, retry0 = tmp / "retries-5.yaml", tmp / "retries-0.yaml"
    retry5.write_text(flaky_retries(5))
    retry0.write_text(flaky_retries(0))

    applied(retry5)
    seen = Counter(call(mesh, "grpc-flaky:7070", 40))
    assert set(seen) <= {"flaky hello", "UNAVAILABLE"}, seen
    assert seen["flaky hello"] >= 38, seen  # >= 95%: the sidecar retried the UNAVAILABLE calls

    applied(retry0)  # same VirtualService, no retries
    last: list[Counter[str]] = []

    def failures_show() -> bool:
        last.append(Counter(call(mesh, "grpc-flaky:7070", 40)))
        return 10 <= last[-1]["UNAVAILABLE"] <= 30  # every second call fails at the server: 20

    assert wait_until(failures_show, timeout=10, interval=0.2), last[-1]
    assert set(last[-1]) <= {"flaky hello", "UNAVAILABLE"}, last[-1]


def test_proxy_config_shows_http2_cluster(mesh: Mesh) -> None:
    assert CLUSTER in mesh.cli("proxy-config", "clusters", "deploy/curl").stdout
    detail = json.loads(mesh.cli("proxy-config", "clusters", "deploy/curl", "-o", "json").stdout)
    [cluster] = [c for c in detail["clusters"]["items"] if c["name"] == CLUSTER]
    options = cluster["typedExtensionProtocolOptions"][HTTP_PROTOCOL_OPTIONS]
    assert "http2ProtocolOptions" in options["explicitHttpConfig"], options
