"""Pod networking: the gsm0 bridge, one netns + veth pair per pod, IP allocation.

Layout (like a single-node Kubernetes with the bridge CNI plugin, minus NAT):

    host: gsm0 (bridge, 10.244.0.1/16) -- gsmv<id> (veth)  ===  eth0 in netns gsm-<id>
    pod:  lo up, eth0 10.244.x.y/16, route 10.96.0.0/16 dev eth0, NO default route

ip_forward is never touched, so pods can reach each other (bridged, same L2)
and the bridge address, and nothing else.
"""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gossamer.runtime.linux import netns_path

BRIDGE = "gsm0"
POD_CIDR = ipaddress.IPv4Network("10.244.0.0/16")
BRIDGE_IP = ipaddress.IPv4Address("10.244.0.1")
SERVICE_CIDR = ipaddress.IPv4Network("10.96.0.0/16")
NETNS_PREFIX = "gsm-"
VETH_PREFIX = "gsmv"


class CommandError(RuntimeError):
    pass


async def run(*argv: str, input: bytes | None = None, check: bool = True) -> tuple[int, str]:  # noqa: A002
    """Run a short command to completion; returns (returncode, stdout+stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await proc.communicate(input)
    text = out.decode(errors="replace")
    rc = proc.returncode if proc.returncode is not None else -1
    if check and rc != 0:
        raise CommandError(f"{' '.join(argv)} failed ({rc}): {text.strip()}")
    return rc, text


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def netns_exists(name: str) -> bool:
    return netns_path(name).exists()


class IpAllocator:
    """Sequential allocation in POD_CIDR; freed addresses are reused only after wrapping."""

    def __init__(self, network: ipaddress.IPv4Network = POD_CIDR, reserved: tuple[str, ...] = ()) -> None:
        self._first = int(network.network_address) + 1
        self._last = int(network.broadcast_address) - 1
        self._next = self._first
        self._used: set[int] = {int(ipaddress.IPv4Address(r)) for r in reserved}

    def allocate(self) -> str:
        size = self._last - self._first + 1
        for _ in range(size):
            candidate = self._next
            self._next = self._first if self._next >= self._last else self._next + 1
            if candidate not in self._used:
                self._used.add(candidate)
                return str(ipaddress.IPv4Address(candidate))
        raise RuntimeError("pod IP range exhausted")

    def reserve(self, ip: str) -> None:
        """Mark an address in use (an adopted pod's)."""
        self._used.add(int(ipaddress.IPv4Address(ip)))

    def release(self, ip: str) -> None:
        self._used.discard(int(ipaddress.IPv4Address(ip)))


# The host has no route of its own for service VIPs: without this one, a VIP dialled
# from the host would follow the default route off the machine.
SERVICE_ROUTE = ("ip", "route", "{verb}", "unreachable", str(SERVICE_CIDR), "proto", "static")


def service_route(verb: str) -> list[str]:
    return [part.format(verb=verb) for part in SERVICE_ROUTE]


async def create_bridge(name: str = BRIDGE) -> None:
    await run("ip", "link", "add", name, "type", "bridge")
    await run("ip", "addr", "add", f"{BRIDGE_IP}/{POD_CIDR.prefixlen}", "dev", name)
    await run("ip", "link", "set", name, "up")
    await run(*service_route("replace"))


async def delete_bridge(name: str = BRIDGE) -> None:
    if link_exists(name):
        await run("ip", "link", "del", name, check=False)
    await run(*service_route("del"), check=False)


@dataclass(frozen=True)
class PodNetwork:
    netns: str  # gsm-<id>
    veth: str  # host side, gsmv<id>
    ip: str

    @property
    def path(self) -> Path:
        return netns_path(self.netns)


def names_for(short_id: str) -> tuple[str, str]:
    """(netns name, host veth name) for a pod id; veth names must stay <= 15 chars."""
    return f"{NETNS_PREFIX}{short_id}", f"{VETH_PREFIX}{short_id}"


async def create_netns(netns: str) -> None:
    await run("ip", "netns", "add", netns)


async def setup_pod_network(net: PodNetwork, bridge: str = BRIDGE) -> None:
    """Wire an existing netns to the bridge (veth, address, lo, service route)."""
    await run("ip", "link", "add", net.veth, "type", "veth", "peer", "name", "eth0", "netns", net.netns)
    await run("ip", "link", "set", net.veth, "master", bridge, "up")
    batch = "\n".join(
        [
            "link set lo up",
            f"addr add {net.ip}/{POD_CIDR.prefixlen} dev eth0",
            "link set eth0 up",
            f"route add {SERVICE_CIDR} dev eth0",
            "",
        ]
    )
    await run("ip", "-n", net.netns, "-batch", "-", input=batch.encode())


async def delete_pod_network(netns: str, veth: str) -> None:
    """Deleting the netns destroys its veth end (and so the pair) and its iptables rules."""
    if link_exists(veth):
        await run("ip", "link", "del", veth, check=False)
    if netns_exists(netns):
        await run("ip", "netns", "del", netns, check=False)
