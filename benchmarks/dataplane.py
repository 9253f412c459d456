"""Data-plane cost: the same client against the same upstream, directly and through
client sidecar -> server sidecar (both Envoy), in one run.

  plain: client pod (no sidecar) -> upstream pod IP (no sidecar)
  mesh:  client pod (sidecar)    -> upstream Service name (sidecar), i.e. two Envoys
  mesh + policies: the same, with retries, a timeout, a connection pool and outlier
         detection applied (benchmarks/dataplane/policies.yaml)
Open loop at a fixed rate for latency; closed loop for throughput.
"""

from __future__ import annotations

import json
from typing import Any

from common import REPO, running_mesh

from tests.e2e.mesh import Mesh

RATE = 200
SECONDS = 5
CONNECTIONS = 4
LOADGEN = str(REPO / "benchmarks/loadgen.py")


def run(mesh: Mesh, client: str, url: str, *extra: str) -> dict[str, float]:
    out = mesh.exec(f"deploy/{client}", "python3", LOADGEN, "--url", url, "--duration", str(SECONDS), *extra).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert result["errors"] == 0 and set(result["codes"]) == {"200"}, result
    return result


def main() -> None:
    with running_mesh(str(REPO / "benchmarks/dataplane")) as mesh:
        pods = mesh.status()["pods"]
        plain_ip = next(p["ip"] for p in pods if p["deployment"] == "upstream-plain")
        plain_url, mesh_url = f"http://{plain_ip}:8000/", "http://upstream-mesh:8000/"
        run(mesh, "client-mesh", mesh_url, "--rate", "50")  # warm up connections
        lat_plain = run(mesh, "client-plain", plain_url, "--rate", str(RATE))
        lat_mesh = run(mesh, "client-mesh", mesh_url, "--rate", str(RATE))
        tput_plain = run(mesh, "client-plain", plain_url, "--rate", "0", "--connections", str(CONNECTIONS))
        tput_mesh = run(mesh, "client-mesh", mesh_url, "--rate", "0", "--connections", str(CONNECTIONS))
        mesh.apply(REPO / "benchmarks/dataplane/policies.yaml")
        lat_policy = run(mesh, "client-mesh", mesh_url, "--rate", str(RATE))
        tput_policy = run(mesh, "client-mesh", mesh_url, "--rate", "0", "--connections", str(CONNECTIONS))
    print(f"dataplane: {RATE} req/s for {SECONDS}s (latency); {CONNECTIONS} connections closed loop (throughput)")
    for label, r in (("direct", lat_plain), ("two sidecars", lat_mesh), ("+ policies", lat_policy)):
        print(f"  {label:13s} p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  ({r['count']} requests)")
    print(f"  added by the sidecars: p50 +{lat_mesh['p50_ms'] - lat_plain['p50_ms']:.2f} ms, "
          f"p99 +{lat_mesh['p99_ms'] - lat_plain['p99_ms']:.2f} ms")
    print(f"  throughput: direct {tput_plain['rps']:.0f} req/s, two sidecars {tput_mesh['rps']:.0f} req/s, "
          f"ratio {tput_mesh['rps'] / tput_plain['rps']:.2f}")
    print(f"  policy set (retries, timeout, connection pool, outlier detection) vs none: "
          f"p50 {lat_policy['p50_ms'] - lat_mesh['p50_ms']:+.2f} ms, "
          f"p99 {lat_policy['p99_ms'] - lat_mesh['p99_ms']:+.2f} ms, "
          f"throughput ratio {tput_policy['rps'] / tput_mesh['rps']:.2f}")


if __name__ == "__main__":
    main()
