"""`apply -n`: the namespace of documents that name none, as kubectl means it; namespaces made on demand."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from gossamer.controlplane.config import apply_files, delete_files
from gossamer.store import Store

SIMPLE = """\
apiVersion: v1
kind: Service
metadata:
  name: simple
spec:
  ports: [{name: http, port: 80}]
  selector: {app: simple}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: simple
spec:
  hosts: [simple.cncamp.io]
  http:
  - route:
    - destination: {host: simple.simple.svc.cluster.local}
"""


def test_documents_without_a_namespace_land_in_the_one_given(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    result = apply_files(store, [("simple.yaml", SIMPLE)], namespace="simple")
    assert result.ok, result.errors
    assert store.get("Service", "simple", "simple") is not None
    assert store.get("VirtualService", "simple", "simple") is not None
    assert store.get("Service", "default", "simple") is None
    # The namespace did not exist: it is created, and the user is told.
    assert store.get("Namespace", "", "simple") is not None
    assert any("namespace/simple created" in n for n in result.notes)
    again = apply_files(store, [("simple.yaml", SIMPLE)], namespace="simple")
    assert not any("created" in n for n in again.notes)
    assert delete_files(store, [("simple.yaml", SIMPLE)], "simple").ok
    assert store.get("Service", "simple", "simple") is None


def test_without_n_documents_go_to_default_and_no_namespace_is_made(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    result = apply_files(store, [("simple.yaml", SIMPLE)])
    assert result.ok and not result.notes
    assert store.get("Service", "default", "simple") is not None


def test_an_object_naming_another_namespace_is_refused_and_nothing_stored(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    text = SIMPLE.replace("  name: simple\nspec:\n  ports", "  name: simple\n  namespace: other\nspec:\n  ports")
    result = apply_files(store, [("simple.yaml", text)], namespace="simple")
    (error,) = [str(e) for e in result.errors]
    assert error == (
        "simple.yaml:5: Service/simple: metadata.namespace: the object's namespace 'other' does not "
        "match the namespace 'simple' given with -n"
    )
    assert store.get("VirtualService", "simple", "simple") is None
    assert store.get("Namespace", "", "simple") is None


async def test_up_n_applies_the_manifests_and_their_edits_in_that_namespace(tmp_path: Path) -> None:
    """`up -n simple FILE`: the control plane applies FILE as `apply -n simple` would, and an edit of
    FILE is re-applied in that namespace too (not in default)."""
    from gossamer.controlplane.daemon import ControlPlane
    from gossamer.controlplane.paths import Paths

    run_dir = Path(tempfile.mkdtemp(prefix="gsm-ns", dir="/tmp"))  # short socket paths
    manifest = tmp_path / "simple.yaml"
    manifest.write_text(SIMPLE)
    cp = ControlPlane(Paths(tmp_path / "state", run_dir))
    try:
        result = await cp.start([(str(manifest), SIMPLE)], namespace="simple")
        assert result.ok, result.errors
        assert any("namespace/simple created" in n for n in result.notes)
        assert cp.store.get("Service", "simple", "simple") is not None
        assert cp.store.get("Service", "default", "simple") is None
        cp.watcher.watch([manifest])
        manifest.write_text(SIMPLE.replace("port: 80}", "port: 8080}"))
        cp.watcher.poll()
        await cp.reapplied()
        edited = cp.store.get("Service", "simple", "simple")
        assert edited is not None and edited.body["spec"]["ports"][0]["port"] == 8080
        assert cp.store.get("Service", "default", "simple") is None
    finally:
        await cp.stop(wipe=True)
        shutil.rmtree(run_dir, ignore_errors=True)
