"""A small HTTP/1.1 load generator (stdlib only), run inside a pod with `gossamer exec`.

  --rate R     open loop at R requests/s on one keep-alive connection; latency is
               measured from each request's scheduled time (no coordinated omission)
  --rate 0     closed loop with --connections threads, as fast as possible
Prints one JSON object: count, errors, seconds, rps, p50/p90/p99/max latency in ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
import urllib.parse


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def connect(url: urllib.parse.SplitResult, timeout: float) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=timeout)


def one_request(conn: http.client.HTTPConnection, path: str, host: str) -> bool:
    conn.request("GET", path, headers={"Host": host})
    resp = conn.getresponse()
    resp.read()
    return resp.status == 200


def open_loop(url: urllib.parse.SplitResult, rate: float, duration: float) -> tuple[list[float], int]:
    conn = connect(url, 5)
    host = url.netloc
    latencies: list[float] = []
    errors = 0
    interval = 1.0 / rate
    start = time.perf_counter()
    n = 0
    while True:
        scheduled = start + n * interval
        if scheduled - start >= duration:
            break
        now = time.perf_counter()
        if scheduled > now:
            time.sleep(scheduled - now)
        try:
            ok = one_request(conn, url.path or "/", host)
        except OSError:
            ok = False
            conn.close()
            conn = connect(url, 5)
        if ok:
            latencies.append(time.perf_counter() - scheduled)
        else:
            errors += 1
        n += 1
    return latencies, errors


def closed_loop(url: urllib.parse.SplitResult, connections: int, duration: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + duration

    def worker() -> None:
        conn = connect(url, 5)
        mine: list[float] = []
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                ok = one_request(conn, url.path or "/", url.netloc)
            except OSError:
                ok = False
                conn.close()
                conn = connect(url, 5)
            if ok:
                mine.append(time.perf_counter() - t0)
            else:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5)
    args = parser.parse_args()
    url = urllib.parse.urlsplit(args.url)
    started = time.perf_counter()
    if args.rate > 0:
        latencies, errors = open_loop(url, args.rate, args.duration)
    else:
        latencies, errors = closed_loop(url, args.connections, args.duration)
    elapsed = time.perf_counter() - started
    print(json.dumps({
        "count": len(latencies), "errors": errors, "seconds": elapsed, "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000, "p90_ms": percentile(latencies, 0.90) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000, "max_ms": max(latencies, default=float("nan")) * 1000,
    }))


if __name__ == "__main__":
    main()
