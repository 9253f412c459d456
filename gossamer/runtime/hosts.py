"""Name resolution inside pods: /etc/netns/<netns>/{hosts,resolv.conf}.

`ip netns exec` bind-mounts these over /etc/hosts and /etc/resolv.conf, so the
files are rewritten in place (same inode) when Services change.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from gossamer.mesh import CLUSTER_DOMAIN, DOMAIN_SUFFIX, service_fqdn
from gossamer.runtime.types import ServiceAddress

ETC_NETNS = Path("/etc/netns")


def render_hosts(*, pod_name: str, pod_ip: str, namespace: str, services: Iterable[ServiceAddress]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", f"{pod_ip}\t{pod_name}"]
    for svc in sorted(services, key=lambda s: (s.namespace, s.name)):
        if svc.hostnames:
            lines.append(f"{svc.vip}\t{' '.join(svc.hostnames)}")
            continue
        names = [
            service_fqdn(svc.name, svc.namespace),
            f"{svc.name}.{svc.namespace}.svc",
            f"{svc.name}.{svc.namespace}",
        ]
        if svc.namespace == namespace:
            names.append(svc.name)
        lines.append(f"{svc.vip}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"


def render_resolv(namespace: str) -> str:
    # Nothing listens on 127.0.0.1:53 inside the pod: unknown names fail fast.
    return (
        f"search {namespace}.{DOMAIN_SUFFIX} {DOMAIN_SUFFIX} {CLUSTER_DOMAIN}\n"
        "nameserver 127.0.0.1\n"
        "options ndots:5 timeout:1 attempts:1\n"
    )


def etc_dir(netns: str) -> Path:
    return ETC_NETNS / netns


def write_in_place(path: Path, text: str) -> None:
    """Truncate and rewrite (keeps the inode, which the bind mount follows). An unchanged file is left
    alone: a lookup in the pod must never see it empty (an adopting runtime rewrites every pod's)."""
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_pod_files(
    netns: str, *, pod_name: str, pod_ip: str, namespace: str, services: Iterable[ServiceAddress]
) -> None:
    d = etc_dir(netns)
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o755)
    write_in_place(d / "hosts", render_hosts(pod_name=pod_name, pod_ip=pod_ip, namespace=namespace, services=services))
    write_in_place(d / "resolv.conf", render_resolv(namespace))
    for f in ("hosts", "resolv.conf"):
        (d / f).chmod(0o644)
