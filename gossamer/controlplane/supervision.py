"""The supervisor's record of the mesh's processes (`<state>/processes.json`).

`gossamer up` (the supervisor) writes it whenever it starts, restarts or adopts a child; `gossamer
status` shows it and `gossamer down` stops what it lists. A recorded process is only ever signalled
if it is still the very process recorded (same pid and start time), never by name.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from gossamer.controlplane.paths import Paths
from gossamer.runtime.linux import proc_start_time, same_process_alive

CONTROL_PLANE = "controlPlane"
RUNTIME = "runtime"
SUPERVISOR = "supervisor"


def load_processes(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_processes(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.chmod(0o600)
    os.replace(tmp, path)


def process_entry(pid: int, argv: list[str], restarts: int) -> dict[str, Any]:
    return {"pid": pid, "start": proc_start_time(pid), "argv": argv, "startedAt": time.time(), "restarts": restarts}


def entry_alive(entry: dict[str, Any] | None) -> bool:
    if not entry or not isinstance(entry.get("pid"), int):
        return False
    return same_process_alive(entry["pid"], entry.get("start"))


def processes_status(paths: Paths, runtime: dict[str, Any], started_at: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(control plane, runtime) as `gossamer status -o json` shows them: pid, state, uptime, restarts."""
    record = load_processes(paths.processes_file)
    cp_entry = record.get(CONTROL_PLANE) or {}
    control_plane = {
        "pid": os.getpid(),
        "state": "Running",
        "startedAt": started_at,
        "uptimeSeconds": round(time.time() - started_at, 1),
        "restarts": int(cp_entry.get("restarts", 0)),
    }
    rt_entry = record.get(RUNTIME) or {}
    out = dict(runtime)
    if rt_entry.get("pid") and rt_entry.get("pid") != runtime.get("pid"):
        # Restarted, and not reported yet: what the supervisor started.
        alive = entry_alive(rt_entry)
        out.update(
            {
                "pid": rt_entry["pid"],
                "state": "Starting" if alive else "Down",
                "startedAt": rt_entry.get("startedAt"),
                "uptimeSeconds": None,
            }
        )
    out["restarts"] = int(rt_entry.get("restarts", 0))
    supervisor = record.get(SUPERVISOR) or {}
    control_plane["supervisor"] = {"pid": supervisor.get("pid"), "alive": entry_alive(supervisor)}
    return control_plane, out
