"""kube-proxy for pods without a sidecar: service VIP:port -> one ready endpoint (iptables mode).

Sidecar pods never need this (their Envoy routes VIP traffic). In a sidecar-less pod the
`nat` table's OUTPUT jumps to `GSM_SERVICES`, which DNATs each VIP:port to one endpoint
with kube-proxy's random cascade (1/n, 1/(n-1), ..., 1); the `filter` table's
`GSM_SERVICES` rejects (tcp-reset) a VIP:port without ready endpoints. The pod has no
other rules, so both tables are replaced as a whole by one `iptables-restore`.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable

from gossamer.runtime.network import run
from gossamer.runtime.types import ServiceEndpoints

SERVICES_CHAIN = "GSM_SERVICES"


def service_chain(s: ServiceEndpoints) -> str:
    digest = hashlib.sha256(f"{s.namespace}/{s.name}:{s.port}".encode()).hexdigest()[:16].upper()
    return f"GSM_SVC_{digest}"  # at most 28 characters, as iptables wants


def _comment(s: ServiceEndpoints) -> str:
    return f'-m comment --comment "{s.namespace}/{s.name}:{s.port}"'


def _unique(services: Iterable[ServiceEndpoints]) -> list[ServiceEndpoints]:
    """One entry per VIP:port (the first one wins), in address order."""
    seen: dict[tuple[str, int], ServiceEndpoints] = {}
    for s in sorted(set(services), key=lambda s: (ipaddress.ip_address(s.vip), s.port, s.namespace, s.name)):
        seen.setdefault((s.vip, s.port), s)
    return list(seen.values())


def service_rules(services: Iterable[ServiceEndpoints]) -> str:
    """The nat and filter tables in iptables-restore format (deterministic for the same input)."""
    items = _unique(services)
    with_endpoints = [(s, sorted(set(s.endpoints))) for s in items if s.endpoints]
    nat = [
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        f":{SERVICES_CHAIN} - [0:0]",
        *(f":{service_chain(s)} - [0:0]" for s, _ in with_endpoints),
        f"-A OUTPUT -p tcp -j {SERVICES_CHAIN}",
    ]
    for s, _ in with_endpoints:
        nat.append(
            f"-A {SERVICES_CHAIN} -d {s.vip}/32 -p tcp -m tcp --dport {s.port} {_comment(s)} -j {service_chain(s)}"
        )
    for s, endpoints in with_endpoints:
        n = len(endpoints)
        for i, (ip, port) in enumerate(endpoints):
            remaining = n - i
            statistic = f" -m statistic --mode random --probability {1 / remaining:.10f}" if remaining > 1 else ""
            nat.append(f"-A {service_chain(s)} -p tcp{statistic} -j DNAT --to-destination {ip}:{port}")
    nat.append("COMMIT")
    filt = [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        f":{SERVICES_CHAIN} - [0:0]",
        f"-A OUTPUT -p tcp -j {SERVICES_CHAIN}",
        *(
            f"-A {SERVICES_CHAIN} -d {s.vip}/32 -p tcp -m tcp --dport {s.port} {_comment(s)} "
            "-j REJECT --reject-with tcp-reset"
            for s in items
            if not s.endpoints
        ),
        "COMMIT",
        "",
    ]
    return "\n".join(nat + filt)


async def apply_service_rules(netns: str, rules: str) -> None:
    """Replace the pod's nat and filter tables atomically (each table is committed whole)."""
    await run("ip", "netns", "exec", netns, "iptables-restore", input=rules.encode())
