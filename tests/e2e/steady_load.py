"""A steady HTTP load: RATE GETs per second on URL for SECONDS, one new connection each (as a
browser or curl would), then a JSON line: {"ok": n, "failed": n, "errors": [...]}.

Run on the host (the ingress) or inside a pod (`gossamer exec deploy/curl -- python3 steady_load.py ...`).
Requests are issued on a fixed schedule from several threads, so a stalled one does not slow the rest.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
import urllib.parse


def main() -> None:
    url, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    parsed = urllib.parse.urlsplit(url)
    path = parsed.path or "/"
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0}
    errors: list[str] = []
    start = time.monotonic()
    total = int(rate * seconds)

    def one(i: int) -> None:
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        at = time.monotonic() - start
        try:
            conn = http.client.HTTPConnection(parsed.hostname or "", parsed.port or 80, timeout=5)
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            conn.close()
            ok, what = resp.status == 200, f"HTTP {resp.status}"
        except OSError as e:
            ok, what = False, f"{type(e).__name__}: {e}"
        with lock:
            counts["ok" if ok else "failed"] += 1
            if not ok and len(errors) < 20:
                errors.append(f"t={at:.2f}s {what}")

    workers = 16

    def worker(w: int) -> None:
        for i in range(w, total, workers):
            one(i)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({**counts, "errors": errors}), flush=True)


if __name__ == "__main__":
    main()
