"""Reading YAML into typed `Resource`s, with every problem pinned to its file and line.

    resources, issues = load_paths(["samples/bookinfo/"])
    resources, issues = parse_documents(text, "vs.yaml")

Only objects without errors are returned in `resources`; `issues` holds every error and
warning. Each object remembers the line of each of its fields (`Resource.line_of`).
"""

from __future__ import annotations

import difflib
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gossamer.resources.base import FieldPath, Metadata, Resource, format_path
from gossamer.resources.issues import Issue
from gossamer.resources.kinds import ALL_KINDS, KindInfo, kind_for, lookup_kind
from gossamer.resources.validation import Finding, check_metadata
from gossamer.resources.yamldoc import Document, YamlInputError, read_documents

_BASE_TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec", "status")


class ResourceError(ValueError):
    """Raised by `resource_from_raw` when a document does not parse; `issues` says why."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("; ".join(str(i) for i in issues))
        self.issues = issues


# ---------------------------------------------------------------------------- pydantic errors


def _model_types(annotation: Any) -> list[Any]:
    """The types an annotation may hold, unwrapped from Optional/Union/Annotated."""
    out: list[Any] = []
    todo = [annotation]
    while todo:
        t = todo.pop()
        origin = typing.get_origin(t)
        if origin is typing.Annotated:
            todo.append(typing.get_args(t)[0])
        elif origin in (typing.Union, types.UnionType):
            todo.extend(typing.get_args(t))
        elif t is not type(None):
            out.append(t)
    return out


def _field_names_at(model: type[BaseModel], loc: Sequence[Any]) -> set[str]:
    """The field names the object at `loc` (a pydantic error location below `model`) accepts."""
    current: list[Any] = [model]
    for part in loc:
        following: list[Any] = []
        for t in current:
            origin = typing.get_origin(t)
            if isinstance(t, type) and issubclass(t, BaseModel) and isinstance(part, str):
                for name, f in t.model_fields.items():
                    if part in (name, f.alias):
                        following.extend(_model_types(f.annotation))
            elif origin in (list, tuple, set, frozenset) and isinstance(part, int):
                following.extend(_model_types(typing.get_args(t)[0]))
            elif origin is dict and typing.get_args(t):
                following.extend(_model_types(typing.get_args(t)[1]))
        # parts that name no field (pydantic's union tags) leave the candidates as they were
        current = following or current
    names: set[str] = set()
    for t in current:
        if isinstance(t, type) and issubclass(t, BaseModel):
            names.update(f.alias or n for n, f in t.model_fields.items())
    return names


def _suggest(key: str, candidates: set[str] | Sequence[str]) -> str:
    """' (did you mean X?)' for a close field name of the same object, never `key` itself; cheap
    even for thousands of unknown keys (the candidates are one object's fields)."""
    if len(key) > 100:
        return ""
    close = difflib.get_close_matches(key, sorted(c for c in candidates if c != key), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _resolve_loc(raw: Any, loc: Sequence[Any]) -> tuple[FieldPath, FieldPath]:
    """Map a pydantic error location onto the document: (path to show, path whose line to use).
    Parts that are not in the document (union tags, '[key]') are dropped; a missing key at
    the end is shown but the line is its parent's."""
    cur = raw
    shown: list[str | int] = []
    found: list[str | int] = []
    for i, part in enumerate(loc):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
            shown.append(part)
            found.append(part)
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
            shown.append(part)
            found.append(part)
        elif i == len(loc) - 1 and isinstance(part, str) and isinstance(cur, dict):
            shown.append(part)
    return tuple(shown), tuple(found)


def _pydantic_findings(
    err: ValidationError, raw_root: Any, prefix: FieldPath, model: type[BaseModel]
) -> list[tuple[FieldPath, FieldPath, str]]:
    out: list[tuple[FieldPath, FieldPath, str]] = []
    seen: set[FieldPath] = set()
    for e in err.errors():
        shown, found = _resolve_loc(raw_root, prefix + tuple(e["loc"]))
        if shown in seen:
            continue
        seen.add(shown)
        etype = e["type"]
        msg = str(e["msg"])
        if etype == "extra_forbidden":
            key = shown[-1] if shown else "?"
            fields = _field_names_at(model, tuple(e["loc"])[:-1])
            msg = f"unknown field {key!r}" + (_suggest(key, fields) if isinstance(key, str) else "")
            shown = shown[:-1]
        elif etype == "missing":
            msg = "required field is missing"
        else:
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            value = e.get("input")
            if not isinstance(value, dict | list) and etype not in ("value_error",):
                text = repr(value)
                msg += f" (got {text if len(text) <= 60 else text[:57] + '...'})"
        out.append((shown, found, msg))
    return out


# ---------------------------------------------------------------------------- one document


class _Doc:
    """Collects issues for one object."""

    def __init__(self, filename: str, lines: dict[FieldPath, int], doc_line: int, kind: str, name: str) -> None:
        self.filename = filename
        self.lines = lines
        self.doc_line = doc_line
        self.kind = kind
        self.name = name
        self.issues: list[Issue] = []

    def line(self, path: FieldPath) -> int:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.doc_line

    def add(
        self, level: str, shown: FieldPath, message: str, line_path: FieldPath | None = None, line: int = 0
    ) -> None:
        self.issues.append(
            Issue(
                level="error" if level == "error" else "warning",
                file=self.filename,
                line=line or self.line(shown if line_path is None else line_path),
                kind=self.kind,
                name=self.name,
                field=format_path(shown),
                message=message,
            )
        )

    @property
    def failed(self) -> bool:
        return any(i.level == "error" for i in self.issues)


KindLookup = Callable[[str, dict[str, Any]], KindInfo[Any] | None]
"""(kind, document) -> the kind's KindInfo; `gossamer analyze` passes one that also knows the
kinds it only reads for analysis (Pods, ConfigMaps, webhooks, Gateway API objects, ...)."""


def _kind_lookup(kind: str, raw: dict[str, Any]) -> KindInfo[Any] | None:
    return kind_for(kind)


def _parse_object(
    raw: Any,
    filename: str,
    lines: dict[FieldPath, int],
    doc_line: int,
    validate: bool = True,
    kinds: KindLookup = _kind_lookup,
) -> tuple[Resource[Any] | None, list[Issue]]:
    """One document (RAW, at DOC_LINE of FILENAME) as its kind's Resource, or None and why not."""
    if not isinstance(raw, dict):
        doc = _Doc(filename, lines, doc_line, "", "")
        doc.add(
            "error",
            (),
            f"a document must be a mapping with apiVersion, kind and metadata, got {type(raw).__name__}",
        )
        return None, doc.issues
    kind = raw.get("kind")
    meta_raw = raw.get("metadata")
    name = meta_raw.get("name") if isinstance(meta_raw, dict) else None
    doc = _Doc(
        filename,
        lines,
        doc_line,
        kind if isinstance(kind, str) else "",
        name if isinstance(name, str) else "",
    )
    info = _kind_info(doc, raw, kinds)
    if info is None:
        return None, doc.issues
    _check_top_level(doc, raw, info)
    if not isinstance(meta_raw, dict):
        doc.add("error", ("metadata",), "metadata with a name is required")
        return None, doc.issues
    metadata = _parse_metadata(doc, raw, meta_raw, info)
    spec = _parse_spec(doc, raw, info)
    if doc.failed or metadata is None:
        return None, doc.issues

    resource = info.resource_class(
        api_version=raw["apiVersion"],
        kind=raw["kind"],
        metadata=metadata,
        spec=spec,
        source_file=filename,
        source_line=doc_line,
        raw=raw,
    ).with_lines(lines)

    if validate:
        _validate(doc, resource, info)
    doc.issues.sort(key=lambda i: i.line)
    if doc.failed:
        return None, doc.issues
    return resource, doc.issues


def _kind_info(doc: _Doc, raw: dict[Any, Any], kinds: KindLookup) -> KindInfo[Any] | None:
    """The document's kind, if it is one we take at the apiVersion it names (else None, with why in DOC)."""
    kind = raw.get("kind")
    api_version = raw.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        doc.add("error", ("kind",), "kind is required")
        return None
    info = kinds(kind, raw)
    if info is None:
        hint = ""
        try:
            hint = f" (did you mean {lookup_kind(kind).kind!r}?)"
        except KeyError:
            pass
        supported = ", ".join(k.kind for k in ALL_KINDS if k.appliable)
        doc.add("error", ("kind",), f"unknown kind {kind!r}{hint}; supported kinds: {supported}")
        return None
    if not info.appliable:
        doc.add("error", ("kind",), f"{kind} objects cannot be applied; they are created from Deployments")
        return None
    if not isinstance(api_version, str) or not api_version:
        doc.add("error", ("apiVersion",), f"apiVersion is required (e.g. {info.preferred_api_version})")
        return None
    if api_version not in info.api_versions:
        doc.add(
            "error",
            ("apiVersion",),
            f"{kind} is not served at apiVersion {api_version!r}; use one of {', '.join(info.api_versions)}",
        )
        return None
    return info


def _check_top_level(doc: _Doc, raw: dict[Any, Any], info: KindInfo[Any]) -> None:
    allowed = set(_BASE_TOP_LEVEL) | set(info.extra_top_level)
    if info.spec_model is None:
        allowed.discard("spec")
    for key in raw:
        if key not in allowed:
            doc.add(
                "error",
                (key,) if isinstance(key, str) else (),
                f"unknown field {key!r}" + (_suggest(key, sorted(allowed)) if isinstance(key, str) else ""),
            )


def _parse_metadata(doc: _Doc, raw: dict[Any, Any], meta_raw: dict[Any, Any], info: KindInfo[Any]) -> Metadata | None:
    metadata: Metadata | None = None
    try:
        metadata = Metadata.model_validate(meta_raw)
    except ValidationError as e:
        for shown, found, msg in _pydantic_findings(e, raw, ("metadata",), Metadata):
            doc.add("error", shown, msg, found)
    if metadata is not None:
        if not info.namespaced:
            metadata = metadata.model_copy(update={"namespace": ""})
        elif metadata.namespace == "":
            metadata = metadata.model_copy(update={"namespace": "default"})
    return metadata


def _parse_spec(doc: _Doc, raw: dict[Any, Any], info: KindInfo[Any]) -> Any:
    """The kind's spec model (None for kinds without a spec, or when it does not parse: then DOC says why)."""
    if info.spec_model is None:
        return None
    spec_raw = raw.get("spec")
    if spec_raw is None:
        spec_raw = {}
    if not isinstance(spec_raw, dict):
        doc.add("error", ("spec",), f"spec must be a mapping, got {type(spec_raw).__name__}")
        return None
    try:
        return info.spec_model.model_validate(spec_raw)
    except ValidationError as e:
        for shown, found, msg in _pydantic_findings(e, raw, ("spec",), info.spec_model):
            doc.add("error", shown, msg, found)
        return None


def _validate(doc: _Doc, resource: Resource[Any], info: KindInfo[Any]) -> None:
    findings: list[Finding] = check_metadata(resource, info.namespaced, info.name_rule)
    try:
        findings += info.validator(resource)
    except Exception as e:  # a validator bug must not hide the object's other problems
        findings.append(Finding("error", (), f"internal error while validating: {e!r}"))
    for f in findings:
        doc.add(f.level, f.path, f.message, line=f.line)


def _sub_document(doc: Document, prefix: FieldPath) -> Document:
    """The part of a document under `prefix` (a List's item) as a document of its own."""
    n = len(prefix)
    return Document(
        data=None,
        line=doc.lines.get(prefix, doc.line),
        lines={p[n:]: line for p, line in doc.lines.items() if p[:n] == prefix and len(p) > n},
        duplicates=[(p[n:], line) for p, line in doc.duplicates if p[:n] == prefix and len(p) > n],
    )


def _build_document(
    doc: Document, raw: Any, filename: str, kinds: KindLookup = _kind_lookup
) -> tuple[list[Resource[Any]], list[Issue]]:
    resources: list[Resource[Any]] = []
    issues: list[Issue] = []
    if isinstance(raw, dict) and raw.get("kind") == "List" and "items" in raw:
        items = raw.get("items")
        if not isinstance(items, list):
            issues.append(
                Issue(
                    "error", filename, doc.lines.get(("items",), doc.line), "List", "", "items", "items must be a list"
                )
            )
            return resources, issues
        for i, item in enumerate(items):
            r, found = _build_document(_sub_document(doc, ("items", i)), item, filename, kinds)
            resources += r
            issues += found
        return resources, issues
    resource, found = _parse_object(raw, filename, doc.lines, doc.line, kinds=kinds)
    if doc.duplicates:
        kind = raw.get("kind", "") if isinstance(raw, dict) else ""
        meta = raw.get("metadata") if isinstance(raw, dict) else None
        name = meta.get("name", "") if isinstance(meta, dict) else ""
        for path, line in doc.duplicates:
            found.append(
                Issue(
                    "error",
                    filename,
                    line,
                    str(kind),
                    str(name),
                    format_path(path),
                    "duplicate key: the same field is set twice",
                )
            )
        resource = None
    if resource is not None:
        resources.append(resource)
    issues += found
    return resources, issues


# ---------------------------------------------------------------------------- public API


def parse_documents(
    text: str, filename: str, kinds: KindLookup = _kind_lookup
) -> tuple[list[Resource[Any]], list[Issue]]:
    """Parse multi-document YAML. Returns the objects without errors, and every issue.
    `kinds` decides which kinds are read (default: the kinds Gossamer runs). Never raises for any
    text (see `yamldoc`: bounded depth, aliases and sizes)."""
    resources: list[Resource[Any]] = []
    issues: list[Issue] = []
    try:
        for doc in read_documents(text):
            r, i = _build_document(doc, doc.data, filename, kinds)
            resources += r
            issues += i
    except YamlInputError as e:
        message = e.message if e.message.startswith("invalid YAML") else f"invalid YAML: {e.message}"
        issues.append(Issue("error", filename, e.line, "", "", "", message))
    _check_duplicates(resources, issues)
    return resources, issues


def _check_duplicates(
    resources: list[Resource[Any]], issues: list[Issue], first: dict[Any, Resource[Any]] | None = None
) -> None:
    seen: dict[Any, Resource[Any]] = {} if first is None else first
    for r in resources:
        prev = seen.get(r.key)
        if prev is not None and (prev.source_file, prev.source_line) != (r.source_file, r.source_line):
            issues.append(
                Issue(
                    "warning",
                    r.source_file,
                    r.source_line,
                    r.kind,
                    r.name,
                    "",
                    f"defined again: replaces the definition at {prev.source_file}:{prev.source_line}",
                )
            )
        seen[r.key] = r


def in_namespace(resources: Sequence[Resource[Any]], namespace: str) -> tuple[list[Resource[Any]], list[Issue]]:
    """`-n NAMESPACE` as kubectl means it: the namespace of every namespaced object that names none;
    an object naming another namespace is an error (kubectl refuses it too)."""
    out: list[Resource[Any]] = []
    issues: list[Issue] = []
    for r in resources:
        info = kind_for(r.kind)
        meta = r.raw.get("metadata") if isinstance(r.raw, dict) else None
        written = meta.get("namespace") if isinstance(meta, dict) else None
        if info is None or not info.namespaced:
            out.append(r)
        elif written and written != namespace:
            issues.append(
                Issue(
                    "error",
                    r.source_file,
                    r.line_of("metadata.namespace"),
                    r.kind,
                    r.name,
                    "metadata.namespace",
                    f"the object's namespace {str(written)[:63]!r} does not "
                    f"match the namespace {namespace!r} given with -n",
                )
            )
        else:
            moved = r.model_copy(update={"metadata": r.metadata.model_copy(update={"namespace": namespace})})
            out.append(moved)
    return out, issues


def yaml_files(folder: Path) -> list[Path]:
    """The *.yaml / *.yml files directly in `folder` (not recursive), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))


def load_paths(paths: Sequence[str | Path]) -> tuple[list[Resource[Any]], list[Issue]]:
    """Load files and folders (a folder contributes its top-level *.yaml/*.yml files, sorted);
    "-" reads standard input."""
    resources: list[Resource[Any]] = []
    issues: list[Issue] = []
    files: list[Path | str] = []
    for p in paths:
        if str(p) == "-":
            files.append("-")
            continue
        path = Path(p)
        if path.is_dir():
            found = yaml_files(path)
            if not found:
                issues.append(Issue("warning", str(path), 0, "", "", "", "no *.yaml or *.yml files in this folder"))
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            issues.append(Issue("error", str(path), 0, "", "", "", "no such file or folder"))
    for f in files:
        if f == "-":
            text, name = sys.stdin.read(), "<stdin>"
        else:
            name = str(f)
            try:
                text = Path(f).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                issues.append(Issue("error", name, 0, "", "", "", f"cannot read: {e}"))
                continue
        r, i = parse_documents(text, name)
        resources += r
        issues += [x for x in i if not x.message.startswith("defined again:")]
    _check_duplicates(resources, issues)
    return resources, issues


def resource_from_raw(
    raw: dict[str, Any], source_file: str = "", source_line: int = 0, validate: bool = False
) -> Resource[Any]:
    """Re-parse a stored document. Raises `ResourceError` (a ValueError) if it does not parse
    (or, with validate=True, if it fails semantic validation)."""
    resource, issues = _parse_object(raw, source_file, {}, source_line, validate=validate)
    if resource is None:
        raise ResourceError([i for i in issues if i.level == "error"])
    return resource


def kind_info(resource: Resource[Any]) -> KindInfo[Any]:
    info = kind_for(resource.kind)
    if info is None:
        raise KeyError(resource.kind)
    return info
