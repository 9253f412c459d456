"""Least privilege for the ingress gateway: its Envoy runs as its pod's proxy user, without capabilities,
like a sidecar, in its own network namespace; the runtime (root) forwards the host's 127.0.0.1 port to
it, and bookinfo's productpage is still served through it from the host's loopback.

On the shared bookinfo mesh (`up samples/bookinfo`, as the README says)."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gossamer.runtime.sandbox import proxy_uid
from tests.e2e.mesh import Mesh, reviews_version

pytestmark = pytest.mark.e2e


def gateway_envoy(mesh: Mesh) -> tuple[dict[str, Any], int]:
    """The ingress gateway pod (API) and the pid of the one Envoy in its network namespace."""
    pod = mesh.pod("deploy/istio-ingressgateway", "istio-system")
    pids = subprocess.run(["ip", "netns", "pids", pod["netns"]], capture_output=True, text=True).stdout.split()
    envoys = [int(p) for p in pids if Path(f"/proc/{p}/comm").read_text().strip() == "envoy"]
    assert len(envoys) == 1, (pod, pids)
    return pod, envoys[0]


def test_the_gateway_envoy_is_its_pods_proxy_user_without_capabilities(bookinfo: Mesh) -> None:
    pod, pid = gateway_envoy(bookinfo)
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    uid = str(proxy_uid(pod["ip"]))
    assert status["Uid"].split() == [uid] * 4, status["Uid"]  # real, effective, saved, filesystem
    assert status["Gid"].split() == [uid] * 4, status["Gid"]
    for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert status[caps].strip() == "0000000000000000", (caps, status[caps])
    assert status["NoNewPrivs"].strip() == "1"
    assert pod["proxyUid"] == int(uid)
    # What `ps` shows.
    ps = subprocess.run(["ps", "-o", "uid=,comm=", "-p", str(pid)], capture_output=True, text=True, check=True)
    assert ps.stdout.split() == [uid, "envoy"], ps.stdout
    # It lives in its pod's network namespace only: nothing of it is in the host's.
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{pod['netns']}").st_ino
    assert os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino  # the host's (ours)


def test_productpage_through_the_unprivileged_gateway_from_the_hosts_loopback(bookinfo: Mesh) -> None:
    resp = bookinfo.get("/productpage")
    assert resp.status == 200, resp.body[:500]
    assert "The Comedy of Errors" in resp.body and "William Shakespeare" in resp.body
    assert reviews_version(resp.body) in ("v1", "v2", "v3")
    assert resp.headers["server"] == "istio-envoy"
    # The gateway's listeners are in its pod only (none bound in the host's netns): the kernel forwarded
    # the host's port to the pod's 8080.
    out = bookinfo.cli("proxy-config", "listeners", "deploy/istio-ingressgateway", "-n", "istio-system", "-o", "json")
    addresses = {
        item["name"]: item["address"]["socketAddress"] for item in json.loads(out.stdout)["listeners"]["items"]
    }
    assert addresses == {"0.0.0.0_8080": {"address": "0.0.0.0", "portValue": 8080}}, addresses
    # The host's port is held by the runtime: no other host process can take it over from the mesh.
    with socket.socket() as s, pytest.raises(OSError) as taken:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", bookinfo.ingress_port))
        s.listen(1)
    assert taken.value.errno == errno.EADDRINUSE


PROBE = Path(__file__).parent / "loopback_probe.py"


def test_no_pod_reaches_the_hosts_loopback_through_the_bridge(bookinfo: Mesh) -> None:
    """The forwarding needs route_localnet on gsm0; it must not open the host's loopback to the pods: a
    pod with raw sockets (root in its netns) sends a TCP SYN to 127.0.0.1 through the bridge."""
    pod = bookinfo.pod("deploy/istio-ingressgateway", "istio-system")
    bridge_mac = Path("/sys/class/net/gsm0/address").read_text().strip()
    with socket.socket() as host_service:  # on every host address, 127.0.0.1 included
        host_service.bind(("0.0.0.0", 0))
        host_service.listen(8)
        port = str(host_service.getsockname()[1])

        def knock(address: str) -> str:
            argv = ("python3", str(PROBE), bridge_mac, pod["ip"], address, port)
            return bookinfo.root_exec("deploy/istio-ingressgateway", *argv, namespace="istio-system").stdout.strip()

        assert knock("10.244.0.1") == "answered"  # the probe works: the bridge's address answers it
        assert knock("127.0.0.1") == "silent"
