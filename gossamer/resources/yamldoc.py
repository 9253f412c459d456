"""YAML text -> plain JSON-like documents with the line of every field, bounded for any input.

    for doc in read_documents(text):      # raises YamlInputError(line, message) on bad input
        doc.data, doc.lines, doc.duplicates, doc.line

PyYAML's C parser (libyaml, ~50x faster than the pure-Python one; its events keep line marks)
composes each document; the rest is ours, so that nothing a user writes can crash or stall the
control plane:

* Only JSON's types come out (what Kubernetes stores): strings, integers in int64/uint64 range,
  finite floats, booleans, null, lists and mappings with string or integer keys. Other tags
  (`!!binary`, `!!set`, `!!timestamp`, custom `!tags`) are errors, as are scalars that do not read as
  their explicit tag (`!!int x`). Keys that are booleans, nulls or floats become their text
  ("true", "null"), as Kubernetes' YAML-to-JSON conversion does.
* Nesting is limited to MAX_DEPTH levels (aliases expanded), so no consumer recurses too deep.
* Aliases are bounded as Kubernetes bounds them (go-yaml's rule: past 400,000 expanded nodes only a
  shrinking share of a document may come from alias expansion), and an alias inside the node it
  refers to (`labels: &a [*a]`) is an error.
* Characters YAML does not allow (control characters, lone surrogates) are reported with their line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

FieldPath = tuple[str | int, ...]

MAX_DEPTH = 100
MAX_INT = 2**64 - 1  # uint64: the widest integer a protobuf field (and Kubernetes' JSON) holds
MIN_INT = -(2**63)
MAX_FILE_BYTES = 8 << 20

# go-yaml v2/v3 (Kubernetes' decoder): the share of a document allowed to come from alias expansion.
_ALIAS_RATIO_LOW = 400_000
_ALIAS_RATIO_HIGH = 4_000_000

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_MERGE = "tag:yaml.org,2002:merge"
_VALUE = "tag:yaml.org,2002:value"  # "=" alone; a string for us

# YAML 1.1's printable set (what PyYAML's reader allows), plus tab, LF and CR.
_NOT_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_Parser: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
WITH_LIBYAML = _Parser is not yaml.SafeLoader


class _Loader(_Parser):  # type: ignore[misc]
    """SafeLoader (the C one when PyYAML has libyaml) that keeps timestamps as strings, as Kubernetes does."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_SCALARS = yaml.constructor.SafeConstructor()


class YamlInputError(ValueError):
    """Input that is not a document we accept; `line` is 1-based (0: unknown)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass
class Document:
    data: Any
    line: int  # where the document starts
    lines: dict[FieldPath, int] = field(default_factory=dict)  # field path -> line of its key / item
    duplicates: list[tuple[FieldPath, int]] = field(default_factory=list)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1 if node.start_mark is not None else 0


def _show(text: str, limit: int = 40) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def allowed_alias_ratio(decoded: int) -> float:
    if decoded <= _ALIAS_RATIO_LOW:
        return 0.99
    if decoded >= _ALIAS_RATIO_HIGH:
        return 0.10
    return 0.99 - 0.89 * (decoded - _ALIAS_RATIO_LOW) / (_ALIAS_RATIO_HIGH - _ALIAS_RATIO_LOW)


def check_characters(text: str) -> None:
    bad = _NOT_PRINTABLE.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        char = bad.group()
        if 0xDC80 <= ord(char) <= 0xDCFF:  # a byte that was not UTF-8 (read with surrogateescape)
            raise YamlInputError(
                line, f"byte 0x{ord(char) - 0xDC00:02X} at column {column} is not UTF-8 (YAML files are UTF-8)"
            )
        raise YamlInputError(
            line,
            f"character U+{ord(char):04X} at column {column} is not allowed in YAML "
            "(control characters and lone surrogates are not)",
        )


# ---------------------------------------------------------------------------- construction


def _scalar(node: yaml.ScalarNode) -> Any:
    tag = node.tag
    value = node.value
    if tag in (_STR, _VALUE):
        return value
    if tag == _NULL:
        if value not in ("", "~", "null", "Null", "NULL"):
            raise YamlInputError(_line(node), f"{_show(value)} is not a null")
        return None
    if tag == _BOOL:
        result = _SCALARS.bool_values.get(value.lower())
        if result is None:
            raise YamlInputError(_line(node), f"{_show(value)} is not a boolean")
        return result
    if tag == _INT:
        digits = value.replace("_", "").lstrip("+-")
        if len(digits) > 40:  # before converting: Python refuses int() of over 4,300 digits
            raise YamlInputError(_line(node), f"integer {_show(value)} is out of range (64 bits)")
        try:
            number = _SCALARS.construct_yaml_int(node)
        except (ValueError, TypeError):
            raise YamlInputError(_line(node), f"{_show(value)} is not an integer") from None
        if not MIN_INT <= number <= MAX_INT:
            raise YamlInputError(_line(node), f"integer {_show(value)} is out of range (64 bits)")
        return number
    if tag == _FLOAT:
        try:
            real: float = _SCALARS.construct_yaml_float(node)
        except (ValueError, TypeError):
            raise YamlInputError(_line(node), f"{_show(value)} is not a number") from None
        if not math.isfinite(real):
            raise YamlInputError(
                _line(node), f"{_show(value)}: only finite numbers are allowed (JSON has no NaN or infinity)"
            )
        return real
    raise YamlInputError(
        _line(node),
        f"unsupported YAML tag {_tag_name(tag)} (only strings, numbers, booleans, "
        "null, lists and mappings are accepted)",
    )


def _tag_name(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:") :] if tag.startswith("tag:yaml.org,2002:") else _show(tag, 30)


def _key(node: yaml.Node) -> str | int:
    if not isinstance(node, yaml.ScalarNode):
        raise YamlInputError(_line(node), "a mapping key must be a string or a number, not a list or mapping")
    value = _scalar(node)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return str(node.value)
    return value  # type: ignore[no-any-return]


class _Builder:
    """One pass over a composed document: values, lines, duplicates, and the bounds (depth with aliases
    expanded, recursive aliases, alias expansion as go-yaml counts it) checked on the way. Each distinct
    node is built once; an alias shares its anchor's value (and the lines of its fields)."""

    def __init__(self) -> None:
        self.lines: dict[FieldPath, int] = {}
        self.duplicates: list[tuple[FieldPath, int]] = []
        self._done: dict[int, tuple[Any, int, int]] = {}  # id(node) -> (value, expanded size, height)
        self._open: set[int] = set()
        self.through_alias = 0

    def build(self, node: yaml.Node, path: FieldPath, depth: int = 1) -> tuple[Any, int, int]:
        """(value, nodes in its expansion, height). Recursion is bounded by MAX_DEPTH."""
        key = id(node)
        done = self._done.get(key)
        if done is not None:  # an alias
            if depth + done[2] - 1 > MAX_DEPTH:
                raise YamlInputError(_line(node), f"nesting is deeper than {MAX_DEPTH} levels (aliases expanded)")
            self.through_alias += done[1]
            return done
        if key in self._open:
            raise YamlInputError(_line(node), "an alias refers to a node that contains it (recursive alias)")
        if depth > MAX_DEPTH:
            raise YamlInputError(_line(node), f"nesting is deeper than {MAX_DEPTH} levels")
        self._open.add(key)
        size, height = 1, 1
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = _scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                raise YamlInputError(_line(node), f"unsupported YAML tag {_tag_name(node.tag)} on a list")
            value = []
            for i, item in enumerate(node.value):
                self.lines.setdefault(path + (i,), _line(item))
                v, n, h = self.build(item, path + (i,), depth + 1)
                value.append(v)
                size += n
                height = max(height, h + 1)
        elif isinstance(node, yaml.MappingNode):
            if node.tag != _MAP:
                raise YamlInputError(_line(node), f"unsupported YAML tag {_tag_name(node.tag)} on a mapping")
            value, size, height = self._mapping(node, path, depth)
        else:  # pragma: no cover - the composer makes only these three
            raise YamlInputError(_line(node), "unexpected YAML node")
        self._open.discard(key)
        result = (value, size, height)
        self._done[key] = result
        return result

    def _mapping(self, node: yaml.MappingNode, path: FieldPath, depth: int) -> tuple[dict[str | int, Any], int, int]:
        own: dict[str | int, Any] = {}
        merged: dict[str | int, Any] = {}
        size, height = 1, 1
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                # `<<: *a` or `<<: [*a, *b]`: keys of the mappings not set here (the first mapping wins)
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        raise YamlInputError(_line(source), "a merge key (<<) takes a mapping or a list of mappings")
                    v, n, h = self.build(source, path, depth)
                    size += n
                    height = max(height, h)
                    for k, item in v.items():
                        merged.setdefault(k, item)
                continue
            k = _key(key_node)
            if k in own:
                self.duplicates.append((path + (k,), _line(key_node)))
            self.lines[path + (k,)] = _line(key_node)
            v, n, h = self.build(value_node, path + (k,), depth + 1)
            own[k] = v
            size += n + 1
            height = max(height, h + 1)
        return ({**merged, **own} if merged else own), size, height

    def check_aliases(self, root: yaml.Node, decoded: int) -> None:
        """go-yaml's rule (Kubernetes' decoder): past 1000 nodes, at most a share of them through aliases."""
        if decoded > 1000 and self.through_alias > 100 and self.through_alias / decoded > allowed_alias_ratio(decoded):
            raise YamlInputError(
                _line(root),
                f"document contains excessive aliasing ({decoded} nodes once aliases "
                f"are expanded, {self.through_alias} of them through aliases)",
            )


def read_documents(text: str) -> Iterator[Document]:
    """The documents of a YAML stream, in order (empty documents skipped). Raises `YamlInputError`
    at the first problem; the documents before it have been yielded."""
    if len(text) > MAX_FILE_BYTES:
        raise YamlInputError(0, f"the file is larger than {MAX_FILE_BYTES >> 20} MiB")
    check_characters(text)
    loader = _Loader(text)
    try:
        while True:
            try:
                if not loader.check_node():
                    return
                node = loader.get_node()
            except yaml.MarkedYAMLError as e:
                raise YamlInputError(*_marked(e)) from None
            except yaml.YAMLError as e:
                raise YamlInputError(0, f"invalid YAML: {str(e)[:200]}") from None
            except RecursionError:  # PyYAML without libyaml composes recursively
                raise YamlInputError(0, f"nesting is deeper than {MAX_DEPTH} levels") from None
            if node is None:
                continue
            builder = _Builder()
            data, decoded, _height = builder.build(node, ())
            builder.check_aliases(node, decoded)
            if data is None:
                continue
            yield Document(data, _line(node), builder.lines, builder.duplicates)
    finally:
        loader.dispose()


def _marked(e: yaml.MarkedYAMLError) -> tuple[int, str]:
    mark = e.problem_mark or e.context_mark
    line = mark.line + 1 if mark is not None else 0
    message = e.problem or "syntax error"
    if e.context:
        message = f"{message} ({e.context}" + (
            f" at line {e.context_mark.line + 1})" if e.context_mark is not None else ")"
        )
    return line, f"invalid YAML: {message}"
