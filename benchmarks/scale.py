"""Scale: how `up` and config pushes grow with the number of services and proxies.

Runs the same measurements on a small mesh and a larger one (N services, one
sidecar pod each, plus the ingress gateway) in one run and prints the ratios:
  - up: `gossamer up --detach` until every pod is ready and every proxy ACKed
  - convergence: one route change -> every proxy ACKed (10 changes, p50/p99)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from common import percentile, running_mesh

from gossamer.cli.client import ApiClient

SIZES = (5, int(sys.argv[1]) if len(sys.argv) > 1 else 30)
CHANGES = 10

SERVICE = """apiVersion: v1
kind: Service
metadata: {{name: svc-{i}}}
spec:
  selector: {{app: svc-{i}}}
  ports: [{{name: http, port: 8000}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: svc-{i}}}
spec:
  selector: {{matchLabels: {{app: svc-{i}}}}}
  template:
    metadata: {{labels: {{app: svc-{i}, version: v1}}}}
    spec:
      containers:
      - name: app
        command: ["python3", "-m", "http.server", "8000"]
        readinessProbe: {{tcpSocket: {{port: 8000}}}}
"""

ROUTE = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc-0}}
spec:
  hosts: [svc-0]
  http:
  - route: [{{destination: {{host: svc-0}}}}]
    timeout: {timeout}s
"""


def measure(n: int) -> tuple[float, list[float], int]:
    with tempfile.TemporaryDirectory(prefix="gsm-scale-") as tmp:
        manifest = Path(tmp) / "services.yaml"
        manifest.write_text("---\n".join(SERVICE.format(i=i) for i in range(n)))
        started = time.perf_counter()
        with running_mesh(str(manifest)) as mesh:
            up_seconds = time.perf_counter() - started
            client = ApiClient(mesh.run_dir / "api.sock")
            proxies = len(mesh.status()["proxies"])
            samples = []
            for change in range(CHANGES):
                t0 = time.perf_counter()
                status, body = client.post(
                    "/v1/apply", {"files": [{"name": "vs.yaml", "text": ROUTE.format(timeout=change + 1)}]}
                )
                assert status == 200, body
                status, synced = client.get(f"/v1/sync?revision={body['revision']}&timeout=20")
                assert status == 200 and synced["synced"], synced
                samples.append(time.perf_counter() - t0)
    return up_seconds, samples, proxies


def main() -> None:
    results = {n: measure(n) for n in SIZES}
    small, large = SIZES
    print(f"scale: {small} vs {large} services (one sidecar pod each, plus the ingress gateway)")
    for n, (up, samples, proxies) in results.items():
        print(
            f"  {n:3d} services, {proxies:3d} proxies: up {up:5.1f} s; route change -> all ACKed "
            f"p50 {percentile(samples, 0.5) * 1000:.0f} ms, p99 {percentile(samples, 0.99) * 1000:.0f} ms"
        )
    up_ratio = results[large][0] / results[small][0]
    conv_ratio = percentile(results[large][1], 0.5) / percentile(results[small][1], 0.5)
    print(f"  x{large / small:.0f} services: up x{up_ratio:.1f}, convergence p50 x{conv_ratio:.1f}")


if __name__ == "__main__":
    main()
