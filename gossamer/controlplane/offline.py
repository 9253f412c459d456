"""Checks that need no running mesh: `gossamer analyze` when nothing is up."""

from __future__ import annotations

from collections.abc import Sequence

from gossamer.controlplane.analyze import analyze
from gossamer.controlplane.config import parse_files
from gossamer.controlplane.kubernetes import BUILTIN_SOURCE, builtin_documents
from gossamer.resources.loader import resource_from_raw


def analyze_files(files: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """(errors, warnings) for these files, cross-checked against each other and the built-ins."""
    resources, errors, warnings = parse_files(files)
    if errors:
        return [str(e) for e in errors], [str(w) for w in warnings]
    builtins = [resource_from_raw(doc, BUILTIN_SOURCE, 0) for doc in builtin_documents()]
    warnings.extend(analyze(resources, builtins))
    return [], [str(w) for w in warnings]
