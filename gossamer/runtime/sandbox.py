"""Who a pod's processes run as, and the command lines that make them so (least privilege).

Every pod gets two users of its own, derived from its IP (unique among live pods, and recorded
with the pod, so a restarted runtime derives the same ones):

* the **proxy user** (`proxy_uid`, gid the same): Envoy. The capture rules in the pod's netns let
  only this uid/gid through (Istio's 1337, one per pod here), the pod's socket directory
  (`<run-dir>/<pod>/`, admin and SDS sockets) is 0700 and owned by it, so no other pod's Envoy,
  no app and no host user can reach that pod's secrets. Envoys also carry the shared supplementary
  group `PROXY_GROUP`, which may traverse the run directory and connect to the control plane's
  xDS socket (where the workload certificate still has to prove who they are).
* the **app user** (`app_uid`, gid the same) for the containers, unless the spec says
  `securityContext.runAsUser`/`runAsGroup`. Apps run with no capabilities at all (empty bounding,
  inheritable and ambient sets, no_new_privs), so they cannot touch their pod's iptables or gain
  privileges through a setuid binary. `runAsUser: 0` is honoured: such a container runs as root,
  as its spec asks (and `gossamer analyze` warns about it).

A pod's processes see the host's files with their own uid's rights, with one exception made so
that a pod's "image" is usable: directories its commands need (the Python running Gossamer, the
manifest folder) stay reachable even when an ancestor is private (e.g. a Python under /root,
0700). In the process's own mount namespace (`ip netns exec` makes one), the topmost private
ancestor is covered with an empty tmpfs in which only those directories are bind-mounted: the
rest of that private directory stays invisible.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import stat
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from gossamer.mesh import POD_ID_BASE, POD_ID_RANGE
from gossamer.runtime.network import POD_CIDR

# The ids handed out lie in gossamer.mesh's reserved range: proxies in its first half, apps in the second.
_PROXY_BASE = POD_ID_BASE
_APP_BASE = POD_ID_BASE + POD_ID_RANGE // 2


def pod_index(ip: str) -> int:
    """The pod's host number in the pod network (1..65534)."""
    addr = ipaddress.IPv4Address(ip)
    if addr not in POD_CIDR:
        raise ValueError(f"{ip} is not in the pod network {POD_CIDR}")
    return int(addr) - int(POD_CIDR.network_address)


def proxy_uid(ip: str) -> int:
    """uid (and gid) of the pod's Envoy."""
    return _PROXY_BASE + pod_index(ip)


def app_uid(ip: str) -> int:
    """Default uid (and gid) of the pod's containers."""
    return _APP_BASE + pod_index(ip)


def _private(path: Path) -> bool:
    """A directory other users may not traverse."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_IXOTH


def exposed_mounts(paths: Iterable[Path]) -> dict[Path, list[Path]]:
    """For each needed path, its topmost ancestor others cannot traverse -> the needed paths
    under it (relative, minimal: a path inside another needed one is left out)."""
    out: dict[Path, set[Path]] = {}
    for p in paths:
        real = Path(os.path.realpath(p))
        for ancestor in [*reversed(real.parents), real][1:]:
            if ancestor != real and _private(ancestor):
                out.setdefault(ancestor, set()).add(real.relative_to(ancestor))
                break
    result: dict[Path, list[Path]] = {}
    for base, rels in sorted(out.items()):
        kept = [r for r in sorted(rels) if not any(o != r and o in r.parents for o in rels)]
        result[base] = kept
    return result


def default_exposed(workdir: Path | None = None) -> list[Path]:
    """What a pod's command needs whatever it is: the Python running Gossamer (and its venv),
    and the manifest folder it runs from."""
    paths = [Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).parent]
    if workdir is not None:
        paths.append(Path(workdir))
    return paths


def expose_lines(expose: Iterable[Path]) -> list[str]:
    """`sh` lines that, in the current mount namespace, cover each private ancestor of EXPOSE with an
    empty tmpfs into which only the exposed directories are bind-mounted."""
    lines: list[str] = []
    for base, rels in exposed_mounts(expose).items():
        b = shlex.quote(str(base))
        lines.append(f"exec 3<{b}")
        lines.append(f"mount -t tmpfs -o mode=0755,size=64k gsm-pod {b}")
        for rel in rels:
            target = shlex.quote(str(base / rel))
            source = shlex.quote(f"/proc/self/fd/3/{rel}")
            lines.append(f"mkdir -p {target}")
            lines.append(f"mount --no-canonicalize --rbind {source} {target}")
        lines.append("exec 3<&-")
    return lines


def app_script(*, uid: int | None, gid: int | None, expose: Iterable[Path]) -> str:
    """The `sh -c` program that prepares the mount namespace, drops privileges and execs "$@".
    `uid` 0 keeps root (runAsUser: 0); None is not allowed for the user (always explicit)."""
    lines = ["set -e"]
    if uid != 0:
        lines += expose_lines(expose)
    if uid == 0:
        if gid is not None and gid != 0:
            lines.append(f'exec setpriv --regid {gid} --clear-groups -- "$@"')
        else:
            lines.append('exec "$@"')
    else:
        assert uid is not None
        group = uid if gid is None else gid
        # No parent-death signal: apps outlive the runtime process (a restarted runtime adopts them).
        lines.append(
            f"exec setpriv --reuid {uid} --regid {group} --clear-groups"
            ' --inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"'
        )
    return "\n".join(lines)


def app_argv(netns: str, argv: Sequence[str], *, uid: int, gid: int | None, expose: Iterable[Path] = ()) -> list[str]:
    """`argv` inside the pod's netns, as `uid`/`gid`, without capabilities (unless uid 0)."""
    return ["ip", "netns", "exec", netns, "sh", "-c", app_script(uid=uid, gid=gid, expose=expose), "gsm-app", *argv]
