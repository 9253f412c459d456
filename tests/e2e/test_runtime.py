"""LocalRuntime end to end: real network namespaces, veths, the gsm0 bridge, processes, iptables."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gossamer.mesh import PROXY_GROUP
from gossamer.runtime.linux import same_process_alive
from gossamer.runtime.local import LocalRuntime, cleanup_leftovers
from gossamer.runtime.sandbox import app_uid, proxy_uid
from gossamer.runtime.types import ContainerSpec, DeploymentSpec, ServiceAddress

from .test_runtime_support import (
    eventually,
    gsm_netns,
    http_server_deployment,
    in_pod,
    requires_root_netns,
    sh,
    short_run_dir,
)

pytestmark = [pytest.mark.e2e, requires_root_netns]


class Env:
    def __init__(self, rt: LocalRuntime, state_dir: Path, run_dir: Path) -> None:
        self.rt = rt
        self.state_dir = state_dir
        self.run_dir = run_dir
        self.changes = 0
        self.netns_seen: set[str] = set()
        self.pids_seen: set[tuple[int, int | None]] = set()

    def remember(self) -> None:
        """Note every netns / process created so far, to check they are all gone later."""
        data = self.rt._record.data
        self.netns_seen |= set(data["netns"])
        self.pids_seen |= {(p["pid"], p["start"]) for p in data["processes"]}


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    run_dir = short_run_dir()
    holder: list[Env] = []

    def changed() -> None:
        holder[0].changes += 1

    rt = LocalRuntime(state_dir=tmp_path / "state", run_dir=run_dir, xds_socket=run_dir / "xds.sock", on_change=changed)
    e = Env(rt, tmp_path / "state", run_dir)
    holder.append(e)
    await rt.start()
    try:
        yield e
    finally:
        e.remember()
        await rt.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    # Everything is gone.
    assert not Path("/sys/class/net/gsm0").exists()
    assert not (e.netns_seen & gsm_netns())
    for ns in e.netns_seen:
        assert not Path("/etc/netns", ns).exists()
        assert not Path("/sys/class/net", "gsmv" + ns.removeprefix("gsm-")).exists()
    for pid, start in e.pids_seen:
        assert not same_process_alive(pid, start), f"process {pid} survived stop()"
    assert not (e.state_dir / "runtime.json").exists()


def ready_pods(rt: LocalRuntime, deployment: str) -> list[Any]:
    return [p for p in rt.pods() if p.deployment == deployment and p.ready]


async def test_pods_network_probes_and_names(env: Env) -> None:
    rt = env.rt
    services = [
        ServiceAddress("alpha", "default", "10.96.0.10"),
        ServiceAddress("beta", "default", "10.96.0.11"),
        ServiceAddress("gamma", "other", "10.96.0.12"),
    ]
    await rt.apply(
        [http_server_deployment("alpha", 8000, replicas=2), http_server_deployment("beta", 8001, probe="tcp")],
        services,
    )
    await eventually(
        lambda: len(ready_pods(rt, "alpha")) == 2 and len(ready_pods(rt, "beta")) == 1, what="3 ready pods"
    )
    env.remember()
    assert env.changes > 0
    pods = rt.pods()
    assert len(pods) == 3
    ips = {p.ip for p in pods}
    assert len(ips) == 3 and all(ip.startswith("10.244.") for ip in ips)
    for p in pods:
        assert p.phase == "Running" and p.proxy_ready and not p.has_sidecar
        name_parts = p.name.rsplit("-", 2)
        assert name_parts[0] == p.deployment and len(name_parts[1]) == 10 and len(name_parts[2]) == 5

    alpha = rt.pod("deploy/alpha")
    beta = rt.pod("deploy/beta")
    assert rt.pod(alpha.name).ip == alpha.ip
    with pytest.raises(KeyError):
        rt.pod("deploy/nope")
    ns_a = rt.netns_name(alpha.name, "default")

    # Pod-to-pod over the bridge.
    r = in_pod(ns_a, "curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", f"http://{beta.ip}:8001/")
    assert r.stdout == "200", r
    # The host reaches pods too (bridge address 10.244.0.1).
    assert (
        sh("curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", f"http://{alpha.ip}:8000/").stdout
        == "200"
    )

    # Pod network: no default route, service range routed to eth0.
    routes = in_pod(ns_a, "ip", "route").stdout
    assert "default" not in routes
    assert "10.96.0.0/16 dev eth0" in routes

    # Names from the hosts file.
    assert in_pod(ns_a, "getent", "hosts", "beta").stdout.split()[0] == "10.96.0.11"
    assert in_pod(ns_a, "getent", "hosts", "beta.default.svc.cluster.local").stdout.split()[0] == "10.96.0.11"
    assert in_pod(ns_a, "getent", "hosts", "gamma.other").stdout.split()[0] == "10.96.0.12"
    assert in_pod(ns_a, "getent", "hosts", "gamma").returncode != 0  # short names: own namespace only
    assert in_pod(ns_a, "getent", "hosts", alpha.name).stdout.split()[0] == alpha.ip

    # Services change: hosts files are rewritten in place (the bind mount sees it).
    await rt.apply(
        [http_server_deployment("alpha", 8000, replicas=2), http_server_deployment("beta", 8001, probe="tcp")],
        [*services, ServiceAddress("delta", "default", "10.96.0.13")],
    )
    assert in_pod(ns_a, "getent", "hosts", "delta").stdout.split()[0] == "10.96.0.13"
    assert {p.name for p in rt.pods()} == {p.name for p in pods}  # same spec: nothing recreated

    # The pod env reached the app.
    log = rt.log_path(alpha.name, "default", "alpha").read_text()
    assert f"env HOSTNAME={alpha.name} POD_IP={alpha.ip} POD_NAMESPACE=default" in log

    # Scale down one deployment and remove the other.
    ns_b = rt.netns_name(beta.name, "default")
    await rt.apply([http_server_deployment("alpha", 8000, replicas=1)], services)
    assert len(rt.pods()) == 1 and rt.pods()[0].deployment == "alpha"
    assert not Path("/run/netns", ns_b).exists()
    assert not Path("/etc/netns", ns_b).exists()


async def test_crashing_app_is_restarted(env: Env) -> None:
    rt = env.rt
    crash = DeploymentSpec(
        name="crasher",
        namespace="default",
        replicas=1,
        labels=(("app", "crasher"),),
        annotations=(),
        service_account="default",
        containers=(ContainerSpec(name="app", command=("sh", "-c", "echo boom; sleep 0.2; exit 3")),),
        inject_sidecar=False,
    )
    await rt.apply([crash], [])
    await eventually(lambda: rt.pods()[0].restarts >= 2, timeout=15, what="two restarts")
    env.remember()
    pod = rt.pods()[0]
    log = rt.log_path(pod.name, "default", "app").read_text()
    assert log.count("boom") >= 2
    assert "exited (code 3)" in log


async def test_rolling_update_starts_new_before_deleting_old(env: Env) -> None:
    rt = env.rt
    v1 = http_server_deployment("roll", 8000, env=(("VERSION", "1"),))
    await rt.apply([v1], [])
    await eventually(lambda: len(ready_pods(rt, "roll")) == 1, what="v1 ready")
    old = rt.pods()[0]
    old_ns = rt.netns_name(old.name, "default")
    env.remember()

    v2 = http_server_deployment("roll", 8000, env=(("VERSION", "2"),))
    assert v2.template_hash != v1.template_hash
    await rt.apply([v2], [])
    names = {p.name for p in rt.pods()}
    assert old.name in names and len(names) == 2  # new one started, old one still there
    env.remember()
    await eventually(
        lambda: (
            [p.name for p in rt.pods()] == [p.name for p in ready_pods(rt, "roll")]
            and len(rt.pods()) == 1
            and old.name not in {p.name for p in rt.pods()}
        ),
        what="old pod retired",
    )
    assert v2.template_hash in rt.pods()[0].name
    assert not Path("/run/netns", old_ns).exists()
    assert not Path("/etc/netns", old_ns).exists()


async def test_sidecar_pod_capture_without_xds(env: Env) -> None:
    """Envoy (the pod's proxy user) runs, cannot get config (proxy_ready False); capture rules are in place."""
    rt = env.rt
    # A bare unix socket standing in for the xDS server, with the xDS server's permissions (root and the
    # proxies' group): Envoy must dial it.
    xds = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    xds.bind(str(rt.xds_socket))
    os.chown(rt.xds_socket, 0, PROXY_GROUP)
    os.chmod(rt.xds_socket, 0o660)
    xds.listen(8)
    xds.settimeout(20)
    dialed = threading.Event()

    def accept() -> None:
        try:
            conn, _ = xds.accept()
            data = conn.recv(64)
            if data.startswith(b"PRI * HTTP/2.0"):
                dialed.set()
            conn.close()
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    try:
        await rt.apply(
            [
                http_server_deployment("meshed", 9000, inject_sidecar=True, probe="tcp"),
                http_server_deployment("plain", 8000),
            ],
            [],
        )
        await eventually(lambda: len(ready_pods(rt, "plain")) == 1, what="plain pod ready")
        meshed = next(p for p in rt.pods() if p.deployment == "meshed")
        # The probe bypasses the capture (loopback, uid 0): the app becomes ready...
        await eventually(lambda: rt.pod(meshed.name).app_ready, what="meshed app ready")
        env.remember()
        status = rt.pod(meshed.name)
        # ...but Envoy never got its configuration.
        assert status.has_sidecar and not status.proxy_ready and not status.ready
        ns = rt.netns_name(meshed.name, "default")

        await asyncio.to_thread(dialed.wait, 20)
        assert dialed.is_set(), "Envoy (the pod's proxy user) never connected to the xDS socket"

        code, body = await rt.admin_get(meshed.name, "default", "/ready")
        assert code == 503 and body.strip() != "LIVE"
        code, body = await rt.admin_get(meshed.name, "default", "/server_info")
        assert code == 200 and meshed.name in body

        # Envoy runs as the pod's proxy user; the app as the pod's app user (none of them root).
        pids = sh("ip", "netns", "pids", ns).stdout.split()
        uids = {}
        for pid in pids:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            uid = next(
                line.split()[1]
                for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("Uid:")
            )
            uids[comm] = uid
        assert uids.get("envoy") == str(proxy_uid(meshed.ip)), uids
        assert uids.get("python3") == str(app_uid(meshed.ip)), uids
        run_dir = rt.admin_socket(meshed.name, "default").parent
        st = run_dir.stat()
        assert (st.st_uid, oct(st.st_mode & 0o777)) == (proxy_uid(meshed.ip), "0o700")

        rules = in_pod(ns, "iptables-save", "-t", "nat").stdout
        assert ":ISTIO_OUTPUT" in rules and "--to-ports 15001" in rules and "--to-ports 15006" in rules

        # Outbound from the app is redirected to 15001 (nothing listens yet: refused).
        plain = rt.pod("deploy/plain")
        r = in_pod(ns, "curl", "-sS", "-m", "3", f"http://{plain.ip}:8000/")
        assert r.returncode != 0
        counted = in_pod(ns, "iptables-save", "-c", "-t", "nat").stdout
        redirect = next(line for line in counted.splitlines() if line.endswith("-j ISTIO_REDIRECT"))
        assert not redirect.startswith("[0:"), counted
        # Inbound to the app is redirected to 15006.
        plain_ns = rt.netns_name(plain.name, "default")
        r = in_pod(plain_ns, "curl", "-sS", "-m", "3", f"http://{meshed.ip}:9000/")
        assert r.returncode != 0
        counted = in_pod(ns, "iptables-save", "-c", "-t", "nat").stdout
        inbound = next(
            line
            for line in counted.splitlines()
            if line.endswith("-p tcp -j ISTIO_IN_REDIRECT") and "ISTIO_INBOUND" in line
        )
        assert not inbound.startswith("[0:"), counted
        # Plain pods have no capture rules.
        assert "ISTIO" not in in_pod(plain_ns, "iptables-save", "-t", "nat").stdout

        log = rt.log_path(meshed.name, "default", "istio-proxy")
        assert log.exists()
    finally:
        xds.close()


async def test_router_pod_runs_envoy_as_its_proxy_user_without_capture(env: Env) -> None:
    rt = env.rt
    gw = DeploymentSpec(
        name="ingressgateway",
        namespace="istio-system",
        replicas=1,
        labels=(("app", "istio-ingressgateway"), ("istio", "ingressgateway")),
        annotations=(),
        service_account="istio-ingressgateway",
        containers=(),
        proxy_type="router",
    )
    await rt.apply([gw], [])
    pod = rt.pods()[0]
    assert pod.proxy_type == "router" and pod.has_sidecar and pod.app_ready and not pod.proxy_ready
    ns = rt.netns_name(pod.name, "istio-system")

    def envoy_uid() -> str | None:
        for pid in sh("ip", "netns", "pids", ns).stdout.split():
            if Path(f"/proc/{pid}/comm").read_text().strip() == "envoy":
                return next(
                    line.split()[1]
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("Uid:")
                )
        return None

    await eventually(lambda: envoy_uid() is not None, what="router envoy running")
    env.remember()
    assert envoy_uid() == str(proxy_uid(pod.ip))  # unprivileged, as a sidecar's
    assert "ISTIO" not in in_pod(ns, "iptables-save", "-t", "nat").stdout
    bootstrap = json.loads((rt.admin_socket(pod.name, "istio-system").parent / "envoy.json").read_text())
    meta = bootstrap["node"]["metadata"]
    assert bootstrap["node"]["id"].startswith(f"router~{pod.ip}~{pod.name}.istio-system~")
    # Nothing about the host: the gateway binds in its pod, the runtime forwards the host's ports.
    assert not [k for k in meta if k.startswith(("GOSSAMER_HOST", "GOSSAMER_INGRESS"))], meta
    assert bootstrap["node"]["cluster"] == "istio-ingressgateway.istio-system"


SIGKILL_SCRIPT = """
import asyncio, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from gossamer.runtime.local import LocalRuntime
from gossamer.runtime.types import ContainerSpec, DeploymentSpec

async def main():
    rt = LocalRuntime(state_dir=Path({state!r}), run_dir=Path({run!r}), xds_socket=Path({run!r}) / "xds.sock")
    await rt.start()
    spec = DeploymentSpec(name="victim", namespace="default", replicas=2, labels=(("app", "victim"),),
                          annotations=(), service_account="default",
                          containers=(ContainerSpec(name="app", command=("sleep", "300")),))
    await rt.apply([spec], [])
    print("UP", flush=True)
    await asyncio.sleep(300)

asyncio.run(main())
"""


@pytest.mark.skipif(os.environ.get("GSM_SKIP_SIGKILL") == "1", reason="disabled")
async def test_sigkilled_runtime_leaves_pods_running_the_next_adopts_them_and_cleanup_removes_all(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    run = short_run_dir()
    repo = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGKILL_SCRIPT.format(repo=repo, state=str(state), run=str(run))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        assert line.strip() == "UP", proc.stderr.read() if proc.poll() is not None else line
        record = json.loads((state / "runtime.json").read_text())
        assert len(record["netns"]) == 2 and record["bridge"] == "gsm0"

        def recorded() -> bool:
            data = json.loads((state / "runtime.json").read_text())
            pids = [p["pid"] for e in data["pods"].values() for p in [e["proxy"], *e["containers"].values()]]
            return len(data["pods"]) == 2 and len(data["processes"]) == 4 and None not in pids

        await eventually(recorded, what="2 running pods recorded with their 2 sidecars + 2 apps")
        record = json.loads((state / "runtime.json").read_text())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # No parent-death signal: the pod processes outlive the runtime.
        await asyncio.sleep(0.5)
        assert all(same_process_alive(p["pid"], p["start"]) for p in record["processes"])

        # The next runtime adopts them: same pods, same addresses, same processes, restarts unchanged.
        adopter = LocalRuntime(state_dir=state, run_dir=run, xds_socket=run / "xds.sock")
        await adopter.start()
        try:
            pods = {(p.name, p.ip, p.restarts) for p in adopter.pods()}
            assert pods == {(e["name"], e["ip"], 0) for e in record["pods"].values()}
            assert all(same_process_alive(p["pid"], p["start"]) for p in record["processes"])
            # An adopted process that dies is restarted, as one of our own children would be.
            victim = next(iter(record["pods"].values()))
            app = victim["containers"]["app"]
            os.killpg(app["pid"], signal.SIGKILL)
            await eventually(
                lambda: any(p.name == victim["name"] and p.restarts == 1 for p in adopter.pods()),
                what="the adopted app restarted",
            )
        finally:
            # Simulate another crash: leave everything to cleanup_leftovers.
            data = adopter._record.data
            data["owner"] = {"pid": 999999999, "start": 1}
            adopter._record.save()
            for pod in adopter._pods.values():
                for t in pod._tasks:
                    t.cancel()
                for p in [c.proc for c in pod.containers] + ([pod.proxy] if pod.proxy else []):
                    p._stopping = True
                    if p._task:
                        p._task.cancel()
        record = json.loads((state / "runtime.json").read_text())
        assert cleanup_leftovers(state) is True
        assert not Path("/sys/class/net/gsm0").exists()
        assert not Path("/run/netns/gsm-host").exists()
        for ns in record["netns"]:
            assert not Path("/run/netns", ns).exists()
            assert not Path("/etc/netns", ns).exists()
        for veth in record["veths"]:
            assert not Path("/sys/class/net", veth).exists()
        deadline = time.monotonic() + 5
        for p in record["processes"]:
            while same_process_alive(p["pid"], p["start"]) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert not same_process_alive(p["pid"], p["start"]), p
        assert not (state / "runtime.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cleanup_leftovers(state, force=True)
        shutil.rmtree(run, ignore_errors=True)


async def test_start_cleans_previous_crash(tmp_path: Path) -> None:
    """start() removes what a crashed run recorded and cannot adopt, then works normally."""
    state = tmp_path / "state"
    run = short_run_dir()
    try:
        crashed = LocalRuntime(state_dir=state, run_dir=run, xds_socket=run / "xds.sock")
        await crashed.start()
        await crashed.apply([http_server_deployment("leftover", 8000)], [])
        leftover_ns = crashed.netns_name(crashed.pods()[0].name, "default")
        # Simulate a crash: forget the object without stop(); pretend its owner died.
        data = crashed._record.data
        data["owner"] = {"pid": 999999999, "start": 1}
        crashed._record.save()
        # Its processes are gone, and so is its pod's network: nothing to adopt.
        for p in data["processes"]:
            os.killpg(p["pid"], signal.SIGKILL)
        sh("ip", "netns", "del", leftover_ns)
        for pod in crashed._pods.values():
            for t in pod._tasks:
                t.cancel()
            for c in pod.containers:
                c.proc._stopping = True
                if c.proc._task:
                    c.proc._task.cancel()

        fresh = LocalRuntime(state_dir=state, run_dir=run, xds_socket=run / "xds.sock")
        await fresh.start()
        try:
            assert not Path("/run/netns", leftover_ns).exists()
            await fresh.apply([http_server_deployment("fresh", 8000)], [])
            await eventually(lambda: len(ready_pods(fresh, "fresh")) == 1, what="fresh pod ready")
        finally:
            await fresh.stop()
        assert not Path("/sys/class/net/gsm0").exists()
    finally:
        cleanup_leftovers(state, force=True)
        shutil.rmtree(run, ignore_errors=True)
