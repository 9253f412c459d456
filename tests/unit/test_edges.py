"""The edges (the REST API and the dashboard) reach the control plane through `ControlPlaneFacade` only:
no `self.control_plane.store.revision()`-style chain through its parts, so a change inside the control
plane changes the facade, not the handlers."""

from __future__ import annotations

import ast
from pathlib import Path

import gossamer

EDGES = ("api", "dashboard")
# Whatever the edges call the control plane they hold.
FACADE_ATTRIBUTES = ("control_plane", "cp")


def _edge_modules() -> list[Path]:
    root = Path(gossamer.__file__).parent
    return sorted(p for edge in EDGES for p in (root / edge).rglob("*.py"))


def _chains(tree: ast.AST) -> list[tuple[int, str]]:
    """`X.control_plane.A.B` (B read from one of the control plane's parts), with its line."""
    out = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)):
            continue
        inner = node.value.value
        if isinstance(inner, ast.Attribute) and inner.attr in FACADE_ATTRIBUTES:
            out.append((node.lineno, f"{inner.attr}.{node.value.attr}.{node.attr}"))
    return out


def test_the_edges_use_the_facade_not_the_control_planes_parts() -> None:
    modules = _edge_modules()
    assert any(p.name == "server.py" for p in modules) and any(p.name == "views.py" for p in modules)
    found = [
        f"{path.relative_to(Path(gossamer.__file__).parent)}:{line}: {chain}"
        for path in modules
        for line, chain in _chains(ast.parse(path.read_text()))
    ]
    assert found == [], "add the operation to controlplane/facade.py:\n" + "\n".join(found)


def test_the_check_sees_a_chain() -> None:
    assert _chains(ast.parse("self.control_plane.store.revision()")) == [(1, "control_plane.store.revision")]
    assert _chains(ast.parse("self.control_plane.revision()")) == []
