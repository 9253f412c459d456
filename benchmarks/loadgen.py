"""A small HTTP/1.1 load generator (stdlib only), run inside a pod with `gossamer exec`.

The mesh's load tool, like Istio's fortio / hey:

  --rate R        open loop at R requests/s on one keep-alive connection; latency is
                  measured from each request's scheduled time (no coordinated omission)
  --rate 0        closed loop with --connections threads, as fast as possible
  --duration S    stop after S seconds (default 5, or unlimited when --requests is given)
  --requests N    stop after N requests in total
  --method M      request method (default GET); --data BODY sends a body
  --header K:V    extra request header, repeatable (e.g. --header "end-user: jason")

Prints one JSON object: count (responses of any status), errors (transport failures: refused,
reset, timeout, malformed), codes (a histogram of response statuses, e.g. {"200": 95, "503": 5}),
seconds, rps, p50/p90/p99/max latency in ms over all responses.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Request:
    url: urllib.parse.SplitResult
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    timeout: float = 5.0

    @property
    def target(self) -> str:
        path = self.url.path or "/"
        return f"{path}?{self.url.query}" if self.url.query else path


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    codes: Counter[int] = field(default_factory=Counter)
    errors: int = 0

    def merge(self, other: Results) -> None:
        self.latencies.extend(other.latencies)
        self.codes.update(other.codes)
        self.errors += other.errors


class Budget:
    """A shared request budget (--requests) for all workers; unlimited when ``limit`` is None."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit
        self.lock = threading.Lock()

    def take(self) -> bool:
        if self.left is None:
            return True
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def connect(url: urllib.parse.SplitResult, timeout: float) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=timeout)


def one_request(conn: http.client.HTTPConnection, req: Request) -> int:
    """Send one request and read the whole response; returns its status."""
    headers = {"Host": req.url.netloc, **req.headers}
    conn.request(req.method, req.target, body=req.body, headers=headers)
    resp = conn.getresponse()
    resp.read()
    return resp.status


def attempt(conn: http.client.HTTPConnection, req: Request, results: Results, t0: float) -> bool:
    """One request, recorded into ``results``; False on a transport error (reconnect then)."""
    try:
        status = one_request(conn, req)
    except (OSError, http.client.HTTPException):
        results.errors += 1
        conn.close()
        return False
    results.latencies.append(time.perf_counter() - t0)
    results.codes[status] += 1
    return True


def open_loop(req: Request, rate: float, duration: float, budget: Budget) -> Results:
    conn = connect(req.url, req.timeout)
    results = Results()
    interval = 1.0 / rate
    start = time.perf_counter()
    n = 0
    while budget.take():
        scheduled = start + n * interval
        if scheduled - start >= duration:
            break
        now = time.perf_counter()
        if scheduled > now:
            time.sleep(scheduled - now)
        if not attempt(conn, req, results, scheduled):
            conn = connect(req.url, req.timeout)
        n += 1
    conn.close()
    return results


def closed_loop(req: Request, connections: int, duration: float, budget: Budget) -> Results:
    total = Results()
    lock = threading.Lock()
    deadline = time.perf_counter() + duration

    def worker() -> None:
        conn = connect(req.url, req.timeout)
        mine = Results()
        while time.perf_counter() < deadline and budget.take():
            if not attempt(conn, req, mine, time.perf_counter()):
                conn = connect(req.url, req.timeout)
        conn.close()
        with lock:
            total.merge(mine)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return total


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, got {text!r}")
    return name.strip(), value.strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="HTTP/1.1 load generator (stdlib only)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=200, help="requests/s, open loop; 0 = closed loop")
    parser.add_argument("--connections", type=int, default=4, help="closed-loop connections (threads)")
    parser.add_argument("--duration", type=float, default=None, help="seconds (default 5, unlimited with --requests)")
    parser.add_argument("--requests", type=int, default=None, help="stop after N requests in total")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--header", action="append", type=parse_header, default=[], metavar="NAME:VALUE")
    parser.add_argument("--data", default=None, help="request body")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-request socket timeout in seconds")
    args = parser.parse_args(argv)

    duration = args.duration if args.duration is not None else (float("inf") if args.requests else 5.0)
    req = Request(
        url=urllib.parse.urlsplit(args.url),
        method=args.method.upper(),
        headers=dict(args.header),
        body=args.data.encode() if args.data is not None else None,
        timeout=args.timeout,
    )
    budget = Budget(args.requests)
    started = time.perf_counter()
    if args.rate > 0:
        results = open_loop(req, args.rate, duration, budget)
    else:
        results = closed_loop(req, max(1, args.connections), duration, budget)
    elapsed = time.perf_counter() - started
    latencies = results.latencies
    print(
        json.dumps(
            {
                "count": len(latencies),
                "errors": results.errors,
                "codes": {str(code): n for code, n in sorted(results.codes.items())},
                "seconds": elapsed,
                "rps": len(latencies) / elapsed if elapsed > 0 else 0.0,
                "p50_ms": percentile(latencies, 0.50) * 1000,
                "p90_ms": percentile(latencies, 0.90) * 1000,
                "p99_ms": percentile(latencies, 0.99) * 1000,
                "max_ms": max(latencies, default=float("nan")) * 1000,
            }
        )
    )


if __name__ == "__main__":
    main()
