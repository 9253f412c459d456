"""Validate-then-store: the one path by which config enters the mesh (API, CLI, file watch)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gossamer.resources.base import Resource
from gossamer.resources.enforcement import not_enforced_issues
from gossamer.resources.issues import Issue
from gossamer.resources.loader import in_namespace, parse_documents
from gossamer.store import AppliedObject, Change, Store


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
            "changes": [
                {"action": c.kind, "kind": c.object.kind, "namespace": c.object.namespace, "name": c.object.name}
                for c in self.changes
            ],
        }


def parse_files(
    files: Sequence[tuple[str, str]],
    namespace: str | None = None,
) -> tuple[list[Resource[Any]], list[Issue], list[Issue]]:
    """`namespace`: `-n` (the namespace of objects that name none); None: Kubernetes' "default"."""
    resources: list[Resource[Any]] = []
    errors: list[Issue] = []
    warnings: list[Issue] = []
    for filename, text in files:
        parsed, issues = parse_documents(text, filename)
        if namespace is not None:
            parsed, moved = in_namespace(parsed, namespace)
            issues = [*issues, *moved]
        resources.extend(parsed)
        for r in parsed:
            issues.extend(not_enforced_issues(r))
        errors.extend(i for i in issues if i.level == "error")
        warnings.extend(i for i in issues if i.level != "error")
    return resources, errors, warnings


def applied_object(resource: Resource[Any]) -> AppliedObject:
    """What the store keeps of a parsed RESOURCE: its document as applied, without the store's own metadata."""
    body = dict(resource.raw)
    meta = dict(body.get("metadata") or {})
    kind, namespace, name = resource.key
    if namespace:
        meta["namespace"] = namespace
    for volatile in ("resourceVersion", "generation", "uid", "creationTimestamp"):
        meta.pop(volatile, None)
    body["metadata"] = meta
    return AppliedObject(kind, namespace, name, body, resource.source_file, resource.source_line)


def apply_files(
    store: Store,
    files: Sequence[tuple[str, str]],
    *,
    dry_run: bool = False,
    analyze: Callable[[list[Resource[Any]]], list[Issue]] | None = None,
    admit: Callable[[list[Resource[Any]]], list[Issue]] | None = None,
    namespace: str | None = None,
    existing: Sequence[Resource[Any]] | None = None,
    envoy_issues: list[Issue] | None = None,
) -> ApplyResult:
    """All or nothing: any error in any document stores nothing. Namespaces that objects live in and
    that do not exist yet are created with them, with a note (kubectl would need `create namespace`).
    `existing`: the stored resources as objects, when the caller has them (else read from the store)."""
    resources, errors, warnings = parse_files(files, namespace)
    result = ApplyResult(errors, warnings)
    if not errors and admit is not None:  # checks that look outside the documents (images exist)
        result.errors.extend(admit(resources))
    if result.errors:
        return result
    # Accepted means Envoy accepts: build what every proxy would receive and check it (envoycheck.py).
    from gossamer.controlplane.envoycheck import check_issues, stored_resources

    if envoy_issues is None:  # (else worked out by precheck, off the caller's event loop)
        envoy_issues = check_issues(resources, stored_resources(store) if existing is None else existing)
    result.errors.extend(envoy_issues)
    if result.errors:
        return result
    if analyze is not None:
        result.warnings.extend(analyze(resources))
    created = missing_namespaces(store, resources)
    for ns in created:
        result.notes.append(
            f"namespace/{ns} created (it did not exist; `kubectl create namespace {ns}` would be needed on a cluster)"
        )
    if not dry_run:
        stored = [namespace_object(ns) for ns in created] + [applied_object(r) for r in resources]
        result.changes = store.apply(stored)
    return result


def precheck(
    files: Sequence[tuple[str, str]], namespace: str | None, existing: Sequence[Resource[Any]]
) -> tuple[list[Issue], list[Issue]]:
    """apply_files' expensive, pure parts: (what Envoy would reject once FILES are applied over EXISTING,
    the analysis warnings). Building every proxy's config takes a while at a thousand services, so the
    control plane runs this on a worker thread and hands the results to apply_files."""
    issues = envoy_precheck(files, namespace, existing)
    return issues, ([] if issues else analysis(files, namespace, existing))


def envoy_precheck(
    files: Sequence[tuple[str, str]], namespace: str | None, existing: Sequence[Resource[Any]]
) -> list[Issue]:
    """precheck's first part: what Envoy would reject (nothing when the files do not parse: apply_files
    reports that)."""
    from gossamer.controlplane.envoycheck import check_issues

    resources, errors, _warnings = parse_files(files, namespace)
    return [] if errors else check_issues(resources, existing)


def analysis(files: Sequence[tuple[str, str]], namespace: str | None, existing: Sequence[Resource[Any]]) -> list[Issue]:
    """precheck's second part: the analysis warnings for FILES applied over EXISTING (the config before)."""
    from gossamer.controlplane.analyze import analyze

    resources, errors, _warnings = parse_files(files, namespace)
    return [] if errors else analyze(resources, existing)


IMPLICIT_NAMESPACES = ("default",)


def missing_namespaces(store: Store, resources: Sequence[Resource[Any]]) -> list[str]:
    declared = {r.name for r in resources if r.kind == "Namespace"}
    wanted = sorted({r.namespace for r in resources if r.namespace} - declared - set(IMPLICIT_NAMESPACES))
    return [ns for ns in wanted if store.get("Namespace", "", ns) is None]


def namespace_object(name: str) -> AppliedObject:
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    return AppliedObject("Namespace", "", name, body, "<created on demand>", 0)


def delete_files(store: Store, files: Sequence[tuple[str, str]], namespace: str | None = None) -> ApplyResult:
    resources, errors, warnings = parse_files(files, namespace)
    result = ApplyResult(errors, warnings)
    if not errors:
        result.changes = store.delete(r.key for r in resources)
    return result
