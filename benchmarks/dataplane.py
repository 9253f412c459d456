"""Data-plane cost next to a hand-written pair of Envoys, in one run (issue 8).

Same client, same upstream (an Envoy answering 1 KB), same Envoy binary and flags
(`--concurrency 1`) everywhere; the clients run in their pods (`gossamer exec`):

  direct              client pod (no sidecar) -> upstream pod IP (no sidecar)
  pair plaintext      client -> Envoy A (client's netns) -> Envoy B (upstream's netns) -> upstream:
                      one listener and one cluster each, written by hand
  pair mTLS           the same, mTLS between A and B
  mesh default        client pod (sidecar) -> upstream Service (sidecar): auto mTLS, Istio's metrics,
                      no access log, tracing as the mesh comes (Istio's default profile; since Istio
                      1.22 sampling without a tracer until a Telemetry names a backend)
  mesh tracing 1%     other pods, same programs, a workload Telemetry turning spans on at Istio's 1%
                      (the built-in collector: what tracing costs once turned on)
  mesh telemetry off  other pods, a workload Telemetry turning metrics and tracing off
  mesh access log     other pods, a workload Telemetry turning Envoy's access log on (Istio's demo
                      profile: what the log line costs)

For each: throughput (wrk, closed loop, CONNECTIONS connections, after WARMUP_SECONDS of the same)
and its ratio to the pair of the same TLS mode; latency p50/p90/p99 at a fixed RATE req/s from a
constant-rate client that counts from each request's due time (benchmarks/openloop.py: no
coordinated omission); Envoy CPU-seconds (both Envoys of the path) per 1000 requests and
control-plane CPU-seconds per 1000 requests (summed over the path's throughput runs); requests per
CPU-second of everything on CPU 1 (the path's Envoys and the upstream: the throughput the path would
have with that core to itself, whatever other work took from it), and its ratio to the pair's; the
sidecars' RSS.

The method, for numbers that hold from run to run on 2 shared cores: the client alone on CPU 0 and
every Envoy (the path's two proxies and the upstream) on CPU 1, for the pair and the mesh alike (else
wrk and three Envoys share two cores as the scheduler pleases, and throughput moved 40% between
runs); every path in every repetition, in an order that rotates by one path per repetition (no path
always runs after the same one, or first), the mesh default and the mTLS pair back to back (in turn
first: the headline ratio compares runs seconds apart); every Envoy and client at nice -10 (the
machine's other work takes less from the path being measured, alike for all paths); the mesh
variants are pods of their own, so nothing is reconfigured while measuring; medians of REPS
repetitions, and the mesh/pair ratio of each repetition printed (its spread). Takes
/run/gossamer-bench.lock; the load average is printed.
"""

from __future__ import annotations

import contextlib
import fcntl
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
LATENCY_S = float(os.environ.get("LATENCY_SECONDS", "4"))
THROUGHPUT_S = float(os.environ.get("THROUGHPUT_SECONDS", "4"))
WARMUP_S = float(os.environ.get("WARMUP_SECONDS", "1"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "16"))
REPS = int(os.environ.get("REPS", "4"))  # 5 took 8.5-10.4 min on a busy machine; 4 should stay under 10
CLIENT_CPU, PROXY_CPU = 0, 1  # the client alone on one core; every Envoy of the path under test on the other
# Every Envoy of every path and every client run at this nice value: the machine's other work (other
# sessions' tests) takes less from whichever path is being measured, the same for all paths.
PRIORITY = -10
BENCH_LOCK = "/run/gossamer-bench.lock"
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


def envoys_in(netns: str, *, sidecar: bool) -> list[int]:
    """The Envoy processes in a pod's network namespace: its sidecar (started with the agent's
    envoy.json), or the others (the pod's own program, when it is an Envoy: the upstream)."""
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=True).stdout
    pids = []
    for pid in out.split():
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            cmdline = Path(f"/proc/{pid}/cmdline").read_text()
        except OSError:
            continue
        if Path(exe).name == "envoy" and ("envoy.json" in cmdline) == sidecar:
            pids.append(int(pid))
    return pids


def pin(pid: int, cpu: int) -> None:
    """Every thread of the process onto one CPU, ahead of other work there (threads it starts later
    inherit the mask and the priority; Linux keeps a nice value per thread)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), {cpu})
            os.setpriority(os.PRIO_PROCESS, int(tid), PRIORITY)


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


def _on_proxy_cpu() -> None:
    """A pair's Envoy, as the mesh's: on PROXY_CPU at PRIORITY."""
    os.sched_setaffinity(0, {PROXY_CPU})
    os.nice(PRIORITY)


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
                            preexec_fn=_on_proxy_cpu,
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


def wrk(mesh: Mesh, client: str, url: str, seconds: float) -> tuple[float, int]:
    """(requests/s, requests) closed loop."""
    out = mesh.exec(f"deploy/{client}", "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:.0f}s", url).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    assert errors is None, out
    return rps, count


def openloop(mesh: Mesh, client: str, url: str, seconds: float) -> dict[str, Any]:
    out = mesh.exec(
        f"deploy/{client}", "python3", OPENLOOP, "--url", url, "--rate", str(RATE), "--duration", str(seconds)
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert result["errors"] == 0 and set(result["codes"]) == {"200"}, result
    return result


@dataclass
class MeasuredPath:
    """One path through the machine: the client pod that sends, the URL, the Envoys it crosses
    (their CPU is counted) and what its throughput is compared with."""

    client: str
    url: str
    envoys: list[int]
    upstream: int  # the upstream's Envoy: with `envoys`, everything of the path on PROXY_CPU
    baseline: str
    rps: list[float] = field(default_factory=list)
    per_core: list[float] = field(default_factory=list)  # requests per CPU-second of everything on PROXY_CPU
    envoy_cpu: list[float] = field(default_factory=list)  # CPU-s per 1000 requests
    cp_seconds: list[float] = field(default_factory=list)  # the control plane's, during each throughput run
    requests: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # wall time of each throughput run
    p50: list[float] = field(default_factory=list)
    p90: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)

    @property
    def cp_per_1k(self) -> float:
        """Over all of the path's runs, not a median of 5-second windows: the control plane's periodic
        work (the dashboard's sample of every proxy's counters every 10 s) falls in some windows only."""
        return sum(self.cp_seconds) / max(1, sum(self.requests)) * 1000


def measure(mesh: Mesh, path: MeasuredPath, control_plane: int) -> None:
    wrk(mesh, path.client, path.url, WARMUP_S)  # warm-up: connections open, this path in the CPU caches
    before = sum(cpu_seconds(p) for p in path.envoys), cpu_seconds(control_plane), cpu_seconds(path.upstream)
    start = time.monotonic()
    rps, count = wrk(mesh, path.client, path.url, THROUGHPUT_S)
    path.seconds.append(time.monotonic() - start)
    after = sum(cpu_seconds(p) for p in path.envoys), cpu_seconds(control_plane), cpu_seconds(path.upstream)
    path.rps.append(rps)
    path.per_core.append(count / max(1e-9, after[0] - before[0] + after[2] - before[2]))
    path.envoy_cpu.append((after[0] - before[0]) / count * 1000)
    path.cp_seconds.append(after[1] - before[1])
    path.requests.append(count)
    lat = openloop(mesh, path.client, path.url, LATENCY_S)
    path.p50.append(lat["p50_ms"])
    path.p90.append(lat["p90_ms"])
    path.p99.append(lat["p99_ms"])


def idle_share(paths: dict[str, MeasuredPath]) -> float:
    """Of the control plane's CPU per 1000 requests of the mesh default, what it spends anyway: its CPU per
    second while the paths that send nothing through the mesh ran, over the mesh default's run time."""
    idle = [paths[name] for name in ("direct", "pair plaintext", "pair mTLS")]
    per_second = sum(sum(p.cp_seconds) for p in idle) / max(1e-9, sum(sum(p.seconds) for p in idle))
    mesh_p = paths["mesh default"]
    return per_second * sum(mesh_p.seconds) / max(1, sum(mesh_p.requests)) * 1000


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    started = time.monotonic()
    # The mesh (one per machine: the e2e lock), then the benchmarks' turn (the data plane's numbers are
    # CPU-bound; another benchmark halves them): in this order, so that waiting for the mesh never
    # holds the other benchmarks up.
    with running_mesh(str(REPO / "benchmarks/dataplane")) as mesh, open(BENCH_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pods = {p["deployment"]: p for p in mesh.status()["pods"]}
        # The control plane's process: the one answering the API (`/v1/ready` says its pid).
        _, ready = ApiClient(mesh.run_dir / "api.sock", timeout=5).get("/v1/ready")
        control_plane = int(ready["pid"])
        plain = pods["upstream-plain"]
        # Every Envoy of every path (sidecars, upstreams) on PROXY_CPU; this process, and so every client
        # it starts (`gossamer exec` runs them as its children), on CLIENT_CPU. The control plane and the
        # pods' agents keep both CPUs (they idle).
        sidecars: dict[str, list[int]] = {}
        upstreams: dict[str, int] = {}
        for name, pod in pods.items():
            sidecars[name] = envoys_in(pod["netns"], sidecar=True)
            apps = envoys_in(pod["netns"], sidecar=False)
            if name.startswith("upstream-"):
                [upstreams[name]] = apps
            for pid in sidecars[name] + apps:
                pin(pid, PROXY_CPU)
        os.sched_setaffinity(0, {CLIENT_CPU})
        os.setpriority(os.PRIO_PROCESS, 0, PRIORITY)  # and so every client (`gossamer exec`: our children)
        client_cpus = mesh.exec("deploy/client-mesh", "python3", "-c", "import os; print(os.sched_getaffinity(0))")
        assert client_cpus.stdout.strip() == f"{{{CLIENT_CPU}}}", client_cpus.stdout
        with hand_written_pairs(pods["client-plain"]["netns"], plain["netns"], plain["ip"]) as pairs:
            paths = {
                "direct": MeasuredPath(
                    "client-plain", f"http://{plain['ip']}:8000/", [], upstreams["upstream-plain"], "pair plaintext"
                ),
                "pair plaintext": MeasuredPath(
                    "client-plain",
                    f"http://127.0.0.1:{PAIR_PLAIN[0]}/",
                    pairs["plaintext"].pids,
                    upstreams["upstream-plain"],
                    "pair plaintext",
                ),
                "pair mTLS": MeasuredPath(
                    "client-plain",
                    f"http://127.0.0.1:{PAIR_MTLS[0]}/",
                    pairs["mtls"].pids,
                    upstreams["upstream-plain"],
                    "pair mTLS",
                ),
            }
            for name, variant in (
                ("mesh default", "mesh"),
                ("mesh tracing 1%", "tracing"),
                ("mesh telemetry off", "notelemetry"),
                ("mesh access log", "accesslog"),
            ):
                envoys = sidecars[f"client-{variant}"] + sidecars[f"upstream-{variant}"]
                assert len(envoys) == 2, (variant, envoys)
                paths[name] = MeasuredPath(
                    f"client-{variant}",
                    f"http://upstream-{variant}:8000/",
                    envoys,
                    upstreams[f"upstream-{variant}"],
                    "pair mTLS",
                )
            for path in paths.values():  # first requests: certificates, connections, lazily built state
                openloop(mesh, path.client, path.url, 1)
            # The headline pair (mesh default, pair mTLS) runs back to back, in turn first, so that its ratio
            # compares runs seconds apart (load on a shared machine moves in minutes); the other paths in
            # between. Each repetition starts one step later: no path always follows the same one.
            headline = ("mesh default", "pair mTLS")
            order: list[tuple[str, ...]] = [(name,) for name in paths if name not in headline]
            order.insert(len(order) // 2, headline)
            load = [os.getloadavg()[0]]
            paired: list[float] = []  # mesh default / pair mTLS within each repetition
            paired_core: list[float] = []  # the same per CPU-second of CPU 1
            for rep in range(REPS):
                for step in order[rep % len(order) :] + order[: rep % len(order)]:
                    for name in step if rep % 2 == 0 else step[::-1]:
                        measure(mesh, paths[name], control_plane)
                paired.append(paths["mesh default"].rps[-1] / paths["pair mTLS"].rps[-1])
                paired_core.append(paths["mesh default"].per_core[-1] / paths["pair mTLS"].per_core[-1])
                load.append(os.getloadavg()[0])
        rss = [rss_mb(p) for p in sidecars["client-mesh"] + sidecars["upstream-mesh"]]
    minutes = (time.monotonic() - started) / 60

    print(
        f"dataplane: 1 KB responses; throughput: wrk -t1 -c{CONNECTIONS} for {THROUGHPUT_S:.0f}s after {WARMUP_S:.0f}s "
        f"of warm-up; latency: {RATE} req/s for {LATENCY_S:.0f}s, constant rate, from each request's due time; "
        f"Envoy --concurrency 1; clients on CPU {CLIENT_CPU}, every Envoy (proxies and upstream) on CPU {PROXY_CPU}; "
        f"medians of {REPS} repetitions, paths interleaved in a rotating order, mesh default and mTLS pair back "
        f"to back, nice {PRIORITY}; load average "
        f"{min(load):.1f}-{max(load):.1f} on {os.cpu_count()} cores (other work shares them); {minutes:.1f} min"
    )
    print(
        f"  {'path':20s} {'req/s':>8s} {'vs pair':>8s} {'p50 ms':>7s} {'p90 ms':>7s} {'p99 ms':>7s} "
        f"{'Envoy CPU-s/1k':>15s} {'CP CPU-s/1k':>12s} {'req/core-s':>10s} {'vs pair':>8s}  req/s min-max"
    )
    for name, r in paths.items():
        ratio = med(r.rps) / med(paths[r.baseline].rps)
        envoy = "-" if name == "direct" else f"{med(r.envoy_cpu):.3f}"
        # direct: the client, not CPU 1, is its limit; requests per CPU-second of CPU 1 mean nothing there.
        core = "-" if name == "direct" else f"{med(r.per_core):.0f}"
        core_ratio = "-" if name == "direct" else f"{med(r.per_core) / med(paths[r.baseline].per_core):.2f}"
        print(
            f"  {name:20s} {med(r.rps):8.0f} {ratio:8.2f} {med(r.p50):7.2f} {med(r.p90):7.2f} {med(r.p99):7.2f} "
            f"{envoy:>15s} {r.cp_per_1k:12.4f} {core:>10s} {core_ratio:>8s}  {min(r.rps):.0f}-{max(r.rps):.0f}"
        )
    mesh_p, pair_p = paths["mesh default"], paths["pair mTLS"]
    print(
        f"  added by the two sidecars at {RATE} req/s (mesh default vs direct): "
        f"p50 +{med(mesh_p.p50) - med(paths['direct'].p50):.2f} ms, "
        f"p90 +{med(mesh_p.p90) - med(paths['direct'].p90):.2f} ms, "
        f"p99 +{med(mesh_p.p99) - med(paths['direct'].p99):.2f} ms"
    )
    print(f"  sidecar RSS: {', '.join(f'{x:.0f} MB' for x in rss)}")
    print(
        f"  Envoy CPU per request, mesh default vs pair mTLS: {med(mesh_p.envoy_cpu) / med(pair_p.envoy_cpu):.2f}x; "
        f"tracing at 1% costs the sidecars {med(paths['mesh tracing 1%'].envoy_cpu) / med(mesh_p.envoy_cpu) - 1:+.0%} "
        f"CPU per request (mesh tracing 1% vs mesh default)"
    )
    print(
        f"  throughput ratio mesh default / pair mTLS within each repetition: "
        f"{', '.join(f'{x:.2f}' for x in paired)} (spread {min(paired):.2f}-{max(paired):.2f}); per CPU-second of "
        f"CPU {PROXY_CPU} (what other work on that core took out): {', '.join(f'{x:.2f}' for x in paired_core)} "
        f"(median {med(paired_core):.2f})"
    )
    demo = paths["mesh access log"]
    demo_cpu = med(demo.envoy_cpu) / med(pair_p.envoy_cpu)
    print(
        f"  with the access log on (Istio's demo profile) vs mTLS pair: throughput "
        f"ratio {med(demo.rps) / med(pair_p.rps):.2f}, Envoy CPU per request {demo_cpu:.2f}x"
    )
    print(
        f"  control plane: {idle_share(paths):.3f} of the CPU-s per 1000 requests below is idle work "
        f"(its CPU per second while direct and the pairs ran)"
    )
    print(f"mesh default vs mTLS pair: throughput ratio {med(paired):.2f}")
    print(f"control plane: {mesh_p.cp_per_1k:.3f} CPU-s per 1000 requests")


if __name__ == "__main__":
    main()
