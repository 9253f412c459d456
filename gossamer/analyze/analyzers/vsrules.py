"""VirtualService rules that never match (IST0130) and matches an earlier rule already takes
(IST0131), as Istio's VirtualService validation reports them through the analyzer."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gossamer.analyze.context import Context
from gossamer.analyze.messages import Message
from gossamer.analyze.registry import analyzer
from gossamer.resources.base import Resource
from gossamer.resources.networking import StringMatch, VirtualService


def _plain(value: Any) -> Any:
    """Drop empty values (as protobuf JSON omits them) so equal matches compare equal."""
    if isinstance(value, dict):
        out = {k: _plain(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, False, "", [], {}, 0)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _key(match: Any) -> str:
    return json.dumps(_plain(match.model_dump(exclude={"name"})), sort_keys=True)


def _rule_name(rule: Any, i: int) -> str:
    name = getattr(rule, "name", None)
    return f'"{name}"' if name else f"#{i}"


def _match_name(match: Any, j: int) -> str:
    name = getattr(match, "name", None)
    return f'"{name}"' if name else f"#{j}"


def _exact_or_prefix(m: StringMatch | None) -> str:
    if m is None:
        return ""
    if m.exact:
        return "exact:" + m.exact
    if m.prefix:
        return "prefix:" + m.prefix
    return ""


@dataclass
class _PrefixMatch:
    path: tuple[str | int, ...]
    rule: str
    match: str
    prefix: str
    port: int | None
    method: str
    authority: str
    headers: dict[str, str]
    query: dict[str, str]
    without: dict[str, str]


def _prefix_match(rule: Any, i: int, match: Any, j: int) -> _PrefixMatch | None:
    if match.uri is None or not match.uri.prefix:
        return None
    return _PrefixMatch(
        ("spec", "http", i, "match", j),
        _rule_name(rule, i),
        _match_name(match, j),
        match.uri.prefix,
        match.port,
        _exact_or_prefix(match.method) or "exact:GET",
        _exact_or_prefix(match.authority),
        {k: _exact_or_prefix(v) for k, v in (match.headers or {}).items()},
        {k: _exact_or_prefix(v) for k, v in (match.query_params or {}).items()},
        {k: _exact_or_prefix(v) for k, v in (match.without_headers or {}).items()},
    )


def _maps_covered(a: dict[str, str], b: dict[str, str]) -> bool:
    if len(a) != len(b):
        return False
    return all(k in b and (v == b[k] or v.startswith(b[k])) for k, v in a.items())


def _covers(a: _PrefixMatch, b: _PrefixMatch) -> bool:
    """Istio's coveredValidation: earlier prefix match `a` takes every request of later `b`."""
    if not b.prefix.startswith(a.prefix) or a.port != b.port:
        return False
    if a.method != b.method and not a.method.startswith(b.method):
        return False
    if a.authority != b.authority and not a.authority.startswith(b.authority):
        return False
    return (
        _maps_covered(a.headers, b.headers) and _maps_covered(a.query, b.query) and _maps_covered(a.without, b.without)
    )


def _unreachable(ctx: Context, vs: Resource[Any], kind: str, rules: Sequence[Any]) -> Iterator[Message]:
    seen: dict[str, int] = {}
    catch_all = -1
    prefixes: list[_PrefixMatch] = []
    for i, rule in enumerate(rules):
        path = ("spec", kind, i)
        if not rule.match:
            if catch_all >= 0:
                yield ctx.message(
                    "IST0130",
                    vs,
                    path,
                    f"rule {_rule_name(rule, i)} is never used: only the last rule can have no matches",
                )
            catch_all = i
            continue
        duplicates = 0
        for j, match in enumerate(rule.match):
            if catch_all >= 0:
                yield ctx.message(
                    "IST0130",
                    vs,
                    path,
                    f"rule {_rule_name(rule, i)} is never used: an earlier rule without matches takes every request",
                )
                continue
            key = _key(match)
            if key in seen:
                dup = seen[key]
                yield ctx.message(
                    "IST0131",
                    vs,
                    path + ("match", j),
                    f"match {_match_name(match, j)} of rule {_rule_name(rule, i)} is never used: rule "
                    f"{_rule_name(rules[dup], dup)} has the same match",
                )
                duplicates += 1
                continue
            seen[key] = i
            if kind == "http":
                pm = _prefix_match(rule, i, match, j)
                if pm is not None:
                    prefixes.append(pm)
        if duplicates == len(rule.match):
            yield ctx.message(
                "IST0130", vs, path, f"rule {_rule_name(rule, i)} is never used: earlier rules take all its matches"
            )
    for a_index, a in enumerate(prefixes):
        for b in prefixes[a_index + 1 :]:
            if b.prefix != a.prefix and _covers(a, b):
                yield ctx.message(
                    "IST0131",
                    vs,
                    b.path,
                    f"match {b.match} of prefix {b.prefix} in rule {b.rule} is never used: match "
                    f"{a.match} of prefix {a.prefix} in rule {a.rule} takes its requests first",
                )


@analyzer(
    "schema.ValidationAnalyzer.VirtualService",
    "Runs schema validation as an analyzer on 'VirtualService' resources",
    ("IST0130", "IST0131"),
)
def unreachable_rules(ctx: Context) -> Iterator[Message]:
    for vs in ctx.of_kind(VirtualService):
        yield from _unreachable(ctx, vs, "http", vs.spec.http)
        yield from _unreachable(ctx, vs, "tcp", vs.spec.tcp)
        yield from _unreachable(ctx, vs, "tls", vs.spec.tls)
