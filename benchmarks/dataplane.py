"""Data-plane cost next to a hand-written pair of Envoys, in one run (issue 8).

Same client, same upstream (an Envoy answering 1 KB), same Envoy binary and flags
(`--concurrency 1`) everywhere; the clients run in their pods (`gossamer exec`):

  direct              client pod (no sidecar) -> upstream pod IP (no sidecar)
  pair plaintext      client -> Envoy A (client's netns) -> Envoy B (upstream's netns) -> upstream:
                      one listener and one cluster each, written by hand
  pair mTLS           the same, mTLS between A and B
  mesh default        client pod (sidecar) -> upstream Service (sidecar): auto mTLS, Istio's metrics,
                      access log and tracing at 1%, as the mesh comes
  mesh tracing off    the same with a mesh-wide Telemetry turning tracing off (what 1% tracing costs)
  mesh telemetry off  the same with a mesh-wide Telemetry turning metrics, access logs and tracing off

For each: throughput (wrk, closed loop, CONNECTIONS connections) and its ratio to the pair of the
same TLS mode; latency p50/p90/p99 at a fixed RATE req/s from a constant-rate client that counts
from each request's due time (benchmarks/openloop.py: no coordinated omission); Envoy CPU-seconds
(both Envoys of the path) and control-plane CPU-seconds per 1000 requests (over the throughput
runs); the sidecars' RSS. Paths are interleaved over REPS repetitions; medians are printed.
The machine's load average is printed too: other work on the cores shows in every number.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import REPO, running_mesh

from gossamer.agent.envoy import envoy_binary
from gossamer.cli.client import ApiClient
from tests.e2e.mesh import Mesh
from tests.support.certs import TestCA

RATE = int(os.environ.get("RATE", "1000"))
LATENCY_S = float(os.environ.get("LATENCY_SECONDS", "10"))
THROUGHPUT_S = float(os.environ.get("THROUGHPUT_SECONDS", "8"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "16"))
REPS = int(os.environ.get("REPS", "2"))
OPENLOOP = str(REPO / "benchmarks/openloop.py")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAIR_PLAIN = (15101, 15102)  # Envoy A's listener (client netns), Envoy B's (upstream netns)
PAIR_MTLS = (15111, 15112)


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def envoys_in(netns: str) -> list[int]:
    """The Envoy processes in a pod's network namespace (its sidecar)."""
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=True).stdout
    pids = []
    for pid in out.split():
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if Path(exe).name == "envoy" and "envoy.json" in Path(f"/proc/{pid}/cmdline").read_text():
            pids.append(int(pid))
    return pids


# -- the hand-written pair -------------------------------------------------------------------------


def _hcm(name: str, cluster: str) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
            "HttpConnectionManager",
            "stat_prefix": name,
            "route_config": {
                "virtual_hosts": [
                    {
                        "name": name,
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "0s"}}],
                    }
                ]
            },
            "http_filters": [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                }
            ],
        },
    }


def _tls_context(kind: str, certs: dict[str, str]) -> dict[str, Any]:
    common = {
        "tls_certificates": [
            {"certificate_chain": {"inline_string": certs["cert"]}, "private_key": {"inline_string": certs["key"]}}
        ],
        "validation_context": {"trusted_ca": {"inline_string": certs["ca"]}},
    }
    if kind == "server":
        return {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "common_tls_context": common,
                "require_client_certificate": True,
            },
        }
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": common,
        },
    }


def pair_config(
    name: str,
    listen: str,
    port: int,
    upstream: str,
    upstream_port: int,
    *,
    server_tls: dict[str, str] | None = None,
    client_tls: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One listener and one cluster: what a person writes by hand."""
    chain: dict[str, Any] = {"filters": [_hcm(name, "upstream")]}
    if server_tls is not None:
        chain["transport_socket"] = _tls_context("server", server_tls)
    cluster: dict[str, Any] = {
        "name": "upstream",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "upstream",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": upstream, "port_value": upstream_port}}
                            }
                        }
                    ]
                }
            ],
        },
    }
    if client_tls is not None:
        cluster["transport_socket"] = _tls_context("client", client_tls)
    return {
        "static_resources": {
            "listeners": [
                {
                    "name": name,
                    "address": {"socket_address": {"address": listen, "port_value": port}},
                    "filter_chains": [chain],
                }
            ],
            "clusters": [cluster],
        }
    }


@dataclass
class Pair:
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]


@contextmanager
def hand_written_pairs(client_netns: str, upstream_netns: str, upstream_ip: str) -> Iterator[dict[str, Pair]]:
    ca = TestCA("benchmark pair CA")
    server, client = ca.issue("pair-b", ("pair-b",)), ca.issue("pair-a", client=True)
    b_tls = {"cert": server.cert_pem, "key": server.key_pem, "ca": ca.cert_pem}
    a_tls = {"cert": client.cert_pem, "key": client.key_pem, "ca": ca.cert_pem}
    configs = {
        "plaintext": [
            (client_netns, pair_config("a", "127.0.0.1", PAIR_PLAIN[0], upstream_ip, PAIR_PLAIN[1])),
            (upstream_netns, pair_config("b", "0.0.0.0", PAIR_PLAIN[1], "127.0.0.1", 8000)),
        ],
        "mtls": [
            (client_netns, pair_config("a", "127.0.0.1", PAIR_MTLS[0], upstream_ip, PAIR_MTLS[1], client_tls=a_tls)),
            (upstream_netns, pair_config("b", "0.0.0.0", PAIR_MTLS[1], "127.0.0.1", 8000, server_tls=b_tls)),
        ],
    }
    pairs = {name: Pair() for name in configs}
    with tempfile.TemporaryDirectory(prefix="gsm-pair-") as tmp:
        try:
            for name, sides in configs.items():
                for i, (netns, config) in enumerate(sides):
                    path = Path(tmp) / f"{name}-{i}.json"
                    path.write_text(json.dumps(config))
                    # The sidecars' flags (gossamer/agent/envoy.py): one worker thread.
                    pairs[name].procs.append(
                        subprocess.Popen(
                            [
                                "ip",
                                "netns",
                                "exec",
                                netns,
                                str(envoy_binary()),
                                "-c",
                                str(path),
                                "--concurrency",
                                "1",
                                "--disable-hot-restart",
                                "-l",
                                "error",
                            ],
                            stdin=subprocess.DEVNULL,
                        )
                    )
            time.sleep(1.5)
            yield pairs
        finally:
            for pair in pairs.values():
                for p in pair.procs:
                    p.terminate()
                for p in pair.procs:
                    p.wait(timeout=10)


# -- clients -----------------------------------------------------------------------------------------


def wrk(mesh: Mesh, client: str, url: str) -> tuple[float, int]:
    """(requests/s, requests) closed loop."""
    out = mesh.exec(f"deploy/{client}", "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{THROUGHPUT_S:.0f}s", url).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    assert errors is None, out
    return rps, count


def openloop(mesh: Mesh, client: str, url: str) -> dict[str, float]:
    out = mesh.exec(
        f"deploy/{client}", "python3", OPENLOOP, "--url", url, "--rate", str(RATE), "--duration", str(LATENCY_S)
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert result["errors"] == 0 and set(result["codes"]) == {"200"}, result
    return result


@dataclass
class PathResult:
    rps: list[float] = field(default_factory=list)
    envoy_cpu: list[float] = field(default_factory=list)  # CPU-s per 1000 requests
    cp_cpu: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p90: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)


def measure(mesh: Mesh, out: PathResult, client: str, url: str, envoys: list[int], control_plane: int) -> None:
    before = sum(cpu_seconds(p) for p in envoys), cpu_seconds(control_plane)
    rps, count = wrk(mesh, client, url)
    after = sum(cpu_seconds(p) for p in envoys), cpu_seconds(control_plane)
    out.rps.append(rps)
    out.envoy_cpu.append((after[0] - before[0]) / count * 1000)
    out.cp_cpu.append((after[1] - before[1]) / count * 1000)
    lat = openloop(mesh, client, url)
    out.p50.append(lat["p50_ms"])
    out.p90.append(lat["p90_ms"])
    out.p99.append(lat["p99_ms"])


def main() -> None:
    with running_mesh(str(REPO / "benchmarks/dataplane")) as mesh:
        pods = {p["deployment"]: p for p in mesh.status()["pods"]}
        # The control plane's process: the one answering the API (`/v1/ready` says its pid).
        _, ready = ApiClient(mesh.run_dir / "api.sock", timeout=5).get("/v1/ready")
        control_plane = int(ready["pid"])
        plain, client_plain = pods["upstream-plain"], pods["client-plain"]
        direct_url = f"http://{plain['ip']}:8000/"
        mesh_url = "http://upstream-mesh:8000/"
        sidecars = envoys_in(pods["client-mesh"]["netns"]) + envoys_in(pods["upstream-mesh"]["netns"])
        assert len(sidecars) == 2, sidecars
        results = {
            name: PathResult()
            for name in (
                "direct",
                "pair plaintext",
                "pair mTLS",
                "mesh default",
                "mesh tracing off",
                "mesh telemetry off",
            )
        }
        load = [os.getloadavg()[0]]
        with hand_written_pairs(client_plain["netns"], plain["netns"], plain["ip"]) as pairs:
            openloop(mesh, "client-mesh", mesh_url)  # warm up: connections, certificates
            for _ in range(REPS):
                measure(mesh, results["direct"], "client-plain", direct_url, [], control_plane)
                measure(
                    mesh,
                    results["pair plaintext"],
                    "client-plain",
                    f"http://127.0.0.1:{PAIR_PLAIN[0]}/",
                    pairs["plaintext"].pids,
                    control_plane,
                )
                measure(
                    mesh,
                    results["pair mTLS"],
                    "client-plain",
                    f"http://127.0.0.1:{PAIR_MTLS[0]}/",
                    pairs["mtls"].pids,
                    control_plane,
                )
                measure(mesh, results["mesh default"], "client-mesh", mesh_url, sidecars, control_plane)
                load.append(os.getloadavg()[0])
            for variant in ("tracing", "telemetry"):
                mesh.apply(REPO / f"benchmarks/dataplane-extra/{variant}-off.yaml")
                time.sleep(3)  # connections on the old filter chains drain
                for _ in range(REPS):
                    measure(mesh, results[f"mesh {variant} off"], "client-mesh", mesh_url, sidecars, control_plane)
                    load.append(os.getloadavg()[0])
        rss = [rss_mb(p) for p in sidecars]

    def med(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    pair = {
        "direct": "pair plaintext",
        "pair plaintext": "pair plaintext",
        "pair mTLS": "pair mTLS",
        "mesh default": "pair mTLS",
        "mesh tracing off": "pair mTLS",
        "mesh telemetry off": "pair mTLS",
    }
    print(
        f"dataplane: 1 KB responses; throughput: wrk -t1 -c{CONNECTIONS} for {THROUGHPUT_S:.0f}s; latency: "
        f"{RATE} req/s for {LATENCY_S:.0f}s, constant rate, from each request's due time; Envoy --concurrency 1; "
        f"medians of {REPS} interleaved runs; load average {min(load):.1f}-{max(load):.1f} on "
        f"{os.cpu_count()} cores (other work shares them)"
    )
    print(
        f"  {'path':20s} {'req/s':>8s} {'vs pair':>8s} {'p50 ms':>7s} {'p90 ms':>7s} {'p99 ms':>7s} "
        f"{'Envoy CPU-s/1k':>15s} {'CP CPU-s/1k':>12s}"
    )
    for name, r in results.items():
        ratio = med(r.rps) / med(results[pair[name]].rps)
        envoy = "-" if name == "direct" else f"{med(r.envoy_cpu):.3f}"
        print(
            f"  {name:20s} {med(r.rps):8.0f} {ratio:8.2f} {med(r.p50):7.2f} {med(r.p90):7.2f} {med(r.p99):7.2f} "
            f"{envoy:>15s} {med(r.cp_cpu):12.4f}"
        )
    mesh_p = results["mesh default"]
    print(
        f"  added by the two sidecars at {RATE} req/s (mesh default vs direct): "
        f"p50 +{med(mesh_p.p50) - med(results['direct'].p50):.2f} ms, "
        f"p90 +{med(mesh_p.p90) - med(results['direct'].p90):.2f} ms, "
        f"p99 +{med(mesh_p.p99) - med(results['direct'].p99):.2f} ms"
    )
    print(f"  sidecar RSS: {', '.join(f'{x:.0f} MB' for x in rss)}")
    tracing = med(mesh_p.envoy_cpu) / med(results["mesh tracing off"].envoy_cpu) - 1
    print(f"  tracing at 1% costs the sidecars {tracing:+.0%} CPU per request (mesh default vs tracing off)")
    print(f"mesh default vs mTLS pair: throughput ratio {med(mesh_p.rps) / med(results['pair mTLS'].rps):.2f}")
    print(f"control plane: {med(mesh_p.cp_cpu):.3f} CPU-s per 1000 requests")


if __name__ == "__main__":
    main()
