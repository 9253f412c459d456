"""The import layers of gossamer/ (docs/architecture.md, "Layers"): configuration flows one way, so a
module imports only modules of its own layer or of lower ones, and no modules import each other in a
cycle. Every import counts: top-level, inside functions, under `if TYPE_CHECKING`."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "gossamer"

# Lowest first. A module belongs to the layer of the longest prefix listed that names it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("gossamer", "gossamer.mesh"),  # Istio's names and numbers; imports nothing of ours
    ("gossamer.resources",),  # the typed config model, checked at load
    ("gossamer.store", "gossamer.ir", "gossamer.security", "gossamer.telemetry"),
    ("gossamer.registry",),  # services and workloads: the MeshSnapshot
    ("gossamer.translate",),  # Istio's semantics -> IR: every decision
    ("gossamer.xds",),  # IR -> Envoy protos (build), EnvoyFilter patches applied, cache, ADS
    ("gossamer.agent",),  # per pod: Envoy's bootstrap, SDS
    ("gossamer.runtime",),  # pods: netns, iptables, processes
    # The control plane's offline model of a mesh: Kubernetes objects -> registry records and proxies,
    # and what Envoy would reject (used by apply and by the analyzers).
    ("gossamer.controlplane.kubernetes", "gossamer.controlplane.offline_snapshot", "gossamer.controlplane.envoycheck"),
    ("gossamer.analyze",),  # Istio's analyzers (apply runs them too)
    ("gossamer.debug",),  # describe, explain, simulate: pure functions of a snapshot and built xDS
    ("gossamer.controlplane",),  # the istiod: store watch, push, CSRs, desired state
    ("gossamer.api",),  # REST over the API socket
    ("gossamer.dashboard",),  # the web UI (on the API's routes)
    # Entry points: each wires one process together.
    ("gossamer.cli", "gossamer.controlplane.process", "gossamer.runtime.daemon", "gossamer.ratelimit"),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer_of(module: str) -> int:
    best, layer = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), i
    assert layer >= 0, f"{module} is in no layer: add it to LAYERS"
    return layer


def _resolve(name: str) -> str | None:
    """The module of ours that `name` (a module or a name in one) is, or None for someone else's."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> Iterator[tuple[str, int]]:
    """(imported module of ours, line) for every import statement in `module`, wherever it is."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import submodule` depends on the submodule (the package's __init__ runs anyway)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            if name == "gossamer" or name.startswith("gossamer."):
                target = _resolve(name)
                if target and target != module:
                    yield target, node.lineno


GRAPH: dict[str, dict[str, int]] = {m: dict(imports(m)) for m in MODULES}


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_no_module_imports_a_higher_layer() -> None:
    wrong = [
        f"{MODULES[m].relative_to(ROOT.parent)}:{line}: {m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
        for m, targets in GRAPH.items()
        for t, line in targets.items()
        if layer_of(t) > layer_of(m)
    ]
    assert not wrong, "\n".join(wrong)


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_cycles() -> None:
    found = _cycles(GRAPH)
    assert not found, "\n".join(
        " <-> ".join(c) + ": " + ", ".join(f"{a} -> {b}" for a in c for b in GRAPH[a] if b in c) for c in found
    )


def test_the_checks_can_fail() -> None:
    """A lower layer importing a higher one, and a cycle, are found (on a made-up graph)."""
    assert layer_of("gossamer.resources.validation") < layer_of("gossamer.xds.envoyfilter")
    assert layer_of("gossamer.controlplane.process") > layer_of("gossamer.controlplane.daemon")
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b": 1}, "b": {}}) == []
