"""Traffic capture inside a sidecar pod, rule for rule what istio-iptables installs (REDIRECT mode)."""

from __future__ import annotations

from gossamer.mesh import (
    HEALTH_PORT,
    INBOUND_CAPTURE_PORT,
    MERGED_METRICS_PORT,
    OUTBOUND_CAPTURE_PORT,
    PROMETHEUS_PORT,
    PROXY_UID,
    TUNNEL_PORT,
)
from gossamer.runtime.network import run

# Inbound ports that are never redirected to Envoy (HBONE, prometheus, health, agent).
INBOUND_EXCLUDED_PORTS = (TUNNEL_PORT, PROMETHEUS_PORT, HEALTH_PORT, MERGED_METRICS_PORT)
PROXY_GID = PROXY_UID


def istio_rules(
    *,
    proxy_uid: int = PROXY_UID,
    proxy_gid: int = PROXY_GID,
    inbound_port: int = INBOUND_CAPTURE_PORT,
    outbound_port: int = OUTBOUND_CAPTURE_PORT,
) -> str:
    """The nat table in iptables-restore format."""
    lines = [
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        ":ISTIO_INBOUND - [0:0]",
        ":ISTIO_IN_REDIRECT - [0:0]",
        ":ISTIO_OUTPUT - [0:0]",
        ":ISTIO_REDIRECT - [0:0]",
        "-A PREROUTING -p tcp -j ISTIO_INBOUND",
        "-A OUTPUT -p tcp -j ISTIO_OUTPUT",
    ]
    lines += [f"-A ISTIO_INBOUND -p tcp -m tcp --dport {p} -j RETURN" for p in INBOUND_EXCLUDED_PORTS]
    lines += [
        "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
        f"-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {inbound_port}",
        "-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN",
    ]
    for kind, ident in (("uid", proxy_uid), ("gid", proxy_gid)):
        lines += [
            f"-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --{kind}-owner {ident} -j ISTIO_IN_REDIRECT",
            f"-A ISTIO_OUTPUT -o lo -m owner ! --{kind}-owner {ident} -j RETURN",
            f"-A ISTIO_OUTPUT -m owner --{kind}-owner {ident} -j RETURN",
        ]
    lines += [
        "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
        f"-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {outbound_port}",
        "COMMIT",
        "",
    ]
    return "\n".join(lines)


async def apply_capture(netns: str, proxy_uid: int = PROXY_UID) -> None:
    """Install the rules atomically inside the pod's netns (removed with the netns), exempting the
    pod's own proxy user (runtime/sandbox.py), whose uid and gid are the same number."""
    rules = istio_rules(proxy_uid=proxy_uid, proxy_gid=proxy_uid)
    await run("ip", "netns", "exec", netns, "iptables-restore", input=rules.encode())


async def dump_rules(netns: str) -> str:
    _, out = await run("ip", "netns", "exec", netns, "iptables-save", "-c", "-t", "nat")
    return out
