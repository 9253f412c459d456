"""Envoy's own rules, checked on the protos we build: the `validate.rules` (protoc-gen-validate)
annotations the Envoy API carries, the check Envoy runs on every resource it receives (a failure is a
NACK). Generic: every field of every message, `typed_config` Anys unpacked.

    for v in violations(resources):          # resources: type_url -> name -> proto
        print(v)                            # "Listener 0.0.0.0_80: filter_chains[0]...: value length must be ..."

Implemented: string (lengths in characters and bytes, pattern, prefix/suffix/contains, in/not_in,
well-known header syntax, const, ip/hostname/address), numbers and wrappers (const, ranges incl.
exclusive ones, in/not_in), enum (defined_only, in/not_in), bytes lengths, duration and timestamp
(required, ranges), message required/skip, repeated (min/max items, unique, items), map (min/max pairs,
keys, values), any (required, in/not_in), oneof `validate.required`, message `validate.disabled`.
Every `RegexMatcher.regex` is also compiled with RE2 under Istio's program-size limit
(`resources/regex.py`), as Envoy compiles it.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import re2
from google.protobuf import descriptor_pool, duration_pb2, message_factory, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from validate import validate_pb2

from gossamer.resources.regex import re2_problem
from gossamer.xds.types import SHORT_NAMES

MAX_VIOLATIONS = 50

# protoc-gen-validate's well-known regexes (matched whole: Python's `$` would accept a final newline)
_HEADER_NAME_STRICT = re.compile(r":?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+")
_HEADER_VALUE_STRICT = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")
_HEADER_LOOSE = re.compile(r"[^\x00\x0a\x0d]*")

_WRAPPERS = {
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
}
_NUMERIC_RULES = (
    "float",
    "double",
    "int32",
    "int64",
    "uint32",
    "uint64",
    "sint32",
    "sint64",
    "fixed32",
    "fixed64",
    "sfixed32",
    "sfixed64",
)


@dataclass(frozen=True)
class Violation:
    type_url: str
    resource: str
    path: str
    message: str

    def __str__(self) -> str:
        kind = SHORT_NAMES.get(self.type_url, self.type_url.rpartition(".")[2])
        return f"{kind} {self.resource}: {self.path}: {self.message}"


def violations(resources: dict[str, dict[str, Message]], limit: int = MAX_VIOLATIONS) -> list[Violation]:
    """What Envoy's validation would reject in these resources (at most `limit`). A resource checked
    before (the same bytes: proxies share most of their config, and an apply rebuilds it all) is not
    walked again."""
    out: list[Violation] = []
    for type_url, by_name in resources.items():
        for name, msg in by_name.items():
            for path, problem in _checked(msg):
                out.append(Violation(type_url, name, path, problem))
                if len(out) >= limit:
                    return out
    return out


_CHECKED: dict[tuple[str, bytes], tuple[tuple[str, str], ...]] = {}
_CHECKED_MAX = 20_000  # entries: a digest and (almost always) an empty tuple each


_CHECKED_BY_IDENTITY: dict[int, tuple[Message, tuple[tuple[str, str], ...]]] = {}


# Kept by identity (the builders share one proto among the proxies that get the same resource: found by
# identity it is not even serialized again): the numerous, small, stable kinds only - a memo must not keep
# large protos (route tables) alive.
_CHECKED_BY_IDENTITY_TYPES = {"envoy.config.cluster.v3.Cluster", "envoy.config.endpoint.v3.ClusterLoadAssignment"}


def checked(msg: Message) -> tuple[tuple[str, str], ...]:
    """(field path, problem) for every rule MSG breaks, remembered (as `violations` checks a resource)."""
    return _checked(msg)


def message_problems(msg: Message) -> tuple[tuple[str, str], ...]:
    """(field path, problem) for every rule MSG, a part of a resource, breaks (paths relative to it)."""
    return tuple(_message(msg, ""))


def rule_plan(desc: Descriptor) -> _Plan:
    """Which fields of a message type carry rules (checked before its other fields)."""
    return _plan(desc)


def _checked(msg: Message) -> tuple[tuple[str, str], ...]:
    if msg.DESCRIPTOR.full_name not in _CHECKED_BY_IDENTITY_TYPES:
        return _checked_content(msg)
    by_identity = _CHECKED_BY_IDENTITY.get(id(msg))
    if by_identity is not None and by_identity[0] is msg:
        return by_identity[1]
    if len(_CHECKED_BY_IDENTITY) >= _CHECKED_MAX:
        _CHECKED_BY_IDENTITY.clear()
    found = _checked_content(msg)
    _CHECKED_BY_IDENTITY[id(msg)] = (msg, found)  # holds `msg`: its id cannot be reused meanwhile
    return found


def _checked_content(msg: Message) -> tuple[tuple[str, str], ...]:
    digest = hashlib.blake2b(msg.SerializeToString(deterministic=True), digest_size=16).digest()
    key = (msg.DESCRIPTOR.full_name, digest)
    found = _CHECKED.get(key)
    if found is None:
        found = tuple(check(msg))
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED[key] = found
    return found


def check(msg: Message) -> Iterator[tuple[str, str]]:
    """(field path, problem) for every rule `msg` breaks."""
    yield from _message(msg, "")
    if msg.DESCRIPTOR.full_name == "envoy.config.listener.v3.Listener":
        yield from _filter_chain_overlaps(msg)


_MATCH_LISTS = (
    "prefix_ranges",
    "direct_source_prefix_ranges",
    "source_prefix_ranges",
    "source_ports",
    "server_names",
    "application_protocols",
)


def _filter_chain_overlaps(listener: Any) -> Iterator[tuple[str, str]]:
    """Envoy's listener rule beyond the annotations: no two filter chains may match the same connection
    ("multiple filter chains with the same matching rules"). Two matches overlap when every criterion
    shares a value (an empty list is its own value, as Envoy's matching tree has it)."""
    seen: list[tuple[int, dict[str, frozenset[bytes]], bytes]] = []
    for i, chain in enumerate(listener.filter_chains):
        m = chain.filter_chain_match
        lists = {
            name: frozenset(
                v.SerializeToString(deterministic=True) if isinstance(v, Message) else str(v).encode()
                for v in getattr(m, name)
            )
            or frozenset({b""})
            for name in _MATCH_LISTS
        }
        rest = type(m)()
        rest.CopyFrom(m)
        for name in _MATCH_LISTS:
            rest.ClearField(name)
        scalar = rest.SerializeToString(deterministic=True)
        for j, other_lists, other_scalar in seen:
            if scalar == other_scalar and all(lists[n] & other_lists[n] for n in _MATCH_LISTS):
                yield (
                    f"filter_chains[{i}].filter_chain_match",
                    f"matches the same connections as filter_chains[{j}] (Envoy rejects a listener whose "
                    "filter chains have the same matching rules)",
                )
                break
        seen.append((i, lists, scalar))


def _rules(fd: FieldDescriptor) -> validate_pb2.FieldRules | None:
    options = fd.GetOptions()
    if not options.HasExtension(validate_pb2.rules):
        return None
    return options.Extensions[validate_pb2.rules]


def _disabled(desc: Descriptor) -> bool:
    options = desc.GetOptions()
    return bool(options.HasExtension(validate_pb2.disabled) and options.Extensions[validate_pb2.disabled]) or bool(
        options.HasExtension(validate_pb2.ignored) and options.Extensions[validate_pb2.ignored]
    )


def _in(rule: Any) -> list[Any]:
    """A rule's `in` list (a Python keyword: not an attribute name)."""
    return list(getattr(rule, "in"))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


@dataclass(frozen=True)
class _Plan:
    """What to look at in a message type, worked out once per type: the fields that carry rules (checked
    set or not) and the oneofs that must be set. Other fields are visited only when set."""

    disabled: bool
    required_oneofs: tuple[tuple[str, str], ...]  # (oneof name, its fields for the message)
    ruled: tuple[tuple[FieldDescriptor, Any], ...]
    ruled_names: frozenset[str]


_PLANS: dict[str, _Plan] = {}


def _plan(desc: Descriptor) -> _Plan:
    plan = _PLANS.get(desc.full_name)
    if plan is None:
        oneofs = tuple(
            (o.name, ", ".join(f.name for f in o.fields))
            for o in desc.oneofs
            if o.GetOptions().HasExtension(validate_pb2.required) and o.GetOptions().Extensions[validate_pb2.required]
        )
        ruled = tuple((fd, r) for fd in desc.fields if (r := _rules(fd)) is not None)
        plan = _PLANS[desc.full_name] = _Plan(_disabled(desc), oneofs, ruled, frozenset(fd.name for fd, _ in ruled))
    return plan


def _is_map(fd: FieldDescriptor) -> bool:
    return fd.message_type is not None and fd.message_type.GetOptions().map_entry


# Parts checked once per content: a route table of a thousand virtual hosts differs from the previous
# one (and from another namespace's) in a few of them, so its unchanged virtual hosts are not walked again.
_PARTS_CHECKED_BY_CONTENT = {"envoy.config.route.v3.VirtualHost"}
_PARTS_CHECKED: dict[tuple[str, bytes], tuple[tuple[str, str], ...]] = {}


def _message(msg: Message, path: str) -> Iterator[tuple[str, str]]:
    desc = msg.DESCRIPTOR
    if desc.full_name in _PARTS_CHECKED_BY_CONTENT:
        key = (desc.full_name, hashlib.blake2b(msg.SerializeToString(deterministic=True), digest_size=16).digest())
        found = _PARTS_CHECKED.get(key)
        if found is None:
            found = tuple(_message_walk(msg, ""))
            if len(_PARTS_CHECKED) >= _CHECKED_MAX:
                _PARTS_CHECKED.clear()
            _PARTS_CHECKED[key] = found
        for sub, problem in found:
            yield (_join(path, sub) if sub else path), problem
        return
    yield from _message_walk(msg, path)


def _message_walk(msg: Message, path: str) -> Iterator[tuple[str, str]]:
    desc = msg.DESCRIPTOR
    if desc.full_name == "google.protobuf.Any":
        yield from _any_body(msg, path)
        return
    if desc.full_name == "google.protobuf.Duration":  # every Duration, with or without rules
        if not -315_576_000_000 <= msg.seconds <= 315_576_000_000 or abs(msg.nanos) >= 10**9:
            yield path, "duration out of protobuf's range (+-10000 years)"
        return
    plan = _plan(desc)
    if plan.disabled:
        return
    if desc.full_name == "envoy.type.matcher.v3.RegexMatcher" and msg.regex:
        problem = re2_problem(msg.regex)
        if problem:
            yield _join(path, "regex"), f"invalid RE2 regex {_short(msg.regex)}: {problem}"
    for name, fields in plan.required_oneofs:
        if msg.WhichOneof(name) is None:
            yield _join(path, name), f"one of {fields} must be set"
    for fd, rules in plan.ruled:
        yield from _ruled_field(msg, fd, rules, _join(path, fd.name))
    for fd, value in msg.ListFields():  # the set fields without rules: only messages can hold more
        if fd.message_type is None or fd.name in plan.ruled_names:
            continue
        fpath = _join(path, fd.name)
        if _is_map(fd):
            yield from _map(msg, fd, None, fpath)
        elif fd.is_repeated:
            yield from _repeated(value, fd, None, fpath)
        else:
            yield from _single_message(value, fd, None, fpath)


def _ruled_field(msg: Message, fd: FieldDescriptor, rules: Any, fpath: str) -> Iterator[tuple[str, str]]:
    """One field of MSG that has PGV rules."""
    if fd.is_repeated:
        if _is_map(fd):
            yield from _map(msg, fd, rules, fpath)
        else:
            yield from _repeated(getattr(msg, fd.name), fd, rules, fpath)
        return
    oneof = fd.containing_oneof
    if oneof is not None and not getattr(oneof, "is_synthetic", False) and msg.WhichOneof(oneof.name) != fd.name:
        return  # PGV checks a oneof's field only when it is the one set
    if fd.message_type is not None:
        present = msg.HasField(fd.name)
        yield from _single_message(getattr(msg, fd.name) if present else None, fd, rules, fpath)
    else:
        yield from _scalar(getattr(msg, fd.name), fd, rules, fpath)


def _any_body(msg: Any, path: str) -> Iterator[tuple[str, str]]:
    full_name = msg.type_url.rpartition("/")[2]
    try:
        desc = descriptor_pool.Default().FindMessageTypeByName(full_name)
    except KeyError:
        return  # a type we do not know is not ours to judge (Envoy rejects unknown types itself)
    inner = message_factory.GetMessageClass(desc)()
    try:
        inner.ParseFromString(msg.value)
    except Exception:  # noqa: BLE001 - a body that does not parse is what Envoy would reject
        yield path, f"typed config does not parse as {full_name}"
        return
    yield from _message(inner, f"{path}({desc.name})")


def _single_message(value: Message | None, fd: FieldDescriptor, rules: Any, path: str) -> Iterator[tuple[str, str]]:
    kind = rules.WhichOneof("type") if rules is not None else None
    type_name = fd.message_type.full_name
    if rules is not None and rules.HasField("message"):
        if rules.message.required and value is None:
            yield path, "value is required"
        if rules.message.skip:
            return
    if value is None:
        if kind == "duration" and rules.duration.required:
            yield path, "value is required"
        elif kind == "timestamp" and rules.timestamp.required:
            yield path, "value is required"
        elif kind == "any" and rules.any.required:
            yield path, "value is required"
        return
    if kind is not None and type_name in _WRAPPERS:
        inner = value.DESCRIPTOR.fields_by_name["value"]
        yield from _scalar(value.value, inner, rules, path)
        return
    if kind == "duration" and isinstance(value, duration_pb2.Duration):
        yield from _duration(value, rules.duration, path)
    elif kind == "timestamp" and isinstance(value, timestamp_pb2.Timestamp):
        pass
    elif kind == "any":
        url = value.type_url
        if _in(rules.any) and url not in _in(rules.any):
            yield path, f"type {url} is not one of {', '.join(_in(rules.any))}"
        if url in rules.any.not_in:
            yield path, f"type {url} is not allowed"
    yield from _message(value, path)


def _repeated(values: Any, fd: FieldDescriptor, rules: Any, path: str) -> Iterator[tuple[str, str]]:
    rep = rules.repeated if rules is not None and rules.HasField("repeated") else None
    n = len(values)
    if rep is not None and not (rep.ignore_empty and n == 0):
        if rep.HasField("min_items") and n < rep.min_items:
            yield path, f"needs at least {rep.min_items} item(s), has {n}"
        if rep.HasField("max_items") and n > rep.max_items:
            yield path, f"takes at most {rep.max_items} item(s), has {n}"
        if rep.unique and fd.message_type is None and len(set(values)) != n:
            yield path, "items must be unique"
    item_rules = rep.items if rep is not None and rep.HasField("items") else None
    for i, v in enumerate(values):
        ipath = f"{path}[{i}]"
        if fd.message_type is not None:
            yield from _single_message(v, fd, item_rules, ipath)
        elif item_rules is not None:
            yield from _scalar(v, fd, item_rules, ipath)


def _map(msg: Message, fd: FieldDescriptor, rules: Any, path: str) -> Iterator[tuple[str, str]]:
    values = getattr(msg, fd.name)
    rule = rules.map if rules is not None and rules.HasField("map") else None
    n = len(values)
    if rule is not None and not (rule.ignore_empty and n == 0):
        if rule.HasField("min_pairs") and n < rule.min_pairs:
            yield path, f"needs at least {rule.min_pairs} entries, has {n}"
        if rule.HasField("max_pairs") and n > rule.max_pairs:
            yield path, f"takes at most {rule.max_pairs} entries, has {n}"
    key_fd = fd.message_type.fields_by_name["key"]
    value_fd = fd.message_type.fields_by_name["value"]
    for k in values:
        kpath = f"{path}[{k!r}]"
        if rule is not None and rule.HasField("keys"):
            yield from _scalar(k, key_fd, rule.keys, kpath)
        value_rules = rule.values if rule is not None and rule.HasField("values") else None
        if value_fd.message_type is not None:
            yield from _single_message(values[k], value_fd, value_rules, kpath)
        elif value_rules is not None:
            yield from _scalar(values[k], value_fd, value_rules, kpath)


def _duration(value: duration_pb2.Duration, r: Any, path: str) -> Iterator[tuple[str, str]]:
    nanos = value.seconds * 10**9 + value.nanos

    def n(d: duration_pb2.Duration) -> int:
        return int(d.seconds * 10**9 + d.nanos)

    if not -315_576_000_000 <= value.seconds <= 315_576_000_000 or abs(value.nanos) >= 10**9:
        return  # reported by `_message`
    bounds = _bounds(
        nanos,
        n(r.gt) if r.HasField("gt") else None,
        n(r.gte) if r.HasField("gte") else None,
        n(r.lt) if r.HasField("lt") else None,
        n(r.lte) if r.HasField("lte") else None,
        _seconds,
    )
    if bounds:
        yield path, "duration " + bounds.replace("{}", "")
    if r.HasField("const") and nanos != n(r.const):
        yield path, "duration must equal the required constant"


def _seconds(nanos: Any) -> str:
    return f"{nanos / 10**9:g}s"


def _bounds(v: Any, gt: Any, gte: Any, lt: Any, lte: Any, _fmt: Any = str) -> str | None:
    """PGV's range rules, including exclusive ranges (a lower bound above the upper one)."""
    low, low_incl = (gte, True) if gte is not None else (gt, False)
    high, high_incl = (lte, True) if lte is not None else (lt, False)
    above = low is None or (v >= low if low_incl else v > low)
    below = high is None or (v <= high if high_incl else v < high)
    if low is not None and high is not None and low > high:
        if above or below:
            return None
        return f"must be outside ({_fmt(high)}, {_fmt(low)})"
    if above and below:
        return None
    parts = []
    if low is not None:
        parts.append(f"{'>=' if low_incl else '>'} {_fmt(low)}")
    if high is not None:
        parts.append(f"{'<=' if high_incl else '<'} {_fmt(high)}")
    return f"must be {' and '.join(parts)} (is {_fmt(v)})"


def _scalar(value: Any, fd: FieldDescriptor, rules: Any, path: str) -> Iterator[tuple[str, str]]:
    kind = rules.WhichOneof("type")
    if kind is None:
        return
    r = getattr(rules, kind)
    if kind in _NUMERIC_RULES:
        yield from _numeric(value, r, path)
    elif kind == "string":
        yield from _string(value, r, path)
    elif kind == "bytes":
        if r.ignore_empty and not value:
            return
        if r.HasField("min_len") and len(value) < r.min_len:
            yield path, f"must be at least {r.min_len} bytes"
        if r.HasField("max_len") and len(value) > r.max_len:
            yield path, f"must be at most {r.max_len} bytes"
    elif kind == "enum":
        yield from _enum(value, fd, r, path)
    elif kind == "bool":
        if r.HasField("const") and value != r.const:
            yield path, f"must be {str(r.const).lower()}"


def _numeric(value: Any, r: Any, path: str) -> Iterator[tuple[str, str]]:
    if getattr(r, "ignore_empty", False) and value == 0:
        return
    if r.HasField("const") and value != r.const:
        yield path, f"must equal {r.const} (is {value})"
    problem = _bounds(
        value,
        r.gt if r.HasField("gt") else None,
        r.gte if r.HasField("gte") else None,
        r.lt if r.HasField("lt") else None,
        r.lte if r.HasField("lte") else None,
    )
    if problem:
        yield path, problem
    if _in(r) and value not in _in(r):
        yield path, f"must be one of {list(_in(r))} (is {value})"
    if value in r.not_in:
        yield path, f"must not be {value}"


def _enum(value: Any, fd: FieldDescriptor, r: Any, path: str) -> Iterator[tuple[str, str]]:
    if r.defined_only and fd.enum_type is not None and value not in fd.enum_type.values_by_number:
        yield path, f"{value} is not a defined {fd.enum_type.name}"
    if _in(r) and value not in _in(r):
        yield path, f"must be one of {list(_in(r))}"
    if value in r.not_in:
        yield path, f"must not be {value}"


def _short(value: str) -> str:
    return repr(value) if len(value) <= 40 else repr(value[:40]) + f"... ({len(value)} characters)"


def _string(value: str, r: Any, path: str) -> Iterator[tuple[str, str]]:
    if r.ignore_empty and value == "":
        return
    yield from _string_size(value, r, path)
    yield from _string_content(value, r, path)
    yield from _string_well_known(value, r, path)


def _string_size(value: str, r: Any, path: str) -> Iterator[tuple[str, str]]:
    n = len(value)
    if r.HasField("const") and value != r.const:
        yield path, f"must be {r.const!r}"
    if r.HasField("len") and n != r.len:
        yield path, f"must be {r.len} characters long"
    if r.HasField("min_len") and n < r.min_len:
        yield path, f"must be at least {r.min_len} character(s) long" + ("" if n else " (is empty)")
    if r.HasField("max_len") and n > r.max_len:
        yield path, f"must be at most {r.max_len} characters long (is {n})"
    size = len(value.encode("utf-8", "surrogatepass"))
    if r.HasField("min_bytes") and size < r.min_bytes:
        yield path, f"must be at least {r.min_bytes} bytes"
    if r.HasField("max_bytes") and size > r.max_bytes:
        yield path, f"must be at most {r.max_bytes} bytes (is {size})"


def _string_content(value: str, r: Any, path: str) -> Iterator[tuple[str, str]]:
    if r.HasField("pattern") and not _pattern(r.pattern).search(value):
        yield path, f"{_short(value)} does not match {r.pattern!r}"
    if r.HasField("prefix") and not value.startswith(r.prefix):
        yield path, f"must start with {r.prefix!r}"
    if r.HasField("suffix") and not value.endswith(r.suffix):
        yield path, f"must end with {r.suffix!r}"
    if r.HasField("contains") and r.contains not in value:
        yield path, f"must contain {r.contains!r}"
    if r.HasField("not_contains") and r.not_contains in value:
        yield path, f"must not contain {r.not_contains!r}"
    if _in(r) and value not in _in(r):
        yield path, f"{_short(value)} must be one of {', '.join(_in(r))}"
    if value in r.not_in:
        yield path, f"{_short(value)} is not allowed"


def _string_well_known(value: str, r: Any, path: str) -> Iterator[tuple[str, str]]:
    well_known = r.WhichOneof("well_known")
    if well_known == "well_known_regex":
        strict = r.strict if r.HasField("strict") else True
        if r.well_known_regex == validate_pb2.HTTP_HEADER_NAME:
            ok = bool((_HEADER_NAME_STRICT if strict else _HEADER_LOOSE).fullmatch(value))
            what = "a valid HTTP header name"
        elif r.well_known_regex == validate_pb2.HTTP_HEADER_VALUE:
            ok = bool((_HEADER_VALUE_STRICT if strict else _HEADER_LOOSE).fullmatch(value))
            what = "a valid HTTP header value"
        else:
            ok, what = True, ""
        if not ok:
            yield path, f"{_short(value)} is not {what}"
    elif well_known in ("ip", "ipv4", "ipv6") and getattr(r, well_known):
        try:
            addr = ipaddress.ip_address(value)
            ok = well_known == "ip" or (addr.version == 4) == (well_known == "ipv4")
        except ValueError:
            ok = False
        if not ok:
            yield path, f"{_short(value)} is not a valid {well_known.upper() if well_known != 'ip' else 'IP'} address"
    elif well_known == "hostname" and r.hostname:
        if not _is_hostname(value):
            yield path, f"{_short(value)} is not a valid host name"
    elif well_known == "address" and r.address:
        if not _is_hostname(value):
            try:
                ipaddress.ip_address(value)
            except ValueError:
                yield path, f"{_short(value)} is not a valid host name or IP address"


def _is_hostname(value: str) -> bool:
    host = value[:-1] if value.endswith(".") else value
    if not host or len(host) > 253:
        return False
    return all(re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", part) for part in host.split("."))


@functools.lru_cache(maxsize=1024)
def _pattern(pattern: str) -> Any:
    """A `pattern` rule as protoc-gen-validate runs it: RE2 (`$` is the end of the text)."""
    return re2.compile(pattern)
