"""Supervised pod processes: spawn in a netns, log to a file, restart with back-off.

They outlive the runtime process (no parent-death signal): a restarted runtime *adopts* a process it
recorded (pid + start time), watches it through a pidfd and restarts it when it dies, as it does
for its own children.
"""

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

from gossamer.runtime.linux import proc_start_time, same_process_alive
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


async def wait_pid_exit(pid: int, start: int | None) -> None:
    """Until the process (pid + start time) is gone; works for processes that are not our children."""
    if not same_process_alive(pid, start):
        return
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, readable)
    try:
        if same_process_alive(pid, start):  # it may have gone before the pidfd was opened
            await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)


class SupervisedProcess:
    """Keeps one command running; `restarts` counts the restarts after crashes/exits.

    `adopt()` before `start()` takes over a process a previous runtime started.
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
        self.start_time: int | None = None  # the process's start time (/proc), with pid: its identity
        self._adopted = False  # the current process was started by a previous runtime

    @property
    def running(self) -> bool:
        if self._adopted:
            return True
        return self._proc is not None and self._proc.returncode is None

    def adopt(self, pid: int, start_time: int | None, *, restarts: int, started_at: float) -> None:
        """Take over a running process a previous runtime started (call before start())."""
        self.pid, self.start_time = pid, start_time
        self.restarts = restarts
        self.started_at = started_at
        self._adopted = True
        self._generation += 1
        self.record.add_process(pid, start_time, self.name)

    def entry(self) -> dict[str, object]:
        """What the state record keeps to adopt this process later."""
        return {
            "pid": self.pid if self.running else None,
            "start": self.start_time,
            "argv": self.argv,
            "restarts": self.restarts,
            "startedAt": self.started_at,
        }

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
            )
        self.start_time = proc_start_time(proc.pid)
        self.record.add_process(proc.pid, self.start_time, f"{self.name}")
        return proc

    async def _supervise(self) -> None:
        backoff = BACKOFF_INITIAL
        if self._adopted and self.pid is not None:
            await wait_pid_exit(self.pid, self.start_time)
            self._adopted = False
            self.record.remove_process(self.pid)
            if self._stopping:
                return
            self._log_line(f"{self.name} exited (adopted process, code unknown); restarting in {backoff:.1f}s")
            self.restarts += 1
            self.on_change()
            await asyncio.sleep(backoff)
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
        if self._adopted and self.pid is not None:
            pid, start = self.pid, self.start_time
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                if same_process_alive(pid, start):
                    _signal_group(pid, sig)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wait_pid_exit(pid, start), wait)
                if not same_process_alive(pid, start):
                    break
            self._adopted = False
            self.record.remove_process(pid)
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
