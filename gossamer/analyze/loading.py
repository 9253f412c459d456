"""Reading what users feed `istioctl analyze`: files and cluster dumps (`kind: List` included), every
kind read (kinds no analyzer looks at are listed once as not analyzed), namespaces as istioctl sets
them (`-n`), Kubernetes' own namespaces left out, a document with errors reported (IST0106) without
failing the rest."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gossamer.analyze.kinds import analysis_kind, is_analyzed
from gossamer.analyze.messages import TYPES, Message
from gossamer.resources.base import Resource, format_path
from gossamer.resources.issues import Issue
from gossamer.resources.kinds import KindInfo, kind_for
from gossamer.resources.loader import KindLookup, parse_documents
from gossamer.resources.validation import Finding, validate_nothing

# Istio's analysis ignores these namespaces (inject.IgnoredNamespaces).
IGNORED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage"})


@dataclass
class Loaded:
    resources: list[Resource[Any]] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)  # IST0106 for documents that do not load
    warnings: list[Issue] = field(default_factory=list)  # validation warnings (not Istio analysis messages)
    not_analyzed: dict[str, int] = field(default_factory=dict)  # "group/Kind" -> how many objects
    unreadable: list[Issue] = field(default_factory=list)  # Kubernetes objects that do not parse: left out


def schema_error(issue: Issue) -> Message:
    return Message(TYPES["IST0106"], issue.kind, "", issue.name, issue.file, issue.line, issue.field, issue.message)


def _deferring_kinds() -> tuple[KindLookup, list[tuple[Resource[Any], Finding]]]:
    """A kind lookup whose validators hand their errors to a list instead of failing the object: as in
    istioctl, an object that parses but breaks a rule is reported (IST0106) and still analyzed."""
    deferred: list[tuple[Resource[Any], Finding]] = []

    def lookup(kind: str, raw: dict[str, Any]) -> KindInfo[Any]:
        # names as they come (istioctl reads a file without the API server's name rules)
        info = dataclasses.replace(analysis_kind(kind, raw), name_rule="any")
        if info.validator is validate_nothing:
            return info
        check = info.validator

        def validator(res: Resource[Any]) -> list[Finding]:
            findings = check(res)
            deferred.extend((res, f) for f in findings if f.level == "error")
            return [f for f in findings if f.level != "error"]

        return dataclasses.replace(info, validator=validator)

    return lookup, deferred


def _in_namespace(r: Resource[Any], namespace: str) -> Resource[Any]:
    if r.metadata.namespace == namespace:
        return r
    meta = r.metadata.model_copy(update={"namespace": namespace})
    return r.model_copy(update={"metadata": meta})


def load_for_analysis(files: Sequence[tuple[str, str]], namespace: str = "default") -> Loaded:
    """`files` = (name, text). Objects without `metadata.namespace` land in `namespace`, as `istioctl
    analyze -n` puts them."""
    out = Loaded()
    for filename, text in files:
        kinds, deferred = _deferring_kinds()
        resources, issues = parse_documents(text, filename, kinds=kinds)
        for res, finding in deferred:
            if not res.group.endswith("istio.io"):  # istioctl validates Istio's kinds only (IST0106)
                out.warnings.append(
                    Issue(
                        "warning",
                        res.source_file,
                        finding.line or res.line_of(finding.path),
                        res.kind,
                        res.name,
                        format_path(finding.path),
                        finding.message,
                    )
                )
                continue
            namespace_given = bool((res.raw.get("metadata") or {}).get("namespace"))
            out.messages.append(
                Message(
                    TYPES["IST0106"],
                    res.kind,
                    res.namespace if namespace_given else namespace,
                    res.name,
                    res.source_file,
                    finding.line or res.line_of(finding.path),
                    format_path(finding.path),
                    finding.message,
                )
            )
        for issue in issues:
            if issue.level == "error":
                info = kind_for(issue.kind)
                if info is not None and not info.group.endswith("istio.io"):
                    out.unreadable.append(issue)  # istioctl validates Istio's kinds only (IST0106)
                else:
                    out.messages.append(schema_error(issue))
            elif not issue.message.startswith("defined again:"):
                out.warnings.append(issue)
        for r in resources:
            meta = r.raw.get("metadata")
            if r.metadata.namespace and not (isinstance(meta, dict) and meta.get("namespace")):
                r = _in_namespace(r, namespace)
            own_ns = r.name if r.kind == "Namespace" else r.namespace
            if own_ns in IGNORED_NAMESPACES:
                continue
            if not is_analyzed(r):
                key = f"{r.group}/{r.kind}" if r.group else r.kind
                out.not_analyzed[key] = out.not_analyzed.get(key, 0) + 1
            out.resources.append(r)
    # Later definitions replace earlier ones (as kubectl apply of the files in order would).
    latest: dict[tuple[str, str, str, str], Resource[Any]] = {}
    for r in out.resources:
        latest[(r.group, r.kind, r.namespace, r.name)] = r
    out.resources = list(latest.values())
    return out
