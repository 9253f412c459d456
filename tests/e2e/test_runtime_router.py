"""The ingress-gateway trick: an Envoy running as root inside a pod netns binds a listener in the
*host* netns through SocketAddress.network_namespace_filepath (here `/proc/<our pid>/ns/net`).

Checked for a static listener and for a dynamic one delivered over LDS (file-based here; ADS takes
the same listener code path)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gossamer.agent import envoy_binary
from gossamer.runtime.linux import set_pdeathsig

from .test_runtime_support import requires_root_netns, sh, short_run_dir

pytestmark = [pytest.mark.e2e, requires_root_netns]

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listener(name: str, port: int, body: str) -> dict[str, Any]:
    return {
        "name": name,
        "address": {
            "socket_address": {
                "address": "127.0.0.1",
                "port_value": port,
                "network_namespace_filepath": f"/proc/{os.getpid()}/ns/net",
            }
        },
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": HCM,
                            "stat_prefix": name,
                            "route_config": {
                                "virtual_hosts": [
                                    {
                                        "name": "all",
                                        "domains": ["*"],
                                        "routes": [
                                            {
                                                "match": {"prefix": "/"},
                                                "direct_response": {"status": 200, "body": {"inline_string": body}},
                                            }
                                        ],
                                    }
                                ]
                            },
                            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
                        },
                    }
                ]
            }
        ],
    }


def get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:  # noqa: S310 - loopback
        return str(resp.read().decode())


def test_router_envoy_binds_listener_in_host_netns() -> None:
    netns = f"gsm-nsf{secrets.token_hex(2)}"
    work = short_run_dir()
    static_port, dynamic_port = free_port(), free_port()
    lds = work / "lds.json"
    lds.write_text(
        json.dumps(
            {
                "resources": [
                    {
                        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
                        **listener("dynamic", dynamic_port, "dynamic listener in host netns"),
                    }
                ]
            }
        )
    )
    bootstrap = {
        "node": {"id": "router~test", "cluster": "test"},
        "admin": {"address": {"pipe": {"path": str(work / "admin.sock")}}},
        "static_resources": {"listeners": [listener("static", static_port, "static listener in host netns")]},
        "dynamic_resources": {"lds_config": {"path_config_source": {"path": str(lds)}, "resource_api_version": "V3"}},
    }
    (work / "envoy.json").write_text(json.dumps(bootstrap))
    proc: subprocess.Popen[bytes] | None = None
    assert sh("ip", "netns", "add", netns).returncode == 0
    try:
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                netns,
                str(envoy_binary()),
                "-c",
                str(work / "envoy.json"),
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "-l",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(work / "envoy.log", "wb"),  # noqa: SIM115
            preexec_fn=set_pdeathsig,  # this Envoy dies with the test
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        results: dict[int, str] = {}
        while time.monotonic() < deadline and len(results) < 2:
            for port in (static_port, dynamic_port):
                try:
                    results[port] = get(port)
                except OSError:
                    pass
            time.sleep(0.1)
        log = (work / "envoy.log").read_text(errors="replace")
        assert results.get(static_port) == "static listener in host netns", log
        assert results.get(dynamic_port) == "dynamic listener in host netns", log
        # The listeners live in the host netns, not in the pod's.
        assert f":{static_port}" not in sh("ip", "netns", "exec", netns, "ss", "-ltn").stdout
        assert f":{static_port}" in sh("ss", "-ltn").stdout
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        sh("ip", "netns", "del", netns)
        shutil.rmtree(work, ignore_errors=True)
    assert not Path("/run/netns", netns).exists()
