"""Starts one image container: `python -m gossamer.runtime.container_init SPEC.json`, as root, in the pod's netns.

What runc would do for us, reduced to what a pod needs: a private mount namespace, the image's root
filesystem with /proc, a minimal /dev, the pod's /etc/hosts, /etc/resolv.conf and /etc/hostname and
its volumes bound in, then chroot, the working directory, no new privileges, the container's user
(all capabilities go with the switch away from uid 0) and exec of the process. The spec is the
runtime's (`ContainerLaunch.to_json`), written root-only in the pod's run directory.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_NO_NEW_PRIVS = 38
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


@dataclass(frozen=True)
class Mount:
    source: str
    target: str  # absolute path inside the container
    read_only: bool = False


@dataclass(frozen=True)
class ContainerLaunch:
    rootfs: str
    argv: list[str]
    env: dict[str, str]
    workdir: str = "/"
    uid: int = 65534
    gid: int = 65534
    hostname: str = ""
    etc_files: dict[str, str] = field(default_factory=dict)  # /etc/hosts -> the pod's file, ...
    mounts: list[Mount] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ContainerLaunch:
        data = json.loads(text)
        data["mounts"] = [Mount(**m) for m in data.get("mounts", [])]
        return cls(**data)


_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _inside(rootfs: Path, path: str) -> Path:
    """`path` of the container, under `rootfs`, refusing symlinks that would lead out of it."""
    target = (rootfs / path.lstrip("/")).resolve()
    if target != rootfs and rootfs not in target.parents:
        raise OSError(f"{path} leaves the container's root filesystem")
    return target


def _bind(source: str, target: Path, read_only: bool) -> None:
    if Path(source).is_dir():
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.touch()
    _mount(source, str(target), None, MS_BIND | MS_REC)
    if read_only:
        _mount(None, str(target), None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def prepare_root(spec: ContainerLaunch) -> None:
    rootfs = Path(spec.rootfs).resolve()
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount leaks to the host
    proc = _inside(rootfs, "/proc")
    proc.mkdir(parents=True, exist_ok=True)
    _mount("proc", str(proc), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    dev = _inside(rootfs, "/dev")
    dev.mkdir(parents=True, exist_ok=True)
    _mount("tmpfs", str(dev), "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k")
    for name in DEVICES:
        if Path(f"/dev/{name}").exists():
            _bind(f"/dev/{name}", dev / name, False)
    for name, fd in (("stdin", 0), ("stdout", 1), ("stderr", 2)):
        os.symlink(f"/proc/self/fd/{fd}", dev / name)
    os.symlink("/proc/self/fd", dev / "fd")
    shm = dev / "shm"
    shm.mkdir()
    _mount("tmpfs", str(shm), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k")
    for target, source in spec.etc_files.items():
        _bind(source, _inside(rootfs, target), True)
    for m in spec.mounts:
        _bind(m.source, _inside(rootfs, m.target), m.read_only)
    os.chroot(rootfs)
    os.chdir(spec.workdir or "/")


def drop_privileges(uid: int, gid: int) -> None:
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    if uid != 0:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)  # leaving uid 0 clears every capability


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m gossamer.runtime.container_init SPEC.json", file=sys.stderr)
        return 2
    spec = ContainerLaunch.from_json(Path(argv[1]).read_text())
    try:
        prepare_root(spec)
        drop_privileges(spec.uid, spec.gid)
        os.execvpe(spec.argv[0], spec.argv, spec.env)
    except OSError as exc:
        # The container's log is this process's stdout: say why it did not start, as a kubelet would.
        print(f"container failed to start: {exc}", file=sys.stderr, flush=True)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv))
