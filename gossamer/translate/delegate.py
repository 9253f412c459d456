"""VirtualService delegation: a root rule with `delegate:` is replaced, in place, by
the delegate VirtualService's rules with the root's match merged into each one.

Istio's semantics: a delegate has no hosts and never applies on its own; the
delegate's match conditions narrow the root's (a delegate URI outside the
root's prefix is a conflict and that combination is dropped); the root rule's
other properties fill in what the delegate rule leaves unset. Destination hosts
in the delegate are resolved in the delegate's own namespace.
"""

from __future__ import annotations

from typing import Any

from gossamer.registry.snapshot import MeshSnapshot
from gossamer.resources.networking import (
    Delegate,
    Destination,
    HTTPMatchRequest,
    HTTPRoute,
    StringMatch,
    VirtualService,
)
from gossamer.translate.hosts import resolve_host

# Root rule properties a delegate rule inherits when it does not set them.
INHERITED = (
    "headers",
    "timeout",
    "retries",
    "fault",
    "mirror",
    "mirrors",
    "mirror_percentage",
    "cors_policy",
    "rewrite",
)
MATCH_FIELDS = (
    "uri",
    "scheme",
    "method",
    "authority",
    "port",
    "source_labels",
    "gateways",
    "ignore_uri_case",
    "source_namespace",
)


def find_delegate(snapshot: MeshSnapshot, root: VirtualService, ref: Delegate) -> VirtualService | None:
    namespace = ref.namespace or root.metadata.namespace
    return next(
        (
            vs
            for vs in snapshot.of_kind(VirtualService)
            if vs.metadata.name == ref.name and vs.metadata.namespace == namespace and not vs.spec.hosts
        ),
        None,
    )


def _uri_within(root: StringMatch | None, delegate: StringMatch | None) -> bool:
    if root is None or delegate is None or root.regex is not None or delegate.regex is not None:
        return True
    root_prefix = root.prefix if root.prefix is not None else root.exact
    value = delegate.prefix if delegate.prefix is not None else delegate.exact
    if root.exact is not None:
        return value == root.exact and delegate.exact is not None
    assert root_prefix is not None  # validation: a uri match sets one of exact, prefix, regex
    return value is not None and value.startswith(root_prefix)


def merge_match(root: HTTPMatchRequest | None, delegate: HTTPMatchRequest | None) -> HTTPMatchRequest | None:
    """One merged HTTPMatchRequest, or None when the two conflict."""
    if root is None:
        return delegate
    if delegate is None:
        return root
    if not _uri_within(root.uri, delegate.uri):
        return None
    update: dict[str, Any] = {f: getattr(root, f) for f in MATCH_FIELDS if getattr(delegate, f) is None}
    for field in ("headers", "query_params", "without_headers"):
        r, d = getattr(root, field) or {}, getattr(delegate, field) or {}
        if any(k in d and d[k] != v for k, v in r.items()):
            return None  # the delegate contradicts the root on this header
        if r or d:
            update[field] = {**r, **d}
    return delegate.model_copy(update=update)


def _resolve_destinations(rule: HTTPRoute, namespace: str) -> HTTPRoute:
    """Delegate destinations name hosts in the delegate's namespace; make them FQDNs."""

    def fix(dest: Destination) -> Destination:
        return dest.model_copy(update={"host": resolve_host(dest.host, namespace)})

    update: dict[str, Any] = {}
    if rule.route:
        update["route"] = [r.model_copy(update={"destination": fix(r.destination)}) for r in rule.route]
    if rule.mirror is not None:
        update["mirror"] = fix(rule.mirror)
    if rule.mirrors:
        update["mirrors"] = [m.model_copy(update={"destination": fix(m.destination)}) for m in rule.mirrors]
    return rule.model_copy(update=update) if update else rule


def expand_rule(snapshot: MeshSnapshot, root_vs: VirtualService, rule: HTTPRoute) -> list[HTTPRoute]:
    """The rules a root rule stands for: itself, or its delegate's rules merged with it."""
    if rule.delegate is None:
        return [rule]
    delegate = find_delegate(snapshot, root_vs, rule.delegate)
    if delegate is None:
        return []  # Istio drops a rule whose delegate does not exist
    out = []
    for d_rule in delegate.spec.http or []:
        d_rule = _resolve_destinations(d_rule, delegate.metadata.namespace)
        inherited = {f: getattr(rule, f) for f in INHERITED if getattr(d_rule, f) is None and getattr(rule, f)}
        root_matches: list[HTTPMatchRequest | None] = [*(rule.match or [])] or [None]
        d_matches: list[HTTPMatchRequest | None] = [*(d_rule.match or [])] or [None]
        merged = [merge_match(r, d) for r in root_matches for d in d_matches]
        kept = [m for m in merged if m is not None]
        if not kept and any(m is not None for m in (*root_matches, *d_matches)):
            continue  # every combination conflicts
        name = "-".join(n for n in (rule.name, d_rule.name) if n) or None
        out.append(d_rule.model_copy(update={**inherited, "match": kept or None, "name": name}))
    return out


def expand_delegates(snapshot: MeshSnapshot, vs: VirtualService) -> list[HTTPRoute]:
    return [r for rule in vs.spec.http or [] for r in expand_rule(snapshot, vs, rule)]
