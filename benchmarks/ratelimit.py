"""Global rate limiting's cost: the ingress gateway in front of httpbin with and without Istio's rate limit
EnvoyFilters (the gateway asks samples/ratelimit's service, counters in Redis, about every request), in
one run, and the service's own throughput.

  latency:   open loop at a fixed rate from the host to the gateway, without then with the filters;
             the difference is what one rate limit decision adds to a request
  decisions: ShouldRateLimit calls per second, closed loop (CONCURRENCY calls in flight) from the curl pod
             to ratelimit:8081 through its sidecar, next to the gateway's own closed-loop request rate
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from common import REPO, running_mesh

from tests.e2e.mesh import Mesh, wait_until

RATE = 100
SECONDS = 5
CONCURRENCY = 16
LOADGEN = str(REPO / "benchmarks/loadgen.py")
DOCS = REPO / "tests/data/istio-docs/rate-limit"


def loadgen(url: str, *extra: str) -> dict[str, Any]:
    import subprocess

    out = subprocess.run(
        [sys.executable, LOADGEN, "--url", url, "--duration", str(SECONDS), *extra],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert result["errors"] == 0 and set(result["codes"]) == {"200"}, result
    return result


async def _decisions(target: str, seconds: float, concurrency: int) -> dict[str, float]:
    import grpc
    from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
    from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

    request = rls_pb2.RateLimitRequest(
        domain="ratelimit",
        descriptors=[
            ratelimit_pb2.RateLimitDescriptor(
                entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key="PATH", value="/bench")]
            )
        ],
    )
    async with grpc.aio.insecure_channel(target) as channel:
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)
        await stub.ShouldRateLimit(request, timeout=5)
        done = 0
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                response = await stub.ShouldRateLimit(request, timeout=5)
                assert response.overall_code == rls_pb2.RateLimitResponse.OK
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return {"decisions": done, "seconds": elapsed, "per_second": done / elapsed}


def client(argv: list[str]) -> None:
    """`ratelimit.py client TARGET`: run inside a pod (gossamer exec), prints one JSON object."""
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_decisions(args.target, args.seconds, args.concurrency))))


def main() -> None:
    with running_mesh(
        str(REPO / "samples/httpbin/httpbin.yaml"),
        str(REPO / "samples/curl"),
        str(REPO / "benchmarks/ratelimit/config.yaml"),
        str(REPO / "samples/ratelimit/rate-limit-service.yaml"),
    ) as mesh:
        url = f"http://127.0.0.1:{mesh.ingress_port}/get"
        loadgen(url, "--rate", "50")  # warm up
        without = loadgen(url, "--rate", str(RATE))
        tput_without = loadgen(url, "--rate", "0", "--connections", "4")
        mesh.apply(DOCS / "filter-ratelimit.yaml", DOCS / "filter-ratelimit-svc.yaml")
        assert wait_until(lambda: _stats(mesh).get("total_hits", 0) > 0 or _probe(url), 30)
        loadgen(url, "--rate", "50")  # warm up the gateway -> service connection
        with_limit = loadgen(url, "--rate", str(RATE))
        before = _stats(mesh).get("total_hits", 0)
        tput_with = loadgen(url, "--rate", "0", "--connections", "4")
        counted = _stats(mesh).get("total_hits", 0) - before
        direct = json.loads(
            mesh.exec("deploy/curl", "python3", str(REPO / "benchmarks/ratelimit.py"), "client", "ratelimit:8081")
            .stdout.strip()
            .splitlines()[-1]
        )
    print(
        f"ratelimit: gateway -> httpbin at {RATE} req/s for {SECONDS}s, without and with the global rate limit "
        "filter (every request one decision: gRPC to the service, Redis INCRBY+EXPIRE pipelined)"
    )
    for label, r in (("without", without), ("with", with_limit)):
        print(f"  {label:8s} p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  ({r['count']} requests)")
    print(
        f"  added by the rate limit check: p50 +{with_limit['p50_ms'] - without['p50_ms']:.2f} ms, "
        f"p99 +{with_limit['p99_ms'] - without['p99_ms']:.2f} ms"
    )
    print(
        f"  gateway closed loop (4 connections): without {tput_without['rps']:.0f} req/s, with "
        f"{tput_with['rps']:.0f} req/s (ratio {tput_with['rps'] / tput_without['rps']:.2f}; "
        f"service counted {counted} of {tput_with['count']} requests)"
    )
    print(
        f"  decisions: {direct['per_second']:.0f}/s (ShouldRateLimit, {CONCURRENCY} in flight, from the curl pod "
        f"through its sidecar, {direct['decisions']} in {direct['seconds']:.1f}s)"
    )


def _probe(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _stats(mesh: Mesh) -> dict[str, int]:
    """The service's counters for the PATH limit (its debug port, /stats)."""
    out = mesh.exec("deploy/curl", "curl", "-s", "--max-time", "5", "http://ratelimit:6070/stats", check=False).stdout
    stats: dict[str, int] = {}
    for line in out.splitlines():
        name, _, value = line.partition(": ")
        if name.startswith("ratelimit.service.rate_limit.ratelimit.PATH.") and value.strip().isdigit():
            stats[name.rsplit(".", 1)[1]] = int(value)
    return stats


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        client(sys.argv[2:])
    else:
        main()
