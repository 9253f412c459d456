"""Supervised child processes: spawn in a netns, log to a file, restart with back-off."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from gossamer.runtime.linux import proc_start_time, set_pdeathsig
from gossamer.runtime.state import StateRecord

log = logging.getLogger(__name__)

BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 10.0
# A process that stayed up this long gets its back-off reset.
BACKOFF_RESET_AFTER = 10.0
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


def path_with_own_python(path: str) -> str:
    """PATH with the directory of the Python running Gossamer first (once): `python3` in a container's
    command is then this interpreter, with the project's dependencies (e.g. grpcio) importable."""
    own = os.path.dirname(sys.executable)
    parts = [p for p in path.split(os.pathsep) if p]
    if not own or (parts and parts[0] == own):
        return path
    return os.pathsep.join([own, *(p for p in parts if p != own)])


def base_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env["PATH"] = path_with_own_python(env["PATH"])
    return env


def _preexec() -> None:
    set_pdeathsig(signal.SIGKILL)


class SupervisedProcess:
    """Keeps one command running; `restarts` counts the restarts after crashes/exits.

    Must be started from the event-loop thread: PR_SET_PDEATHSIG fires when the
    *thread* that forked the child exits.
    """

    def __init__(
        self,
        *,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | None,
        log_path: Path,
        record: StateRecord,
        on_change: Callable[[], None],
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_path
        self.record = record
        self.on_change = on_change
        self.restarts = 0
        self.pid: int | None = None
        self.started_at = 0.0
        self.last_exit: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._generation = 0  # increments on every (re)start, lets probes notice restarts

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def generation(self) -> int:
        return self._generation

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"supervise {self.name}")

    def _log_line(self, text: str) -> None:
        with contextlib.suppress(OSError), open(self.log_path, "a") as f:
            f.write(f"[gossamer {time.strftime('%Y-%m-%dT%H:%M:%S')}] {text}\n")

    async def _spawn(self) -> asyncio.subprocess.Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=str(self.cwd) if self.cwd else None,
                start_new_session=True,  # own process group: stop() signals the whole group
                preexec_fn=_preexec,  # noqa: PLW1509 - prctl only, spawned from the loop thread
            )
        self.record.add_process(proc.pid, proc_start_time(proc.pid), f"{self.name}")
        return proc

    async def _supervise(self) -> None:
        backoff = BACKOFF_INITIAL
        while not self._stopping:
            try:
                self._proc = await self._spawn()
            except OSError as exc:
                self._log_line(f"failed to start {self.argv!r}: {exc}")
                self._proc = None
                rc: int | None = None
            else:
                self.pid = self._proc.pid
                self.started_at = time.time()
                self._generation += 1
                self.on_change()
                rc = await self._proc.wait()
                self.record.remove_process(self._proc.pid)
                self.last_exit = rc
                if self._stopping:
                    break
                if time.time() - self.started_at >= BACKOFF_RESET_AFTER:
                    backoff = BACKOFF_INITIAL
            self._log_line(f"{self.name} exited (code {rc}); restarting in {backoff:.1f}s")
            self.restarts += 1
            self.on_change()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def stop(self, grace: float = 5.0) -> None:
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                _signal_group(proc.pid, sig)
                try:
                    await asyncio.wait_for(proc.wait(), wait)
                    break
                except TimeoutError:
                    continue
            # Anything left in the group (children of the app) goes too.
            _signal_group(proc.pid, signal.SIGKILL)
            self.record.remove_process(proc.pid)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.on_change()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
