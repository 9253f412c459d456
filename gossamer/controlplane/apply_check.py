"""apply's validation in a process of its own: what Envoy would reject and the analysis warnings
(`config.precheck`) for a thousand services take most of a CPU-second of pure Python. On a worker thread of
the control plane it holds the GIL the event loop needs (the API, the proxies' streams); in this process it
does not. The worker keeps the stored resources it was last given and its offline snapshot
(`envoycheck`'s carry-over), so a check sends only what changed in the store since the previous one.

    checker = ApplyChecker()
    issues, warnings = await checker.precheck(files, namespace, existing)

If the worker dies, the check runs on a thread as before and a new worker starts for the next one.

The check is pure Python over what it is sent (file contents, resources): it needs no root. Started by a
root control plane, the worker drops to `APPLY_CHECK_UID` (no groups, no capabilities, no_new_privs) before
it takes any work, in a mount namespace of its own where the Python it runs stays readable even under a
private directory (`runtime/sandbox.py expose_lines`, as for a pod's command).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import gossamer
from gossamer.controlplane.config import analysis, envoy_precheck, precheck
from gossamer.controlplane.envoycheck import prepare
from gossamer.mesh import APPLY_CHECK_UID
from gossamer.resources.issues import Issue
from gossamer.runtime.linux import set_no_new_privs, unshare_mounts
from gossamer.runtime.sandbox import default_exposed, expose_lines

log = logging.getLogger(__name__)

Key = tuple[str, str, str]
PARENT_CHECK_SECONDS = 1.0

# The worker's copy of the stored resources (in the worker process only), and the config the last check
# was of (what its analysis is of).
_held: dict[Key, Any] = {}
_checked_over: list[Any] = []


def _check_in_worker(
    files: Sequence[tuple[str, str]],
    namespace: str | None,
    order: list[Key],
    changed: list[Any],
    reset: bool,
    analysis_too: bool = True,
) -> tuple[list[Issue], list[Issue]]:
    """In the worker: bring its copy of the store up to date (CHANGED resources; ORDER: every stored key,
    as the store orders them, which decides precedence), then check FILES over it (and analyse them, unless
    not ANALYSIS_TOO: then _analyze_in_worker does, later)."""
    global _checked_over
    if reset:
        _held.clear()
    _held.update((r.key, r) for r in changed)
    existing = [_held[k] for k in order]
    for gone in _held.keys() - set(order):
        del _held[gone]
    if not files:  # only brought up to date: built now from these very objects, not at the next apply
        if reset or changed:
            prepare(existing)
        return [], []
    if analysis_too:
        return precheck(files, namespace, existing)
    _checked_over = existing
    return envoy_precheck(files, namespace, existing), []


def _analyze_in_worker(files: Sequence[tuple[str, str]], namespace: str | None) -> list[Issue]:
    """In the worker: the analysis of the FILES the last check (without analysis) checked, over the same
    config."""
    return analysis(files, namespace, _checked_over)


def _ready() -> bool:
    return True


def _drop_privileges() -> None:
    """Root -> APPLY_CHECK_UID for good, keeping the Python and Gossamer it imports from reachable."""
    if os.geteuid() != 0:
        return
    unshare_mounts()  # before any thread starts
    expose = [*default_exposed(), Path(gossamer.__file__).resolve().parent.parent]
    # Slave: the host's mounts still reach this namespace, the tmpfs covers made here never leave it.
    script = "\n".join(["set -e", "mount --make-rslave /", *expose_lines(expose)])
    subprocess.run(["sh", "-c", script], check=True, stdin=subprocess.DEVNULL)
    os.setgroups([])
    os.setresgid(APPLY_CHECK_UID, APPLY_CHECK_UID, APPLY_CHECK_UID)
    os.setresuid(APPLY_CHECK_UID, APPLY_CHECK_UID, APPLY_CHECK_UID)  # every capability goes with root
    set_no_new_privs()


def _worker_init() -> None:
    # Ctrl-C in `up` reaches the whole process group: the control plane stops its worker itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _drop_privileges()
    # A control plane killed (-9) cannot stop it, and the worker's task queue never ends (the worker holds
    # its write end too): it goes when its parent does.
    parent = os.getppid()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()


class ApplyChecker:
    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._given: dict[Key, Any] = {}  # what the worker holds (the very objects)
        # The last `check`'s files, namespace and config, and the pool whose worker checked them (None: a thread).
        self._checked: tuple[list[tuple[str, str]], str | None, list[Any], ProcessPoolExecutor | None] | None = None

    def start(self) -> None:
        """Start the worker now (it imports the translator: a second or two) rather than at the first apply."""
        self._pool_now().submit(_ready)

    def _pool_now(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a fork of this process would copy gRPC's threads' state and the whole heap.
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
            )
            self._given = {}
        return self._pool

    async def precheck(
        self, files: Sequence[tuple[str, str]], namespace: str | None, existing: Sequence[Any]
    ) -> tuple[list[Issue], list[Issue]]:
        """config.precheck(FILES, NAMESPACE, EXISTING), in the worker. One at a time (the API's apply lock)."""
        pool = self._pool_now()
        current = {r.key: r for r in existing}
        changed = [r for k, r in current.items() if self._given.get(k) is not r]
        reset = not self._given
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                pool, _check_in_worker, list(files), namespace, list(current), changed, reset
            )
        except BrokenProcessPool:
            log.warning("the apply check's process died: checking on a thread, a new process next time")
            self.stop()
            return await asyncio.to_thread(precheck, files, namespace, existing)
        self._given = current
        return result

    async def check(
        self, files: Sequence[tuple[str, str]], namespace: str | None, existing: Sequence[Any]
    ) -> list[Issue]:
        """precheck's first part only: what Envoy would reject. `analysis` then gives the warnings for the same
        files over the same EXISTING (analysis never rejects: it may run while the change is pushed)."""
        pool = self._pool_now()
        self._checked = (list(files), namespace, list(existing), pool)
        current = {r.key: r for r in existing}
        changed = [r for k, r in current.items() if self._given.get(k) is not r]
        reset = not self._given
        try:
            issues, _ = await asyncio.get_running_loop().run_in_executor(
                pool, _check_in_worker, list(files), namespace, list(current), changed, reset, False
            )
        except BrokenProcessPool:
            log.warning("the apply check's process died: checking on a thread, a new process next time")
            self.stop()
            self._checked = (list(files), namespace, list(existing), None)
            return await asyncio.to_thread(envoy_precheck, files, namespace, existing)
        self._given = current
        return issues

    async def analysis(self, files: Sequence[tuple[str, str]], namespace: str | None) -> list[Issue]:
        """The analysis warnings of the FILES the last `check` checked (the same files), over its config."""
        checked = self._checked
        if checked is None:
            raise RuntimeError("analysis without a check")
        if checked[3] is None or checked[3] is not self._pool:  # not checked by this worker: it lacks the config
            return await asyncio.to_thread(analysis, files, namespace, checked[2])
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool_now(), _analyze_in_worker, list(files), namespace
            )
        except BrokenProcessPool:
            log.warning("the apply check's process died: analysing on a thread, a new process next time")
            self.stop()
            return await asyncio.to_thread(analysis, files, namespace, checked[2])

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._given = {}
