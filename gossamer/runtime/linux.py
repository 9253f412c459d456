"""Thin ctypes wrappers around the Linux calls the runtime needs.

* `set_pdeathsig` — PR_SET_PDEATHSIG, so children die with the runtime.
* `socket_in_netns` — create a socket inside another network namespace
  (sockets keep the namespace they were created in).
* `/proc` helpers to identify a process by PID *and* start time, so a recorded
  PID that was reused by an unrelated process is never signalled.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import threading
from pathlib import Path

CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(None, use_errno=True)


def set_pdeathsig(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent *thread* exits.

    Meant to be used as a subprocess `preexec_fn` (runs in the child after fork).
    """
    if _libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def unshare_mounts() -> None:
    """A mount namespace of the calling process's own (single-threaded callers only, as unshare(2) wants)."""
    if _libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")


def set_no_new_privs() -> None:
    """No execve may grant privileges any more (setuid binaries, file capabilities)."""
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """Move the *calling thread* into the namespace referred to by `fd`."""
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def socket_in_netns(
    netns_path: Path | str,
    family: int = socket.AF_INET,
    type: int = socket.SOCK_STREAM,  # noqa: A002 - mirrors socket.socket()
) -> socket.socket:
    """Create a socket inside the network namespace at `netns_path`.

    setns() only affects the calling thread, so a short-lived dedicated thread
    enters the namespace, creates the socket and exits; the socket stays bound to
    that namespace for its whole life. Never call setns() on a pooled thread.
    """
    result: list[socket.socket] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            fd = os.open(str(netns_path), os.O_RDONLY | os.O_CLOEXEC)
            try:
                setns(fd, CLONE_NEWNET)
            finally:
                os.close(fd)
            result.append(socket.socket(family, type))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)

    thread = threading.Thread(target=worker, name="gsm-setns", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def netns_path(name: str) -> Path:
    """Where `ip netns add NAME` mounts the namespace."""
    return Path("/run/netns") / name


def proc_start_time(pid: int) -> int | None:
    """Start time (clock ticks since boot, field 22 of /proc/PID/stat), or None if gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(")") + 2 :].split()
    try:
        return int(rest[19])  # field 22 overall; rest starts at field 3
    except (IndexError, ValueError):
        return None


def proc_is_zombie(pid: int) -> bool:
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return data[data.rfind(")") + 2 :].split()[0] in ("Z", "X")


def same_process_alive(pid: int, start_time: int | None) -> bool:
    """True if PID is alive (not a zombie) and is the very process recorded (same start time)."""
    current = proc_start_time(pid)
    if current is None or proc_is_zombie(pid):
        return False
    return start_time is None or current == start_time
