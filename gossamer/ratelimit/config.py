"""The configuration format of Envoy's reference rate limit service (github.com/envoyproxy/ratelimit).

One or more YAML files, each a domain::

    domain: ratelimit
    descriptors:
      - key: PATH
        value: "/productpage"          # optional: without it, any value of the key
        rate_limit: {unit: minute, requests_per_unit: 1}   # or unlimited: true
        shadow_mode: false             # decide, count, but never refuse
        detailed_metric: false         # stats keyed by the request's values, not the config's
        descriptors: [...]             # nested: the next entry of the request's descriptor

A request descriptor (entries (k1, v1), (k2, v2), ...) is looked up as the reference service does: at
each level `k_v` first, then a `k` whose value ends in `*` and prefixes v, then `k` alone; the limit
is the one on the node the *last* entry lands on. Files are checked as strictly as the reference:
unknown fields, a missing key, an unknown unit, a duplicate descriptor, a domain in two files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

UNIT_SECONDS: dict[str, int] = {
    "SECOND": 1,
    "MINUTE": 60,
    "HOUR": 3600,
    "DAY": 86400,
    "WEEK": 7 * 86400,
    "MONTH": 30 * 86400,
    "YEAR": 365 * 86400,
}
_DESCRIPTOR_FIELDS = frozenset(
    {"key", "value", "rate_limit", "descriptors", "shadow_mode", "detailed_metric", "value_to_metric"}
)
_RATE_LIMIT_FIELDS = frozenset({"unit", "requests_per_unit", "unlimited", "name", "replaces"})
_TOP_FIELDS = frozenset({"domain", "descriptors"})


class ConfigError(ValueError):
    """A configuration file the reference service would refuse (the message names file and field)."""


@dataclass(frozen=True)
class RateLimit:
    """A limit: `requests_per_unit` per `unit` (a fixed window), or unlimited."""

    unit: str  # SECOND, MINUTE, ...
    requests_per_unit: int
    unlimited: bool = False
    shadow_mode: bool = False
    detailed_metric: bool = False
    name: str = ""
    stat_key: str = ""  # domain.key_value.key2 ... : where its stats are kept

    @property
    def unit_seconds(self) -> int:
        return UNIT_SECONDS[self.unit]


@dataclass
class Node:
    limit: RateLimit | None = None
    children: dict[str, Node] = field(default_factory=dict)  # "k_v" or "k"
    wildcards: list[tuple[str, str, Node]] = field(default_factory=list)  # (key, value prefix, node)


@dataclass
class Config:
    domains: dict[str, Node] = field(default_factory=dict)

    def limit_for(self, domain: str, entries: Sequence[tuple[str, str]]) -> RateLimit | None:
        """The limit for one request descriptor (key, value) entries, or None: no limit applies."""
        node = self.domains.get(domain)
        if node is None or not entries:
            return None
        limit: RateLimit | None = None
        last = len(entries) - 1
        for i, (key, value) in enumerate(entries):
            nxt = node.children.get(f"{key}_{value}")
            if nxt is None:
                for wkey, prefix, wnode in node.wildcards:
                    if wkey == key and value.startswith(prefix):
                        nxt = wnode
                        break
            if nxt is None:
                nxt = node.children.get(key)
            if nxt is None:
                return limit
            if nxt.limit is not None and i == last:
                limit = nxt.limit
            if not nxt.children and not nxt.wildcards:
                break
            node = nxt
        return limit

    def dump(self) -> list[str]:
        """One line per limit: `stat_key: N per UNIT` (the reference service's /rlconfig)."""
        out: list[str] = []

        def walk(node: Node) -> None:
            for child in list(node.children.values()) + [w[2] for w in node.wildcards]:
                if child.limit is not None:
                    lim = child.limit
                    what = (
                        "unlimited" if lim.unlimited else f"requests_per_unit={lim.requests_per_unit}, unit={lim.unit}"
                    )
                    flags = "".join(
                        [
                            ", shadow_mode: true" if lim.shadow_mode else "",
                            ", detailed_metric: true" if lim.detailed_metric else "",
                        ]
                    )
                    out.append(f"{lim.stat_key}: {what}{flags}")
                walk(child)

        for node in self.domains.values():
            walk(node)
        return out


def _fail(source: str, where: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: {where}: {message}" if where else f"{source}: {message}")


def _bool(value: Any, source: str, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _fail(source, where, "must be true or false")
    return value


def _rate_limit(raw: Any, source: str, where: str, stat_key: str, shadow: bool, detailed: bool) -> RateLimit:
    if not isinstance(raw, dict):
        raise _fail(source, where, "rate_limit must be a mapping")
    unknown = set(raw) - _RATE_LIMIT_FIELDS
    if unknown:
        raise _fail(source, where, f"unknown key {sorted(unknown)[0]!r}")
    unlimited = _bool(raw.get("unlimited"), source, f"{where}.unlimited")
    rpu = raw.get("requests_per_unit", 0)
    if not isinstance(rpu, int) or isinstance(rpu, bool) or rpu < 0:
        raise _fail(source, f"{where}.requests_per_unit", "must be a non-negative integer")
    unit_raw = raw.get("unit")
    if unlimited:
        if rpu or unit_raw is not None:
            raise _fail(source, where, "an unlimited rate_limit has no unit or requests_per_unit")
        return RateLimit(
            "SECOND",
            0,
            unlimited=True,
            shadow_mode=shadow,
            detailed_metric=detailed,
            name=str(raw.get("name") or ""),
            stat_key=stat_key,
        )
    unit = str(unit_raw or "").upper()
    if unit not in UNIT_SECONDS:
        raise _fail(
            source,
            f"{where}.unit",
            f"invalid rate limit unit {unit_raw!r} (one of {', '.join(u.lower() for u in UNIT_SECONDS)})",
        )
    return RateLimit(
        unit, rpu, shadow_mode=shadow, detailed_metric=detailed, name=str(raw.get("name") or ""), stat_key=stat_key
    )


def _descriptors(raw: Any, source: str, where: str, parent: Node, stat_prefix: str) -> None:
    if raw is None:
        return
    if not isinstance(raw, list):
        raise _fail(source, where, "descriptors must be a list")
    for i, d in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(d, dict):
            raise _fail(source, here, "a descriptor must be a mapping")
        unknown = set(d) - _DESCRIPTOR_FIELDS
        if unknown:
            raise _fail(source, here, f"unknown key {sorted(unknown)[0]!r}")
        key = d.get("key")
        if not isinstance(key, str) or not key:
            raise _fail(source, here, "descriptor has no key")
        value = d.get("value")
        value = "" if value is None else str(value)
        composite = f"{key}_{value}" if value else key
        stat_key = f"{stat_prefix}.{composite}"
        shadow = _bool(d.get("shadow_mode"), source, f"{here}.shadow_mode")
        detailed = _bool(d.get("detailed_metric"), source, f"{here}.detailed_metric")
        node = Node()
        if d.get("rate_limit") is not None:
            node.limit = _rate_limit(d["rate_limit"], source, f"{here}.rate_limit", stat_key, shadow, detailed)
        if value.endswith("*"):
            if any(w[0] == key and w[1] == value[:-1] for w in parent.wildcards):
                raise _fail(source, here, f"duplicate descriptor composite key {stat_key!r}")
            parent.wildcards.append((key, value[:-1], node))
        else:
            if composite in parent.children:
                raise _fail(source, here, f"duplicate descriptor composite key {stat_key!r}")
            parent.children[composite] = node
        _descriptors(d.get("descriptors"), source, f"{here}.descriptors", node, stat_key)


def parse_files(files: Iterable[tuple[str, str]]) -> Config:
    """(name, YAML text) of every configuration file -> Config; ConfigError for the first problem."""
    config = Config()
    for source, text in files:
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise _fail(source, "", f"error loading config file: {e}") from e
        if raw is None:
            continue
        if not isinstance(raw, dict):
            raise _fail(source, "", "a config file is a mapping with domain and descriptors")
        unknown = set(raw) - _TOP_FIELDS
        if unknown:
            raise _fail(source, "", f"unknown key {sorted(unknown)[0]!r}")
        domain = raw.get("domain")
        if not isinstance(domain, str) or not domain:
            raise _fail(source, "domain", "config file cannot have empty domain")
        if domain in config.domains:
            raise _fail(source, "domain", f"duplicate domain {domain!r} in config file")
        root = Node()
        _descriptors(raw.get("descriptors"), source, "descriptors", root, domain)
        config.domains[domain] = root
    return config
