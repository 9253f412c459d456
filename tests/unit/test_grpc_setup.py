"""The control plane's gRPC core settings: in place when grpc is first imported, and only then."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gossamer.controlplane.grpc_setup import GRPC_EXPERIMENTS

REPO = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: records GRPC_EXPERIMENTS as it is when `grpc` is imported (gRPC core reads it then).
PROBE = """
import json, os, sys
seen = []

class Finder:
    def find_spec(self, name, path=None, target=None):
        if name == "grpc":
            seen.append(os.environ.get("GRPC_EXPERIMENTS"))
        return None

sys.meta_path.insert(0, Finder())
if sys.argv[1] == "imported":
    import grpc
from gossamer.controlplane.grpc_setup import use_grpc_experiments
applied = use_grpc_experiments()
import grpc
print(json.dumps({"applied": applied, "at_import": seen, "after": os.environ.get("GRPC_EXPERIMENTS")}))
"""


def probe(case: str, env: dict[str, str] | None = None) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"} | (env or {})
    out = subprocess.run(
        [sys.executable, "-c", PROBE, case], cwd=REPO, env=environ, capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def test_grpc_is_imported_with_the_experiments_and_the_environment_is_left_as_it_was() -> None:
    got = probe("fresh")
    assert got == {"applied": True, "at_import": [GRPC_EXPERIMENTS], "after": None}


def test_an_operators_grpc_experiments_wins() -> None:
    got = probe("fresh", {"GRPC_EXPERIMENTS": "-event_engine_client"})
    assert got == {"applied": True, "at_import": ["-event_engine_client"], "after": "-event_engine_client"}


def test_too_late_once_grpc_is_imported() -> None:
    got = probe("imported")
    assert got == {"applied": False, "at_import": [None], "after": None}
