"""`gossamer exec` into a container that runs its image: `python -m gossamer.runtime.container_exec PID CMD...`.

As `kubectl exec` (runc exec) does: the command joins the running container process PID where it lives —
its network and mount namespaces, its root filesystem (the image's, with the pod's hosts files and
volumes), its working directory and environment — and runs as its user with no new privileges and no
capabilities. Run as root (entering namespaces and chroot need it); a fresh process, because setns into
a mount namespace is refused to a multi-threaded one.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

from gossamer.runtime.container_init import drop_privileges

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def image_container_pid(netns: str, container: str, proc: Path = Path("/proc")) -> int | None:
    """The process of image container CONTAINER of the pod whose network namespace is NETNS (named in
    /run/netns): the one in that namespace chrooted into `.../containers/CONTAINER/rootfs`
    (runtime/image_containers.py). None when the container runs no image or is not running."""
    try:
        want = os.stat(f"/run/netns/{netns}")
    except OSError:
        return None
    suffix = f"/containers/{container}/rootfs"
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ns = os.stat(entry / "ns" / "net")
            if (ns.st_dev, ns.st_ino) != (want.st_dev, want.st_ino):
                continue
            if os.readlink(entry / "root").endswith(suffix):
                return int(entry.name)
        except OSError:  # gone meanwhile, or a kernel thread
            continue
    return None


def _ids(pid: int) -> tuple[int, int]:
    """The effective uid and gid of PID."""
    uid = gid = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[2])
        elif line.startswith("Gid:"):
            gid = int(line.split()[2])
    return uid, gid


def _environ(pid: int) -> dict[str, str]:
    env = {}
    for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        key, sep, value = item.decode(errors="surrogateescape").partition("=")
        if sep:
            env[key] = value
    return env


def _setns(fd: int, kind: int, what: str) -> None:
    if _libc.setns(fd, kind) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns {what}: {os.strerror(err)}")


def enter(pid: int) -> dict[str, str]:
    """Join PID's namespaces, root and working directory as its user; returns its environment."""
    uid, gid = _ids(pid)
    env = _environ(pid)
    # Opened before entering: they name the container's root and cwd in its own mount namespace.
    root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
    cwd = os.open(f"/proc/{pid}/cwd", os.O_RDONLY | os.O_DIRECTORY)
    net = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    mnt = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
    _setns(net, CLONE_NEWNET, "net")
    _setns(mnt, CLONE_NEWNS, "mnt")
    os.fchdir(root)
    os.chroot(".")
    os.fchdir(cwd)
    for fd in (root, cwd, net, mnt):
        os.close(fd)
    drop_privileges(uid, gid)
    return env


def main(argv: list[str]) -> int:
    if len(argv) < 3 or not argv[1].isdigit():
        print("usage: python -m gossamer.runtime.container_exec PID CMD...", file=sys.stderr)
        return 2
    try:
        env = enter(int(argv[1]))
        os.execvpe(argv[2], argv[2:], env)
    except OSError as exc:
        print(f"exec failed: {exc}", file=sys.stderr)
        return 126 if not isinstance(exc, FileNotFoundError) else 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv))
