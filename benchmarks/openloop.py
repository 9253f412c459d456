"""A constant-rate HTTP/1.1 client that corrects coordinated omission (stdlib only; run in a pod).

Request i is due at start + i / rate whatever happened before it; it goes out on an idle
keep-alive connection (a new one when all are busy, as fortio and wrk2 do), and its latency is
counted from when it was due, not from when it could be sent: a stall shows in every request it
delayed, not in one.

  python3 openloop.py --url http://HOST:PORT/ --rate 1000 --duration 10

Prints one JSON object: count, errors, codes, rps, p50/p90/p99/max (ms), connections used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import urllib.parse
from collections import Counter

MAX_CONNECTIONS = 64


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, raw: bytes) -> int:
        self.writer.write(raw)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        length = 0
        chunked = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            while True:
                size = int((await self.reader.readline()).split(b";")[0].strip(), 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        return status


async def run(url: str, rate: float, duration: float, warmup: float) -> dict[str, object]:
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    raw = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: openloop\r\n\r\n".encode()
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    opened = 0
    latencies: list[float] = []
    codes: Counter[int] = Counter()
    errors = 0
    interval = 1.0 / rate
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    total = int((warmup + duration) * rate)
    pending: set[asyncio.Task[None]] = set()

    async def one(due: float, counted: bool) -> None:
        nonlocal opened, errors
        conn: Connection | None = None
        try:
            if not idle.empty() or opened >= MAX_CONNECTIONS:
                conn = await idle.get()  # all busy: wait for one (the wait counts: latency is from `due`)
            else:
                opened += 1
                conn = Connection(*await asyncio.open_connection(host, port))
            status = await conn.request(raw)
        except (OSError, ConnectionError, ValueError, IndexError, asyncio.IncompleteReadError):
            if counted:
                errors += 1
            if conn is not None:
                conn.writer.close()
                opened -= 1
            return
        done = loop.time()
        idle.put_nowait(conn)
        if counted:
            latencies.append(done - due)
            codes[status] += 1

    for i in range(total):
        due = start + i * interval
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(due, i >= warmup * rate))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=10)
    while not idle.empty():
        idle.get_nowait().writer.close()
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

    return {
        "count": len(ordered),
        "errors": errors,
        "codes": {str(k): v for k, v in sorted(codes.items())},
        "rps": len(ordered) / duration,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": ordered[-1] * 1000 if ordered else float("nan"),
        "connections": opened,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=1, help="seconds sent but not counted")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.rate, args.duration, args.warmup))))


if __name__ == "__main__":
    main()
