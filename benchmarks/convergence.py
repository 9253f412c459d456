"""Convergence: apply -> every affected proxy ACKed, over 20 route changes to running bookinfo.

Baseline (same run): a no-op apply (unchanged resource) followed by the same sync
wait, i.e. the API round trip with nothing to translate or push.
Target: p99 under 1 s.
"""

from __future__ import annotations

import time

from common import REPO, percentile, running_mesh

from gossamer.cli.client import ApiClient

CHANGES = 20

VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews, subset: {subset}}}
"""


def timed_apply(client: ApiClient, text: str) -> float:
    started = time.perf_counter()
    status, body = client.post("/v1/apply", {"files": [{"name": "bench.yaml", "text": text}]})
    assert status == 200, body
    status, synced = client.get(f"/v1/sync?revision={body['revision']}&timeout=10")
    assert status == 200 and synced["synced"], synced
    return time.perf_counter() - started


def main() -> None:
    with running_mesh(str(REPO / "samples/bookinfo")) as mesh:
        mesh.apply(REPO / "samples/bookinfo/networking/destination-rule-all.yaml")
        client = ApiClient(mesh.run_dir / "api.sock")
        proxies = len(mesh.status()["proxies"])
        texts = [VS.format(subset=("v1", "v2", "v3")[i % 3]) for i in range(CHANGES)]
        changes = [timed_apply(client, text) for text in texts]
        # Re-applying the last text stores nothing new: the API + sync round trip alone.
        noop = [timed_apply(client, texts[-1]) for _ in range(CHANGES)]
    p50, p99 = percentile(changes, 0.5), percentile(changes, 0.99)
    b50 = percentile(noop, 0.5)
    print(f"convergence: {CHANGES} route changes, {proxies} proxies (bookinfo + ingress gateway)")
    print(
        f"  apply -> all proxies ACKed: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms "
        f"(target p99 < 1000 ms: {'met' if p99 < 1.0 else 'MISSED'})"
    )
    print(f"  baseline no-op apply + sync: p50 {b50 * 1000:.1f} ms; change/baseline p50 ratio {p50 / b50:.1f}x")


if __name__ == "__main__":
    main()
