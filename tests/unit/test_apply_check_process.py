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
