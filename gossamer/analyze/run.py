"""Running the analyzers over a set of resources: Istio's rules for what is reported (namespace
selection, `galley.istio.io/analyze-suppress`, duplicates) and in which order."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from gossamer.analyze.context import Context
from gossamer.analyze.mesh import MeshConfig
from gossamer.analyze.messages import TYPES, Message
from gossamer.analyze.registry import ANALYZERS, Analyzer
from gossamer.mesh import ROOT_NAMESPACE
from gossamer.resources.base import Resource

log = logging.getLogger(__name__)

SUPPRESS_ANNOTATION = "galley.istio.io/analyze-suppress"
BUILTIN_SOURCE = "<builtin>"


def _load_families() -> None:
    # Importing a family module registers its analyzers.
    import gossamer.analyze.analyzers  # noqa: F401


def all_analyzers() -> list[Analyzer]:
    _load_families()
    return list(ANALYZERS)


# Builds every proxy's config (seconds on a large mesh): apply already runs that check itself, and the
# running mesh's stored config passed it; so apply-time and dashboard analysis leave it out.
ENVOY_REJECT = "envoy.EnvoyRejectAnalyzer"


def without_envoy_check() -> list[Analyzer]:
    return [a for a in select_analyzers() if a.name != ENVOY_REJECT]


def select_analyzers(names: Iterable[str] | None = None) -> list[Analyzer]:
    """The analyzers named (Istio's names, e.g. "gateway.SecretAnalyzer"), or the default set. Raises
    ValueError for a name no analyzer has."""
    every = all_analyzers()
    if not names:
        return [a for a in every if a.default]
    wanted = set(names)
    unknown = wanted - {a.name for a in every}
    if unknown:
        raise ValueError(f"unknown analyzers: {', '.join(sorted(unknown))} (see `gossamer analyze --list-analyzers`)")
    return [a for a in every if a.name in wanted]


def run_analyzers(
    resources: Sequence[Resource[Any]],
    mesh: MeshConfig | None = None,
    *,
    namespace: str | None = None,
    istio_namespace: str = ROOT_NAMESPACE,
    analyzers: Sequence[Analyzer] | None = None,
) -> list[Message]:
    """Every message the analyzers find, for objects in `namespace` (None: all namespaces; messages on
    cluster-scoped objects are always kept), deduplicated and sorted by file and line."""
    ctx = Context(resources, mesh or MeshConfig(), istio_namespace)
    found: list[Message] = []
    for a in select_analyzers() if analyzers is None else analyzers:
        try:
            found.extend(a.run(ctx))
        except Exception as e:  # one analyzer's bug must not hide the others' findings
            log.exception("analyzer %s failed", a.name)
            found.append(Message(TYPES["IST0001"], "", "", "", "", 0, "", f"analyzer {a.name} failed: {e!r}"))
    return _select(found, resources, namespace)


def _select(found: Iterable[Message], resources: Sequence[Resource[Any]], namespace: str | None) -> list[Message]:
    suppressed: dict[tuple[str, str, str], set[str]] = {}
    for r in resources:
        codes = r.metadata.annotations.get(SUPPRESS_ANNOTATION)
        if codes:
            suppressed[(r.kind, r.namespace, r.name)] = {c.strip() for c in codes.split(",")}
    out: list[Message] = []
    seen: set[Message] = set()
    for m in found:
        if m in seen or m.file == BUILTIN_SOURCE:
            continue
        seen.add(m)
        if namespace is not None and m.namespace and m.namespace != namespace:
            continue
        suppress = suppressed.get((m.kind, m.namespace, m.name), set())
        if "*" in suppress or m.code in suppress:
            continue
        out.append(m)
    out.sort(key=lambda m: (m.file, m.line, m.code, m.kind, m.namespace, m.name, m.text))
    return out
