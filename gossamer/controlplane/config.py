"""Validate-then-store: the one path by which config enters the mesh (API, CLI, file watch)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gossamer.resources.enforcement import not_enforced_issues
from gossamer.resources.issues import Issue
from gossamer.resources.loader import parse_documents
from gossamer.store import Change, Store


@dataclass
class ApplyResult:
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "errors": [str(i) for i in self.errors],
            "warnings": [str(i) for i in self.warnings],
            "notes": list(self.notes),
            "changes": [{"action": c.kind, "kind": c.object.kind, "namespace": c.object.namespace,
                         "name": c.object.name} for c in self.changes],
        }


def parse_files(files: Sequence[tuple[str, str]]) -> tuple[list[Any], list[Issue], list[Issue]]:
    resources: list[Any] = []
    errors: list[Issue] = []
    warnings: list[Issue] = []
    for filename, text in files:
        parsed, issues = parse_documents(text, filename)
        resources.extend(parsed)
        for r in parsed:
            issues.extend(not_enforced_issues(r))
        errors.extend(i for i in issues if i.level == "error")
        warnings.extend(i for i in issues if i.level != "error")
    return resources, errors, warnings


def stored_tuple(resource: Any) -> tuple[tuple[str, str, str], dict[str, Any], str, int]:
    body = dict(resource.raw)
    meta = dict(body.get("metadata") or {})
    kind, namespace, _name = resource.key
    if namespace:
        meta["namespace"] = namespace
    for volatile in ("resourceVersion", "generation", "uid", "creationTimestamp"):
        meta.pop(volatile, None)
    body["metadata"] = meta
    return resource.key, body, resource.source_file, resource.source_line


def apply_files(store: Store, files: Sequence[tuple[str, str]], *, dry_run: bool = False,
                analyze: Callable[[list[Any]], list[Issue]] | None = None) -> ApplyResult:
    """All or nothing: any error in any document stores nothing."""
    resources, errors, warnings = parse_files(files)
    result = ApplyResult(errors, warnings)
    if errors:
        return result
    if analyze is not None:
        result.warnings.extend(analyze(resources))
    if not dry_run:
        result.changes = store.apply(stored_tuple(r) for r in resources)
    return result


def delete_files(store: Store, files: Sequence[tuple[str, str]]) -> ApplyResult:
    resources, errors, warnings = parse_files(files)
    result = ApplyResult(errors, warnings)
    if not errors:
        result.changes = store.delete(r.key for r in resources)
    return result
