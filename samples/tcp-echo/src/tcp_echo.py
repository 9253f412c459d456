#!/usr/bin/env python3
"""tcp-echo (standard library only), like Istio's samples/tcp-echo server.

  python3 src/tcp_echo.py 9000,9001,9002 one

listens on every listed port of ``BIND_ADDRESS`` (default 0.0.0.0) and answers each line a client
sends with ``"<prefix> <line>"``. Without arguments: ports from ``PORT`` (or "9000,9001,9002")
and prefix from ``PREFIX`` (or "hello"). Port 0 picks a free port; the actual
address of every listener is printed as "listening on HOST:PORT".
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys


def log(message: str) -> None:
    sys.stdout.write(f"[tcp-echo] {message}\n")
    sys.stdout.flush()


async def handle(prefix: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            log(f"request from {peer}: {line!r}")
            writer.write(prefix + b" " + line)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def main(ports: list[int], prefix: str) -> None:
    host = os.environ.get("BIND_ADDRESS") or "0.0.0.0"
    raw_prefix = prefix.encode()
    servers = []
    for port in ports:
        server = await asyncio.start_server(
            lambda r, w: handle(raw_prefix, r, w), host=host, port=port, reuse_address=True
        )
        servers.append(server)
        for sock in server.sockets:
            addr = sock.getsockname()
            log(f"listening on {addr[0]}:{addr[1]}, prefix: {prefix}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()
    log("stopped")


def parse_args(argv: list[str]) -> tuple[list[int], str]:
    ports_s = argv[0] if argv else os.environ.get("PORT", "9000,9001,9002")
    prefix = argv[1] if len(argv) > 1 else os.environ.get("PREFIX", "hello")
    return [int(p) for p in ports_s.split(",") if p.strip()], prefix


if __name__ == "__main__":
    asyncio.run(main(*parse_args(sys.argv[1:])))
