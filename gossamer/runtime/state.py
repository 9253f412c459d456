"""`runtime.json`: a durable record of everything the runtime created.

Every netns, veth, bridge, /etc/netns dir, socket dir and child process is
recorded *as it is created*, so what a runtime that was SIGKILLed left can be
cleaned up by `cleanup_leftovers()` (`gossamer down`). Each running pod is
recorded too (`pods`: its spec, names, address and processes with pid, start
time, argv and restarts): the next `LocalRuntime.start()` adopts those pods.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from gossamer.runtime.host_ports import remove_rules
from gossamer.runtime.linux import proc_start_time, same_process_alive
from gossamer.runtime.network import service_route
from gossamer.runtime.volumes import cleanup_mountpoints

log = logging.getLogger(__name__)

STATE_FILE = "runtime.json"
# mountpoints: directories/files created on the host for pods' volume mounts (runtime/volumes.py)
LIST_KINDS = ("netns", "veths", "etc_netns", "dirs", "mountpoints")


class RuntimeAlreadyRunning(RuntimeError):
    """The state directory belongs to a runtime process that is still alive."""


class StateRecord:
    """In-memory copy of runtime.json, rewritten atomically on every change."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_FILE
        self.data: dict[str, Any] = _empty()

    def claim(self) -> None:
        """Start a fresh record owned by the current process."""
        self.data = _empty()
        self.data["owner"] = {"pid": os.getpid(), "start": proc_start_time(os.getpid())}
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True))
        os.replace(tmp, self.path)

    def add(self, kind: str, value: str) -> None:
        items: list[str] = self.data[kind]
        if value not in items:
            items.append(value)
            self.save()

    def remove(self, kind: str, value: str) -> None:
        items: list[str] = self.data[kind]
        if value in items:
            items.remove(value)
            self.save()

    def set_bridge(self, name: str | None) -> None:
        self.data["bridge"] = name
        self.save()

    def add_process(self, pid: int, start: int | None, what: str) -> None:
        self.data["processes"].append({"pid": pid, "start": start, "what": what})
        self.save()

    def remove_process(self, pid: int) -> None:
        self.data["processes"] = [p for p in self.data["processes"] if p["pid"] != pid]
        self.save()

    def set_host_rules(self, installed: bool) -> None:
        """The host's iptables rules forwarding 127.0.0.1 ports to the ingress gateway (runtime/host_ports.py)."""
        self.data["host_rules"] = installed
        self.save()

    def set_pods(self, pods: dict[str, Any]) -> None:
        """The running pods, as `Pod.record_entry()` describes them (saved only when they changed)."""
        if self.data.get("pods") != pods:
            self.data["pods"] = pods
            self.save()

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
        self.data = _empty()


def _empty() -> dict[str, Any]:
    return {
        "owner": None,
        "bridge": None,
        "host_netns": None,  # a name for the host's netns, recorded by earlier versions (removed if found)
        "host_rules": None,
        "processes": [],
        "pods": {},
        **{k: [] for k in LIST_KINDS},
    }


def load_record(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None
    if not isinstance(data, dict):
        return None
    merged = _empty()
    merged.update(data)
    return merged


def owner_alive(record: dict[str, Any]) -> int | None:
    """PID of the live runtime that owns `record` (other than us), else None."""
    owner = record.get("owner") or {}
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return None
    return pid if same_process_alive(pid, owner.get("start")) else None


def _run(*argv: str) -> None:
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def kill_recorded(processes: list[dict[str, Any]], grace: float = 0.0) -> None:
    """Stop recorded processes (and their process groups) that are still the same process."""
    alive = [p for p in processes if isinstance(p.get("pid"), int) and same_process_alive(p["pid"], p.get("start"))]
    sigs = [signal.SIGTERM, signal.SIGKILL] if grace > 0 else [signal.SIGKILL]
    for sig in sigs:
        for p in alive:
            pid = p["pid"]
            try:
                # Children are started with start_new_session=True: pgid == pid.
                if os.getpgid(pid) == pid:
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 3.0)
        while time.monotonic() < deadline:
            alive = [p for p in alive if same_process_alive(p["pid"], p.get("start"))]
            if not alive:
                return
            time.sleep(0.05)


def kill_netns_processes(netns: str) -> None:
    """SIGKILL every process still inside a pod netns (all of them are ours, grandchildren included)."""
    if not Path(f"/run/netns/{netns}").exists():
        return
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False).stdout
    for pid in (int(p) for p in out.split() if p.isdigit()):
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def cleanup_record(record: dict[str, Any]) -> None:
    """Remove everything listed in `record` (synchronously, ignoring what is already gone)."""
    kill_recorded(list(record.get("processes", [])))
    for ns in record.get("netns", []):
        kill_netns_processes(ns)
    for veth in record.get("veths", []):
        if Path(f"/sys/class/net/{veth}").exists():
            _run("ip", "link", "del", veth)
    for ns in record.get("netns", []):
        if Path(f"/run/netns/{ns}").exists():
            _run("ip", "netns", "del", ns)
    for d in record.get("etc_netns", []):
        shutil.rmtree(Path("/etc/netns") / d, ignore_errors=True)
    for d in record.get("dirs", []):
        shutil.rmtree(d, ignore_errors=True)
    cleanup_mountpoints(record.get("mountpoints", []))
    host_netns = record.get("host_netns")
    if host_netns and Path(f"/run/netns/{host_netns}").exists():
        # A name for the host's own namespace (`ip netns attach`): only the name goes, nothing in it.
        _run("ip", "netns", "del", host_netns)
    if record.get("host_rules"):
        remove_rules()
    bridge = record.get("bridge")
    if bridge and Path(f"/sys/class/net/{bridge}").exists():
        _run("ip", "link", "del", bridge)
    if bridge:
        _run(*service_route("del"))


def cleanup_leftovers(state_dir: Path, *, force: bool = False) -> bool:
    """Remove what a dead runtime left behind (netns, veths, bridge, dirs, processes).

    Returns True if there was a record to clean. Raises RuntimeAlreadyRunning if the
    runtime that owns `state_dir` is still alive (unless `force`).
    """
    record = load_record(Path(state_dir))
    if record is None:
        return False
    pid = owner_alive(record)
    if pid is not None and not force:
        raise RuntimeAlreadyRunning(f"the runtime that owns {state_dir} is still running (pid {pid})")
    cleanup_record(record)
    (Path(state_dir) / STATE_FILE).unlink(missing_ok=True)
    return True
