"""Least privilege and proven identity, attacked as issue 7 measured them: an app in a pod and an
unprivileged host user try to get another identity's config or key through every socket and file
of the mesh; an app tries to undo its capture; apps run as their own users.

One mesh for the module: httpbin and curl (meshed), and `privileged`, a sidecar-less pod whose
containers ask for root (`runAsUser: 0`) and for uid 1000.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gossamer.mesh import PROXY_GROUP
from gossamer.runtime.sandbox import app_script, app_uid, default_exposed, proxy_uid
from tests.e2e.mesh import REPO, Mesh, own_mesh

pytestmark = pytest.mark.e2e

RUN_DIR = Path("/run/gsm-e2e-ident")
ATTACK = REPO / "tests/e2e/attack.py"
INTRUDER = "gsm-e2e-intruder"
LOADGEN = REPO / "benchmarks/loadgen.py"
# Workload certificates live 20 s and are renewed at half-life: a rotation every 10 s.
CERT_TTL_SECONDS = 20
CERT_ARGS = ("--workload-cert-ttl", f"{CERT_TTL_SECONDS}s", "--secret-grace-period-ratio", "0.5")

PRIVILEGED = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "privileged"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "privileged"}},
        "template": {
            "metadata": {"labels": {"app": "privileged"}, "annotations": {"sidecar.istio.io/inject": "false"}},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "containers": [
                    {
                        "name": "root",
                        "image": "busybox",
                        "command": ["sleep", "infinity"],
                        "securityContext": {"runAsUser": 0},
                    },
                    {
                        "name": "fixed",
                        "image": "busybox",
                        "command": ["sleep", "infinity"],
                        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
                    },
                ],
            },
        },
    },
}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("ident")
    (tmp / "privileged.yaml").write_text(yaml.safe_dump(PRIVILEGED, sort_keys=False))
    with own_mesh(
        RUN_DIR,
        tmp / "state",
        REPO / "samples/httpbin/httpbin.yaml",
        REPO / "samples/curl",
        tmp / "privileged.yaml",
        up_args=CERT_ARGS,
    ) as m:
        yield m


def processes(mesh: Mesh, ref: str) -> dict[str, dict[str, str]]:
    """comm (+ "#pid" when two share one) -> the Uid/Gid/CapEff/NoNewPrivs of the pod's processes."""
    netns = mesh.pod(ref)["netns"]
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()
    out: dict[str, dict[str, str]] = {}
    for pid in pids:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        except OSError:
            continue
        out[f"{comm}#{pid}" if comm in out else comm] = {
            k: fields[k].split()[0] for k in ("Uid", "Gid", "CapEff", "NoNewPrivs")
        }
    return out


def test_apps_and_envoy_run_as_users_of_their_own_pod(mesh: Mesh) -> None:
    httpbin = mesh.pod("deploy/httpbin")
    procs = processes(mesh, "deploy/httpbin")
    assert procs["python3"] == {
        "Uid": str(app_uid(httpbin["ip"])),
        "Gid": str(app_uid(httpbin["ip"])),
        "CapEff": "0000000000000000",
        "NoNewPrivs": "1",
    }, procs
    assert procs["envoy"]["Uid"] == str(proxy_uid(httpbin["ip"])), procs
    assert procs["envoy"]["CapEff"] == "0000000000000000", procs
    curl = mesh.pod("deploy/curl")
    assert proxy_uid(curl["ip"]) != proxy_uid(httpbin["ip"]) and app_uid(curl["ip"]) != app_uid(httpbin["ip"])
    # `gossamer exec` runs as the container's user too (kubectl exec).
    assert mesh.exec("deploy/curl", "id", "-u").stdout.strip() == str(app_uid(curl["ip"]))


def test_root_only_when_the_spec_says_runAsUser_0(mesh: Mesh) -> None:  # noqa: N802
    assert mesh.exec("deploy/privileged", "id", "-u").stdout.strip() == "0"  # container `root`
    fixed = mesh.cli("exec", "deploy/privileged", "-c", "fixed", "--", "sh", "-c", "id -u; id -g").stdout
    assert fixed.split() == ["1000", "1000"], fixed
    procs = [p for p in processes(mesh, "deploy/privileged").values()]
    assert sorted(p["Uid"] for p in procs) == ["0", "1000"], procs


def test_an_app_cannot_change_its_capture(mesh: Mesh) -> None:
    flush = mesh.exec("deploy/curl", "iptables", "-t", "nat", "-F", check=False)
    assert flush.returncode != 0, flush.stdout
    assert "ISTIO_OUTPUT" in mesh.root_exec("deploy/curl", "iptables-save", "-t", "nat").stdout
    # Still captured: the request leaves through curl's sidecar, which presents its mTLS identity.
    body = mesh.exec("deploy/curl", "curl", "-sS", "--max-time", "5", "http://httpbin:8000/headers").stdout
    assert "spiffe://cluster.local/ns/default/sa/curl" in json.loads(body)["headers"]["X-Forwarded-Client-Cert"]


def mesh_targets(mesh: Mesh) -> list[dict[str, Any]]:
    """Every file and socket of the mesh that holds or hands out a secret or another's config."""
    targets: list[dict[str, Any]] = [
        {"kind": "file", "path": str(mesh.state_dir / "ca" / "root-key.pem")},
        {"kind": "file", "path": str(mesh.state_dir / "store.db")},
        {"kind": "http", "path": str(mesh.run_dir / "api.sock"), "url": "/v1/status"},
        {"kind": "ads", "path": str(mesh.run_dir / "xds.sock")},
    ]
    pod_dirs = [d for d in mesh.run_dir.iterdir() if d.is_dir()]
    assert len(pod_dirs) >= 3, pod_dirs  # httpbin, curl and the ingress gateway
    for d in pod_dirs:
        if (d / "sds.sock").exists():
            targets.append({"kind": "sds", "path": str(d / "sds.sock")})
        if (d / "admin.sock").exists():
            targets.append({"kind": "http", "path": str(d / "admin.sock"), "url": "/config_dump"})
    return targets


def assert_all_denied(results: dict[str, str], targets: list[dict[str, Any]]) -> None:
    assert set(results) == {t["path"] for t in targets}
    leaked = {path: what for path, what in results.items() if not what.startswith("denied")}
    assert not leaked, leaked


def test_an_app_gets_nothing_from_the_mesh_sockets_and_files(mesh: Mesh) -> None:
    targets = mesh_targets(mesh)
    out = mesh.exec("deploy/curl", "python3", str(ATTACK), json.dumps(targets)).stdout
    assert_all_denied(json.loads(out), targets)


@pytest.fixture
def intruder() -> Iterator[tuple[int, int]]:
    """An unprivileged host user, created for the test and removed after it."""
    subprocess.run(["userdel", INTRUDER], capture_output=True)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", INTRUDER],
        check=True,
        capture_output=True,
    )
    try:
        uid = int(subprocess.run(["id", "-u", INTRUDER], check=True, capture_output=True, text=True).stdout)
        gid = int(subprocess.run(["id", "-g", INTRUDER], check=True, capture_output=True, text=True).stdout)
        yield uid, gid
    finally:
        subprocess.run(["userdel", INTRUDER], capture_output=True)


def run_as(uid: int, gid: int, argv: list[str], groups: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
    """ARGV as uid/gid with no capabilities, on the host, seeing this Python (which may live under a
    private directory) in a mount namespace of its own, as the runtime shows it to pods."""
    script = app_script(uid=uid, gid=gid, expose=default_exposed(REPO))
    if groups:
        script = script.replace("--clear-groups", "--groups " + ",".join(map(str, groups)))
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "slave", "sh", "-c", script, "attack", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_unprivileged_host_user_gets_nothing(mesh: Mesh, intruder: tuple[int, int]) -> None:
    targets = mesh_targets(mesh)
    proc = run_as(*intruder, [sys.executable, str(ATTACK), json.dumps(targets)])
    assert proc.returncode == 0, proc.stderr
    assert_all_denied(json.loads(proc.stdout), targets)


def test_another_pods_envoy_gets_only_its_own_identity(mesh: Mesh) -> None:
    """As curl's proxy user with the proxies' group (what a compromised curl sidecar could do): other
    pods' SDS and admin sockets stay shut; the control plane's xDS socket answers, but only for the
    identity curl's certificate proves: claiming the ingress gateway (its listeners, its Secret) is
    refused with nothing sent, claiming curl itself works (the control)."""
    curl = mesh.pod("deploy/curl")
    own = mesh.run_dir / curl["netns"].removeprefix("gsm-")
    others = [
        t
        for t in mesh_targets(mesh)
        if t["kind"] in ("sds", "http") and Path(t["path"]).parent != own and not t["path"].endswith("api.sock")
    ]
    assert len(others) >= 4, others  # httpbin's and the gateway's SDS and admin sockets
    xds = str(mesh.run_dir / "xds.sock")
    own_sds = str(own / "sds.sock")
    ads = [
        {"kind": "ads", "path": xds, "sds": own_sds},  # forged: the ingress gateway
        {"kind": "ads", "path": xds, "sds": own_sds, "claim": ["default", "curl"]},
    ]
    uid = proxy_uid(curl["ip"])
    proc = run_as(uid, uid, [sys.executable, str(ATTACK), json.dumps([*others, *ads])], groups=(PROXY_GROUP,))
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert_all_denied({k: v for k, v in results.items() if not k.startswith(xds)}, others)
    assert results[xds].startswith("refused: PERMISSION_DENIED"), results[xds]
    assert "proved spiffe://cluster.local/ns/default/sa/curl" in results[xds]
    control = results[f"{xds} as default/curl"]
    assert control.startswith("got: ") and "Cluster/outbound|8000||httpbin.default.svc.cluster.local" in control, (
        control
    )


def serial(mesh: Mesh, ref: str) -> tuple[str, bool]:
    """(serial of the pod's workload certificate, whether its Envoy ACKed what the agent sent)."""
    body = json.loads(mesh.cli("proxy-config", "secret", ref, "-o", "json").stdout)
    streams = body["streams"]
    return body["certificate"]["serial"], bool(streams) and all(s["ackedVersion"] == s["sentVersion"] for s in streams)


def test_certificates_rotate_under_load_without_a_failed_request(mesh: Mesh) -> None:
    """`up --workload-cert-ttl 20s --secret-grace-period-ratio 0.5`: both ends of an mTLS connection
    (and the certificate each Envoy proves itself with to the control plane) rotate several times
    while curl's pod sends 25 requests/s to httpbin; not one request fails."""
    seconds = CERT_TTL_SECONDS * 1.6
    load: dict[str, Any] = {}

    def run_load() -> None:
        out = mesh.exec(
            "deploy/curl",
            "python3",
            str(LOADGEN),
            "--url",
            "http://httpbin:8000/get",
            "--rate",
            "25",
            "--duration",
            str(seconds),
        ).stdout
        load.update(json.loads(out))

    seen: dict[str, set[str]] = {"deploy/httpbin": set(), "deploy/curl": set()}
    worker = threading.Thread(target=run_load)
    worker.start()
    while worker.is_alive():
        for ref in seen:
            seen[ref].add(serial(mesh, ref)[0])
        time.sleep(2)
    worker.join()
    assert load["errors"] == 0 and load["codes"] == {"200": load["count"]}, load
    assert load["count"] >= 25 * seconds * 0.8, load
    assert all(len(serials) >= 3 for serials in seen.values()), seen  # at least two rotations each
    for ref in seen:  # the latest certificate reached Envoy
        assert serial(mesh, ref)[1], ref
    # The proxies' control-plane connections (mTLS with rotated certificates) still serve config.
    proxies = mesh.status()["proxies"]
    assert len(proxies) == 3 and all(t["state"] == "SYNCED" for p in proxies for t in p["types"].values()), proxies
