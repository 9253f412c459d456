from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mesh import (
    BOOKINFO_RUN_DIR,
    Mesh,
    free_port,
    leftovers,
    machine_lock,
    needs_root_reason,
    skip_without_root,
)


@pytest.fixture(scope="session", autouse=True)
def one_mesh_per_machine() -> Iterator[None]:
    """Tests here create the gsm0 bridge and pods: never two sessions at once."""
    if needs_root_reason():
        yield
        return
    with machine_lock():
        yield


@pytest.fixture(scope="session", autouse=True)
def readable_tmp_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Pods run as unprivileged users of their own: the folders tests write apps and manifests into
    must be readable by them (pytest makes its temporary directories 0700)."""
    original = tmp_path_factory.mktemp

    def mktemp(basename: str, numbered: bool = True) -> Path:
        path = original(basename, numbered)
        path.chmod(0o755)
        return path

    tmp_path_factory.mktemp = mktemp  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def bookinfo() -> Iterator[Mesh]:
    """One bookinfo mesh for the session, brought up the way the README says."""
    skip_without_root()
    state = Path(tempfile.mkdtemp(prefix="gsm-e2e-"))
    mesh = Mesh(state_dir=state / "state", run_dir=BOOKINFO_RUN_DIR, ingress_port=free_port())
    before = leftovers()
    assert not before, f"a previous mesh left these behind: {before}"
    try:
        mesh.cli("up", "samples/bookinfo", "--detach", "--ingress-port", str(mesh.ingress_port), timeout=300)
        yield mesh
    finally:
        mesh.cli("down", check=False)
        shutil.rmtree(state, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The shared bookinfo mesh comes up once per session and `test_zz_down...` takes it down: run
    every e2e test that uses it first (in file order), then that one, then the e2e tests that bring
    up meshes of their own. Items outside tests/e2e keep their places."""
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if here in Path(str(item.path)).parents]

    def group(item: pytest.Item) -> int:
        if item.name.startswith("test_zz_down"):
            return 1
        return 0 if "bookinfo" in getattr(item, "fixturenames", ()) else 2

    for i, item in zip(slots, sorted((items[i] for i in slots), key=group), strict=True):
        items[i] = item
