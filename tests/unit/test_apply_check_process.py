"""apply's validation in its own process (controlplane/apply_check.py) finds what the same check on this
process finds, over the store as it is at each apply: the worker keeps a copy it is sent changes of."""

from __future__ import annotations

from pathlib import Path

import yaml

from gossamer.controlplane.apply_check import ApplyChecker
from gossamer.controlplane.config import apply_files, precheck
from gossamer.controlplane.envoycheck import stored_resources
from gossamer.controlplane.kubernetes import BUILTIN_SOURCE, builtin_documents
from gossamer.store import Store

ROOT = Path(__file__).resolve().parents[2]

BROKEN_HEADER = """\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: headers, namespace: default}
spec:
  workloadSelector: {labels: {app: reviews}}
  configPatches:
  - applyTo: HTTP_ROUTE
    match: {context: SIDECAR_OUTBOUND}
    patch:
      operation: MERGE
      value: {request_headers_to_add: [{header: {key: x-broken, value: "a\\u0000b"}}]}
"""


async def test_the_checker_process_agrees_with_the_check_here_as_the_store_changes(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    apply_files(store, [(BUILTIN_SOURCE, yaml.safe_dump_all(builtin_documents()))])
    bookinfo = [(str(f), f.read_text()) for f in sorted((ROOT / "samples" / "bookinfo").glob("*.yaml"))]
    assert apply_files(store, bookinfo).ok
    vs = (ROOT / "samples/bookinfo/networking/virtual-service-all-v1.yaml").read_text()
    checker = ApplyChecker()
    try:
        refused = []
        for files in ([("ef.yaml", BROKEN_HEADER)], [("vs.yaml", vs)]):
            existing = stored_resources(store)
            here = precheck(files, None, existing)
            there = await checker.precheck(files, None, existing)
            assert [str(i) for i in there[0]] == [str(i) for i in here[0]]
            assert [str(i) for i in there[1]] == [str(i) for i in here[1]]
            refused.append([i.kind for i in there[0]])
            # The same in two steps (apply: the check, then the analysis while the change is pushed).
            issues = await checker.check(files, None, existing)
            warnings = await checker.analysis(files, None) if not issues else []
            assert ([str(i) for i in issues], [str(i) for i in warnings]) == tuple([str(i) for i in x] for x in here)
        assert refused == [["EnvoyFilter"], []]
        # The store changes (the VirtualService stored, reviews' Deployment gone): the worker's copy follows.
        assert apply_files(store, [("vs.yaml", vs)]).ok
        store.delete([("Deployment", "default", "reviews-v1")])
        existing = stored_resources(store)
        files = [("ef.yaml", BROKEN_HEADER)]
        assert [str(i) for i in (await checker.precheck(files, None, existing))[0]] == [
            str(i) for i in precheck(files, None, existing)[0]
        ]
    finally:
        checker.stop()


def test_the_checker_process_goes_when_the_control_plane_is_killed(tmp_path: Path) -> None:
    """`kill -9` of the control plane leaves no checker process behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "cp.py"
    script.write_text(
        "import asyncio\n"
        "from gossamer.controlplane.apply_check import ApplyChecker, _check_in_worker\n"
        "async def main():\n"
        "    checker = ApplyChecker()\n"
        "    await checker.precheck([], None, [])\n"
        "    pool = checker._pool\n"
        "    print(*[p.pid for p in pool._processes.values()], flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n"
    )
    cp = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert cp.stdout is not None
    worker = int(cp.stdout.readline())
    os.kill(cp.pid, signal.SIGKILL)
    cp.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{worker}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break  # gone (a zombie until init reaps it)
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        os.kill(worker, signal.SIGKILL)
        raise AssertionError("the checker process outlived its control plane")


def _read(path: Path) -> str:
    """In the checker process (the test sends it this function)."""
    return path.read_text()


async def test_started_as_root_the_checker_runs_as_a_user_of_its_own_without_capabilities(tmp_path: Path) -> None:
    import os

    import pytest

    from gossamer.mesh import APPLY_CHECK_UID

    if os.geteuid() != 0:
        pytest.skip("the checker drops root only when the control plane has it")
    secret = tmp_path / "root-only"
    secret.write_text("key")
    secret.chmod(0o600)
    store = Store(tmp_path / "store.db")
    apply_files(store, [(BUILTIN_SOURCE, yaml.safe_dump_all(builtin_documents()))])
    assert apply_files(store, [(str(f), f.read_text()) for f in (ROOT / "samples" / "bookinfo").glob("*.yaml")]).ok
    checker = ApplyChecker()
    try:
        issues, _ = await checker.precheck([("ef.yaml", BROKEN_HEADER)], None, stored_resources(store))
        assert [i.kind for i in issues] == ["EnvoyFilter"]  # it still checks
        assert checker._pool is not None
        (pid,) = checker._pool._processes
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        assert status["Uid"].split() == [str(APPLY_CHECK_UID)] * 4
        assert status["Gid"].split() == [str(APPLY_CHECK_UID)] * 4
        assert status["Groups"].split() == []
        assert status["CapEff"].strip() == status["CapPrm"].strip() == "0000000000000000"
        assert status["NoNewPrivs"].strip() == "1"
        with pytest.raises(PermissionError):
            checker._pool.submit(_read, secret).result(timeout=30)
    finally:
        checker.stop()


class _BrokenPool:
    """A worker pool whose process died."""

    def submit(self, *args: object, **kwargs: object) -> None:
        from concurrent.futures.process import BrokenProcessPool

        raise BrokenProcessPool("the worker died")

    def shutdown(self, *args: object, **kwargs: object) -> None:
        pass


async def test_a_check_on_a_thread_is_analysed_on_a_thread_over_the_same_config(tmp_path: Path) -> None:
    """The worker died at the check: the check ran on a thread, and so does its analysis (a new worker would not
    hold the config the change is analysed over)."""
    store = Store(tmp_path / "store.db")
    apply_files(store, [(BUILTIN_SOURCE, yaml.safe_dump_all(builtin_documents()))])
    bookinfo = [(str(f), f.read_text()) for f in sorted((ROOT / "samples" / "bookinfo").glob("*.yaml"))]
    assert apply_files(store, bookinfo).ok
    existing = stored_resources(store)
    vs = (ROOT / "samples/bookinfo/networking/virtual-service-all-v1.yaml").read_text()
    files = [("vs.yaml", vs.replace("host: reviews", "host: nowhere"))]  # a host analysis warns about
    here = precheck(files, None, existing)
    assert here[1]
    checker = ApplyChecker()
    checker._pool = _BrokenPool()  # type: ignore[assignment]
    try:
        issues = await checker.check(files, None, existing)
        warnings = await checker.analysis(files, None)
        assert ([str(i) for i in issues], [str(i) for i in warnings]) == tuple([str(i) for i in x] for x in here)
    finally:
        checker.stop()
