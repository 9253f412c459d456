"""Readiness probes run *inside* the pod's netns, and HTTP over Envoy's admin unix socket.

Probes connect to 127.0.0.1:<port> from a socket created in the pod's network
namespace, as root: the capture rules RETURN for loopback traffic from any uid
other than 1337, so probes reach the app directly (what Istio's probe rewrite achieves).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import aiohttp

from gossamer.runtime.linux import socket_in_netns
from gossamer.runtime.types import Probe

PROBE_TIMEOUT = 1.0


async def _connect_in_netns(netns_path: Path, port: int, timeout: float) -> socket.socket:
    sock = await asyncio.to_thread(socket_in_netns, netns_path)  # the pool thread only joins
    try:
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), timeout)
    except BaseException:
        sock.close()
        raise
    return sock


async def tcp_probe(netns_path: Path, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    try:
        sock = await _connect_in_netns(netns_path, port, timeout)
    except (OSError, TimeoutError):
        return False
    sock.close()
    return True


async def http_probe(netns_path: Path, port: int, path: str = "/", timeout: float = PROBE_TIMEOUT) -> bool:
    """Kubernetes semantics: success if the status is 200-399."""
    try:
        sock = await _connect_in_netns(netns_path, port, timeout)
    except (OSError, TimeoutError):
        return False
    writer: asyncio.StreamWriter | None = None
    try:
        reader, writer = await asyncio.open_connection(sock=sock)
        request = (
            f"GET {path or '/'} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: kube-probe/gossamer\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        parts = status_line.decode("latin-1").split()
        return len(parts) >= 2 and parts[0].startswith("HTTP/") and 200 <= int(parts[1]) < 400
    except (OSError, TimeoutError, ValueError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 0.5)
        else:
            sock.close()


async def run_probe(netns_path: Path, probe: Probe) -> bool:
    if probe.kind == "tcp":
        return await tcp_probe(netns_path, probe.port)
    return await http_probe(netns_path, probe.port, probe.path)


async def unix_http_get(socket_path: Path, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """HTTP GET over a unix socket (Envoy's admin interface)."""
    connector = aiohttp.UnixConnector(path=str(socket_path))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as s:
        async with s.get(f"http://localhost{path if path.startswith('/') else '/' + path}") as resp:
            return resp.status, await resp.text(errors="replace")
