"""The ingress gateway on the host's loopback, with no privileged proxy (least privilege).

The ingress gateway's Envoy runs as its pod's proxy user, without capabilities, like a sidecar, and
binds its listeners inside the pod (0.0.0.0:8080, 8443, a TCP server's own port), as Istio's gateway
does behind its Service. The runtime, which is root anyway, makes them reachable on the host's
127.0.0.1 as the CNI portmap plugin does for a hostPort on localhost (kube-proxy likewise for
localhost:NodePort):

* nat OUTPUT -> `GSM_INGRESS`: 127.0.0.1:<host port> is DNATed to <gateway pod IP>:<container port>
  (several ingress pods: kube-proxy's random cascade);
* nat POSTROUTING -> `GSM_INGRESS_SNAT`: a loopback source leaving through the bridge takes the
  bridge's address (the pod could not answer 127.0.0.1);
* `route_localnet` on the bridge only: the kernel routes a 127.0.0.1-sourced packet out of it;
* raw PREROUTING -> `GSM_INGRESS`: packets from the bridge *to or from* 127.0.0.0/8 are dropped before
  conntrack, so route_localnet opens nothing to a pod (kube-proxy's guard for CVE-2020-8558); the
  replies of forwarded connections come from the pod's address and pass;
* every forwarded host port is held by a listening socket of the runtime (as kubelet's hostport
  manager held its ports): no host process can take it meanwhile, and a port that a host process
  already listens on is not forwarded (the runtime logs it) rather than silently taken over.

Which ports, each at `gossamer.mesh.ingress_host_port`: the ones `up` names (8080 at `--ingress-port`,
8443 at `--ingress-tls-port`, `--ingress-port-map`'s) from the pod's start, so they are there as soon as
a Gateway's listener is (until then the pod refuses the connection, as the host did); any other
gateway listener once its Envoy reports it (admin `/listeners`, polled by the pod's readiness loop).
The reported ports are kept in the pod's record, so a restarted runtime writes the same rules at once:
traffic never stops.
No Python is on the request path: the kernel forwards.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import subprocess
from collections.abc import Iterable, Mapping

from gossamer.mesh import IngressPortMap, gateway_container_port, ingress_host_port
from gossamer.runtime.network import BRIDGE, BRIDGE_IP, run

log = logging.getLogger(__name__)

CHAIN = "GSM_INGRESS"  # nat: the DNATs (from OUTPUT); raw: the guard (from PREROUTING)
SNAT_CHAIN = "GSM_INGRESS_SNAT"  # nat, from POSTROUTING
# (table, built-in chain, our chain): our chains are reached only through these jumps.
JUMPS = (("raw", "PREROUTING", CHAIN), ("nat", "OUTPUT", CHAIN), ("nat", "POSTROUTING", SNAT_CHAIN))

Forward = tuple[int, str, int]
"""(host port on 127.0.0.1, gateway pod IP, gateway container port)"""


def nat_rules(forwards: Iterable[Forward], bridge: str = BRIDGE, bridge_ip: str = str(BRIDGE_IP)) -> str:
    """Our nat chains in `iptables-restore --noflush` form: each declared chain is replaced whole, in
    one commit (deterministic for the same input)."""
    by_port: dict[int, list[tuple[str, int]]] = {}
    for host, ip, port in sorted(set(forwards)):
        by_port.setdefault(host, []).append((ip, port))
    lines = ["*nat", f":{CHAIN} - [0:0]", f":{SNAT_CHAIN} - [0:0]"]
    for host, targets in sorted(by_port.items()):
        for i, (ip, port) in enumerate(targets):
            remaining = len(targets) - i
            statistic = f" -m statistic --mode random --probability {1 / remaining:.10f}" if remaining > 1 else ""
            match = f"-d 127.0.0.1/32 -p tcp -m tcp --dport {host}{statistic}"
            lines.append(f"-A {CHAIN} {match} -j DNAT --to-destination {ip}:{port}")
    lines += [f"-A {SNAT_CHAIN} -s 127.0.0.0/8 -o {bridge} -j SNAT --to-source {bridge_ip}", "COMMIT", ""]
    return "\n".join(lines)


def guard_rules(bridge: str = BRIDGE) -> str:
    """The raw table's guard: nothing from the bridge to or from the loopback network."""
    return "\n".join(
        [
            "*raw",
            f":{CHAIN} - [0:0]",
            f"-A {CHAIN} -i {bridge} -d 127.0.0.0/8 -j DROP",
            f"-A {CHAIN} -i {bridge} -s 127.0.0.0/8 -j DROP",
            "COMMIT",
            "",
        ]
    )


def ingress_forwards(
    pods: Iterable[tuple[str, frozenset[int]]], *, ingress_port: int, ingress_tls_port: int, port_map: IngressPortMap
) -> list[Forward]:
    """What to forward to the ingress pods, given as (IP, the container ports their Envoy listens on): those
    ports and the ones `up` names (8080, 8443, the port map's), each at its host port (0: not on the host)."""
    named = {gateway_container_port(80), gateway_container_port(443)}
    named |= {gateway_container_port(gateway) for gateway, _ in port_map}
    out: list[Forward] = []
    for ip, ports in pods:
        for port in sorted(ports | named):
            host = ingress_host_port(
                port, ingress_port=ingress_port, ingress_tls_port=ingress_tls_port, port_map=port_map
            )
            if host:
                out.append((host, ip, port))
    return out


def remove_rules() -> None:
    """Remove our jumps and chains from the host's tables (synchronous, idempotent: `down`, cleanup)."""
    for table, builtin, chain in JUMPS:
        # A jump inserted twice (two runtimes racing) goes too: delete until none is left.
        for _ in range(10):
            if _iptables("-t", table, "-D", builtin, "-j", chain) != 0:
                break
    for table, _, chain in JUMPS:
        _iptables("-t", table, "-F", chain)
        _iptables("-t", table, "-X", chain)


def _iptables(*args: str) -> int:
    return subprocess.run(["iptables", "-w", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def listener_ports(listeners: Mapping[str, object]) -> frozenset[int]:
    """The gateway's own listeners in Envoy's admin `/listeners?format=json`: those the gateway translation
    names `0.0.0.0_<port>` (not the bootstrap's static :15090/:15021/:15020)."""
    ports: set[int] = set()
    statuses = listeners.get("listener_statuses")
    for status in statuses if isinstance(statuses, list) else []:
        if not isinstance(status, dict):
            continue
        name = str(status.get("name", ""))
        prefix, _, number = name.partition("_")
        if prefix == "0.0.0.0" and number.isdigit():
            ports.add(int(number))
    return frozenset(ports)


class IngressForwarding:
    """The host's 127.0.0.1 ports of the ingress gateway pods (one object per runtime)."""

    def __init__(self, *, ingress_port: int, ingress_tls_port: int, port_map: IngressPortMap) -> None:
        self.ingress_port = ingress_port
        self.ingress_tls_port = ingress_tls_port
        self.port_map = port_map
        self._pods: dict[tuple[str, str], tuple[str, frozenset[int]]] = {}  # pod -> (IP, container ports)
        self._held: dict[int, socket.socket] = {}  # host port -> the runtime's socket holding it
        self._refused: frozenset[int] = frozenset()  # host ports some host process has (logged once)
        self._written: str | None = None
        self._lock = asyncio.Lock()

    async def install(self, bridge: str = BRIDGE) -> None:
        """The guard, route_localnet on the bridge, our chains and their jumps (idempotent: an adopting
        runtime's are there already; the nat chain is left as it is until the pods say what to forward)."""
        await run("iptables-restore", "-w", "--noflush", input=guard_rules(bridge).encode())
        await run("sysctl", "-qw", f"net.ipv4.conf.{bridge}.route_localnet=1")
        for table, _, chain in JUMPS:
            await run("iptables", "-w", "-t", table, "-N", chain, check=False)  # exists already: fine
        for table, builtin, chain in JUMPS:
            rc, _ = await run("iptables", "-w", "-t", table, "-C", builtin, "-j", chain, check=False)
            if rc != 0:
                await run("iptables", "-w", "-t", table, "-I", builtin, "-j", chain)

    def forwarded(self, pod: tuple[str, str]) -> frozenset[int]:
        """The pod's container ports last set (kept in its record for a restarted runtime)."""
        return self._pods.get(pod, ("", frozenset()))[1]

    async def set_pod(self, pod: tuple[str, str], ip: str, ports: Iterable[int]) -> None:
        """The ingress pod (namespace, name) at IP listens on PORTS (container ports) now."""
        entry = (ip, frozenset(ports))
        if self._pods.get(pod) == entry and self._written is not None:
            return
        self._pods[pod] = entry
        await self._sync()

    async def remove_pod(self, pod: tuple[str, str]) -> None:
        if self._pods.pop(pod, None) is not None:
            await self._sync()

    async def sync(self) -> None:
        """Write the rules for the pods known now (a restarted runtime, once it adopted its pods)."""
        await self._sync()

    def close(self) -> None:
        """Release the held ports and remove the rules (the runtime stops and removes its pods)."""
        for held in self._held.values():
            held.close()
        self._held.clear()
        self._pods.clear()
        self._written = None
        remove_rules()

    async def _sync(self) -> None:
        async with self._lock:
            forwards = ingress_forwards(
                self._pods.values(),
                ingress_port=self.ingress_port,
                ingress_tls_port=self.ingress_tls_port,
                port_map=self.port_map,
            )
            self._hold({host for host, _, _ in forwards})
            forwards = [f for f in forwards if f[0] in self._held]
            rules = nat_rules(forwards)
            if rules != self._written:
                await run("iptables-restore", "-w", "--noflush", input=rules.encode())
                self._written = rules

    def _hold(self, wanted: set[int]) -> None:
        """Hold exactly the WANTED host ports that no host process listens on."""
        for port in set(self._held) - wanted:
            self._held.pop(port).close()
        refused: set[int] = set()
        for port in sorted(wanted - set(self._held)):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                # SO_REUSEADDR: connections of an earlier holder in TIME_WAIT do not block it; a listener does.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", port))
                sock.listen(1)
            except OSError as exc:
                sock.close()
                refused.add(port)
                if port not in self._refused:
                    why = "a host process listens on it" if exc.errno == errno.EADDRINUSE else str(exc)
                    log.error("ingress gateway: 127.0.0.1:%d is not forwarded: %s", port, why)
                continue
            self._held[port] = sock
        self._refused = frozenset(refused)
