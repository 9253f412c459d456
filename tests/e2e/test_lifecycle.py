"""The mesh's life cycle as a user sees it: bad manifests, crashes, restarts, edits, scaling.

These tests start, kill and restart `gossamer up` themselves, so they use their own
meshes (own --state-dir, own run dir, own ingress port), never the shared `bookinfo`
one. Only one mesh can exist on the machine at a time (one gsm0 bridge): every mesh
here is brought down before the next one starts.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gossamer.cli.client import ApiClient
from gossamer.runtime.linux import proc_start_time, same_process_alive
from tests.e2e.mesh import (
    REPO,
    Mesh,
    free_port,
    leftovers,
    own_mesh,
    skip_without_root,
    stop_shared_bookinfo,
    wait_until,
)

pytestmark = pytest.mark.e2e

RUN_DIR = Path("/run/gsm-e2e-life")
CURL = REPO / "samples/curl"

# Answers every GET with its pod name (HOSTNAME), so a client can tell the replicas apart.
ECHO_PY = """\
import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["HOSTNAME"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("", 8000), Handler).serve_forever()
"""


def service(name: str, port: int = 8000) -> str:
    return (
        f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n"
        f"  ports:\n  - port: {port}\n    name: http\n  selector:\n    app: {name}\n"
    )


def deployment(
    name: str,
    command: list[str],
    *,
    replicas: int = 1,
    port: int | None = 8000,
    annotations: dict[str, str] | None = None,
    version: str = "v1",
) -> str:
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name, "version": version},
                    **({"annotations": annotations} if annotations else {}),
                },
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": name,
                            "image": "python:3",
                            "command": command,
                            **({"ports": [{"containerPort": port}]} if port else {}),
                            **({"readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1}} if port else {}),
                        }
                    ],
                },
            },
        },
    }
    return yaml.safe_dump(doc, sort_keys=False)


def header_vs(name: str, host: str, value: str) -> str:
    """A VirtualService that sets response header x-route: VALUE (and x-route: jason for `end-user: jason`)."""
    return (
        f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\nspec:\n"
        f"  hosts: [{host}]\n  http:\n"
        f"  - match:\n    - headers:\n        end-user: {{exact: jason}}\n"
        f"    route:\n    - destination: {{host: {host}}}\n"
        f"      headers:\n        response:\n          set: {{x-route: jason}}\n"
        f"  - route:\n    - destination: {{host: {host}}}\n"
        f"      headers:\n        response:\n          set: {{x-route: {value}}}\n"
    )


def write_app(folder: Path, replicas: int = 1) -> Path:
    """`web`: the echo app behind a Service; returns the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "echo.py").write_text(ECHO_PY)
    manifest = folder / "web.yaml"
    manifest.write_text(service("web") + "---\n" + deployment("web", ["python3", "echo.py"], replicas=replicas))
    return manifest


# -- helpers ----------------------------------------------------------------------------
def new_mesh(tmp: Path) -> Mesh:
    return Mesh(state_dir=tmp / "state", run_dir=RUN_DIR, ingress_port=free_port())


def up(mesh: Mesh, *paths: Path | str) -> None:
    mesh.cli("up", *[str(p) for p in paths], "--detach", "--ingress-port", str(mesh.ingress_port), timeout=180)


def down(mesh: Mesh) -> None:
    mesh.cli("down", check=False, timeout=120)


def up_pid(mesh: Mesh) -> int:
    """The supervisor's pid (`gossamer up`), as it recorded itself."""
    pid = int((mesh.state_dir / "up.pid").read_text().strip())
    record = json.loads((mesh.state_dir / "processes.json").read_text())
    assert record["supervisor"]["pid"] == pid
    return pid


def mesh_processes(mesh: Mesh) -> dict[int, int | None]:
    """PID -> start time of every process in every pod netns (apps, Envoys, the gateway)."""
    out: dict[int, int | None] = {}
    for pod in mesh.status()["pods"]:
        pids = subprocess.run(["ip", "netns", "pids", pod["netns"]], capture_output=True, text=True).stdout
        for pid in (int(p) for p in pids.split()):
            out[pid] = proc_start_time(pid)
    return out


def alive(processes: dict[int, int | None]) -> list[int]:
    return [pid for pid, start in processes.items() if same_process_alive(pid, start)]


def kill_up(mesh: Mesh) -> tuple[int, dict[int, int | None], list[str]]:
    """SIGKILL the detached `up` (the supervisor); returns its pid, the pod processes and pod netns names."""
    pid = up_pid(mesh)
    procs = mesh_processes(mesh)
    netns = [p["netns"] for p in mesh.status()["pods"]]
    assert procs and netns
    start = proc_start_time(pid)
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not same_process_alive(pid, start), timeout=10)
    return pid, procs, netns


def netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def curl(mesh: Mesh, url: str, *headers: str) -> subprocess.CompletedProcess[str]:
    """curl from the meshed curl pod: prints the response headers and body."""
    args = ["curl", "-sS", "--max-time", "5", "-D", "-"]
    for h in headers:
        args += ["-H", h]
    return mesh.exec("deploy/curl", *args, url, check=False)


def route_header(mesh: Mesh, url: str, *headers: str) -> str | None:
    m = re.search(r"^x-route: *(\S+)", curl(mesh, url, *headers).stdout, re.MULTILINE | re.IGNORECASE)
    return m.group(1) if m else None


def ready_pods(mesh: Mesh, deployment: str) -> list[dict[str, object]]:
    return [
        p for p in mesh.status()["pods"] if p["deployment"] == deployment and p["ready"] and p["phase"] == "Running"
    ]


# -- 1. invalid manifest ---------------------------------------------------------------------
@pytest.fixture
def root() -> None:
    skip_without_root()


def test_up_with_an_invalid_manifest_fails_with_file_and_line_and_creates_nothing(root: None, tmp_path: Path) -> None:
    stop_shared_bookinfo()
    mesh = new_mesh(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        service("web")
        + "---\n"
        + deployment("web", ["python3", "-m", "http.server", "8000"])
        + "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: web\n"
        "spec:\n  hosts: [web]\n  http:\n  - route:\n    - destination: {host: web}\n"
        "      weight: 60\n    - destination: {host: web}\n      weight: 30\n"
    )
    try:
        for args in (
            ["up", str(bad), "--ingress-port", str(mesh.ingress_port)],
            ["up", str(bad), "--detach", "--ingress-port", str(mesh.ingress_port)],
        ):
            proc = mesh.cli(*args, check=False, timeout=60)
            assert proc.returncode != 0, proc.stdout
            output = proc.stdout + proc.stderr
            assert re.search(
                rf"{re.escape(str(bad))}:\d+: VirtualService/web: spec\.http\[0\]\.route\S*: .*100", output
            ), output
            assert "Mesh ready" not in output
            assert leftovers() == []
            assert not ApiClient(mesh.run_dir / "api.sock", timeout=2).alive()
            assert not (mesh.state_dir / "up.pid").exists()
            assert not (mesh.state_dir / "runtime" / "runtime.json").exists()
    finally:
        down(mesh)
    assert leftovers() == []


# -- 2 + 3. a killed `up` --------------------------------------------------------------------
def test_killed_up_leaves_the_mesh_serving_the_next_up_adopts_it_and_down_cleans_it(root: None, tmp_path: Path) -> None:
    app = write_app(tmp_path / "app")
    vs = tmp_path / "vs.yaml"
    vs.write_text(header_vs("web-routes", "web", "default"))
    with own_mesh(RUN_DIR, tmp_path / "state", CURL, app) as mesh:
        mesh.apply(vs)
        assert route_header(mesh, "http://web:8000/", "end-user: jason") == "jason"
        before = mesh.status()

        # SIGKILL `up` (the supervisor): the control plane, the runtime and every pod go on.
        first_pid, first_procs, first_netns = kill_up(mesh)
        assert sorted(alive(first_procs)) == sorted(first_procs), "pod processes died with the supervisor"
        assert route_header(mesh, "http://web:8000/") == "default"
        # The next `up` (same state dir) adopts them: same processes, same pods, same config.
        up(mesh, CURL, app)
        assert up_pid(mesh) != first_pid
        after = mesh.status()
        for key in ("controlPlane", "runtime"):
            assert after[key]["pid"] == before[key]["pid"], key
        assert {p["name"] for p in after["pods"]} == {p["name"] for p in before["pods"]}
        assert sorted(alive(first_procs)) == sorted(first_procs)
        assert "unchanged" in mesh.cli("apply", "-f", str(vs)).stdout
        assert route_header(mesh, "http://web:8000/", "end-user: jason") == "jason"

        # SIGKILL the supervisor again: `gossamer down` alone stops everything from the state records.
        _, procs, _ = kill_up(mesh)
        proc = mesh.cli("down", timeout=120)
        assert "nothing left running" in proc.stdout
        assert leftovers() == []
        assert alive(procs) == [], "processes of the mesh survived `gossamer down`"
        for key in ("controlPlane", "runtime"):
            assert not same_process_alive(after[key]["pid"], None), key
        assert not (mesh.state_dir / "runtime" / "runtime.json").exists()
        assert [n for n in first_netns if netns_exists(n)] == []
        assert mesh.cli("status", check=False).returncode != 0


# -- 4-8: one small mesh ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mesh, Path]]:
    """curl + web (3 replicas of the echo app) + plain (no sidecar) + a watched VirtualService file."""
    tmp = tmp_path_factory.mktemp("lifecycle")
    write_app(tmp / "app", replicas=3)
    plain = tmp / "app" / "plain.yaml"
    plain.write_text(
        service("plain")
        + "---\n"
        + deployment(
            "plain", ["python3", "-m", "http.server", "8000"], annotations={"sidecar.istio.io/inject": "false"}
        )
    )
    vs = tmp / "routes" / "vs.yaml"
    vs.parent.mkdir()
    vs.write_text(header_vs("web-routes", "web", "one"))
    with own_mesh(RUN_DIR, tmp / "state", CURL, tmp / "app", vs) as mesh:
        yield mesh, tmp


def test_an_edited_manifest_is_reapplied_and_an_invalid_edit_changes_nothing(small: tuple[Mesh, Path]) -> None:
    mesh, tmp = small
    vs = tmp / "routes" / "vs.yaml"
    assert route_header(mesh, "http://web:8000/") == "one"

    vs.write_text(header_vs("web-routes", "web", "two"))
    started = time.monotonic()
    assert wait_until(lambda: route_header(mesh, "http://web:8000/") == "two", timeout=2.5, interval=0.05)
    assert time.monotonic() - started < 3
    assert route_header(mesh, "http://web:8000/", "end-user: jason") == "jason"

    log = mesh.state_dir / "up.log"
    before = log.read_text()
    vs.write_text(header_vs("web-routes", "web", "three").replace("hosts: [web]", "hosts: [web]\n  htp: []"))
    assert wait_until(lambda: len(log.read_text()) > len(before), timeout=3)
    new = log.read_text()[len(before) :]
    assert re.search(rf"{re.escape(str(vs))}:\d+: VirtualService/web-routes: spec: unknown field 'htp'", new), new
    time.sleep(0.5)
    assert route_header(mesh, "http://web:8000/") == "two"
    got = yaml.safe_load(mesh.cli("get", "vs", "web-routes", "-o", "yaml").stdout)
    assert "htp" not in got["spec"]

    vs.write_text(header_vs("web-routes", "web", "one"))  # fixed again: applied
    assert wait_until(lambda: route_header(mesh, "http://web:8000/") == "one", timeout=2.5, interval=0.05)


def test_get_kinds_aliases_and_yaml(small: tuple[Mesh, Path]) -> None:
    mesh, _ = small
    for kind in ("vs", "virtualservices", "VirtualService", "virtualservices.networking.istio.io"):
        assert "web-routes" in mesh.cli("get", kind).stdout, kind
    pods = mesh.cli("get", "po").stdout
    assert re.search(r"\bcurl-\S+\s+2/2\s+Running", pods), pods
    assert re.search(r"\bplain-\S+\s+1/1\s+Running", pods), pods
    assert "istio-ingressgateway" in mesh.cli("get", "svc", "-n", "istio-system").stdout
    assert "istio-ingressgateway" not in mesh.cli("get", "svc").stdout
    assert "istio-ingressgateway" in mesh.cli("get", "pods", "-A").stdout

    doc = yaml.safe_load(mesh.cli("get", "vs", "web-routes", "-o", "yaml").stdout)
    assert doc["apiVersion"] == "networking.istio.io/v1" and doc["kind"] == "VirtualService"
    assert doc["metadata"]["name"] == "web-routes" and doc["metadata"]["resourceVersion"]
    listed = yaml.safe_load(mesh.cli("get", "svc", "-o", "yaml").stdout)
    assert {i["metadata"]["name"] for i in listed["items"]} >= {"web", "curl", "plain"}
    as_json = json.loads(mesh.cli("get", "deploy", "web", "-o", "json").stdout)
    assert as_json["kind"] == "Deployment" and as_json["spec"]["replicas"] == 3

    # -o yaml round-trips: applying it back is accepted and changes nothing.
    out = mesh.cli("get", "vs", "web-routes", "-o", "yaml").stdout
    proc = mesh.cli("apply", "-f", "-", stdin=out)
    assert "virtualservice/web-routes unchanged" in proc.stdout, proc.stdout + proc.stderr

    for bad in ("nosuchkind", "virtualservice2"):
        proc = mesh.cli("get", bad, check=False)
        assert proc.returncode != 0
        assert f"unknown resource type '{bad}'" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    proc = mesh.cli("get", "vs", "no-such-vs", check=False)
    assert proc.returncode != 0 and "not found" in proc.stderr, proc.stderr


def test_a_pod_without_sidecar_is_reachable_from_meshed_clients(small: tuple[Mesh, Path]) -> None:
    mesh, _ = small
    plain = [p for p in mesh.status()["pods"] if p["deployment"] == "plain"]
    assert len(plain) == 1 and plain[0]["hasSidecar"] is False and plain[0]["ready"], plain
    # The pods table's last column, SIDECAR, says "-" for it.
    assert re.search(r"\bplain-\S+\s.*\s-\s*$", mesh.cli("status").stdout, re.MULTILINE)
    assert not [p for p in mesh.status()["proxies"] if "plain-" in p["nodeId"]]

    rules = mesh.root_exec("deploy/plain", "iptables-save").stdout
    assert "ISTIO" not in rules, rules
    assert "ISTIO_OUTPUT" in mesh.root_exec("deploy/curl", "iptables-save").stdout  # the meshed one is captured

    for _ in range(3):
        proc = mesh.exec(
            "deploy/curl",
            "curl",
            "-sS",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://plain:8000/",
            check=False,
        )
        assert proc.stdout == "200", proc.stdout + proc.stderr


def test_a_crashing_app_is_restarted_with_backoff(small: tuple[Mesh, Path]) -> None:
    mesh, tmp = small
    crasher = tmp / "crasher.yaml"  # applied, not given to `up`
    crasher.write_text(deployment("crasher", ["sh", "-c", "echo starting; sleep 1; exit 3"], port=None))
    mesh.apply(crasher, wait=False)
    try:

        def restarts() -> int:
            return sum(int(p["restarts"]) for p in mesh.status()["pods"] if p["deployment"] == "crasher")

        assert wait_until(lambda: restarts() >= 2, timeout=15, interval=0.3)
        pods = mesh.cli("get", "pods").stdout
        row = next(line for line in pods.splitlines() if "crasher-" in line)
        assert int(row.split()[4]) >= 2, pods
        log = mesh.cli("logs", "deploy/crasher", check=False).stdout
        if log:  # the pod may be between restarts (not ready) when we ask
            assert "exited (code 3)" in log
        # back-off: after n restarts the waits 0.5, 1, 2, ... s add up, so restarts stay few
        time.sleep(2)
        assert restarts() <= 6, restarts()
    finally:
        mesh.delete(crasher)
    assert wait_until(lambda: not [p for p in mesh.status()["pods"] if p["deployment"] == "crasher"], timeout=10)


def test_replicas_all_get_traffic_and_scaling_down_keeps_it_flowing(small: tuple[Mesh, Path]) -> None:
    mesh, tmp = small
    assert len(ready_pods(mesh, "web")) == 3
    names = {str(p["name"]) for p in ready_pods(mesh, "web")}

    def hits(n: int) -> collections.Counter[str]:
        script = f"for i in $(seq {n}); do curl -sS --max-time 5 http://web:8000/; echo; done"
        out = mesh.exec("deploy/curl", "sh", "-c", script).stdout
        return collections.Counter(line for line in out.splitlines() if line)

    # Envoy's default balancer picks at random between equally loaded hosts: 60 requests make a pod with
    # fewer than 5 about a one-in-a-million event (with 30 it failed CI once: 17, 9, 4).
    seen = hits(60)
    assert set(seen) == names, seen
    assert min(seen.values()) >= 5, seen

    # Same template (same folder, so same working directory): only replicas change, no rolling update.
    scaled = tmp / "app" / "web.yaml"
    scaled.write_text(service("web") + "---\n" + deployment("web", ["python3", "echo.py"], replicas=1))
    mesh.apply(scaled)
    assert wait_until(lambda: len([p for p in mesh.status()["pods"] if p["deployment"] == "web"]) == 1, timeout=15)
    left = ready_pods(mesh, "web")
    assert len(left) == 1 and left[0]["name"] in names, left
    assert wait_until(lambda: set(hits(5)) == {left[0]["name"]}, timeout=5, interval=0.2)
    assert hits(10) == {left[0]["name"]: 10}
