"""What every EnvoyFilter patch step shares: the proxy's patches with their values as protos, Istio's
protobuf merge, and its list operations on repeated fields (filters, routes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import any_pb2
from google.protobuf.message import Message

from gossamer.ir.envoyfilter import ANY, GATEWAY, EnvoyFilterPatches, EnvoyPatch
from gossamer.resources.envoyfilter_values import PatchValueError, ensure_type, message_class, value_to_proto

ROUTE_CLASS = ("ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE")


@dataclass(frozen=True)
class Patch:
    """An IR patch and its value as the proto of its applyTo (None for REMOVE)."""

    ir: EnvoyPatch
    value: Message | None

    @property
    def source(self) -> str:
        return self.ir.source

    @property
    def operation(self) -> str:
        return self.ir.operation

    @property
    def context(self) -> str:
        return self.ir.context


@dataclass
class PatchSet:
    """One proxy's patches by applyTo, and the errors met while applying them."""

    gateway: bool
    by_apply_to: dict[str, list[Patch]]
    errors: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, filters: EnvoyFilterPatches, errors: list[str]) -> PatchSet:
        by_apply_to: dict[str, list[Patch]] = {}
        for p in filters.patches:
            try:
                value = value_to_proto(p.apply_to, dict(p.value)) if p.value is not None else None
            except PatchValueError as e:  # translation checked it: only a proto library change lands here
                errors.append(f"{p.source}: {e}; skipped")
                continue
            by_apply_to.setdefault(p.apply_to, []).append(Patch(p, value))
        return cls(filters.gateway, by_apply_to, errors)

    def all(self, apply_to: str) -> list[Patch]:
        return self.by_apply_to.get(apply_to, [])

    def has(self, *apply_to: str) -> bool:
        return any(self.by_apply_to.get(a) for a in apply_to)

    def in_context(self, apply_to: str, context: str) -> list[Patch]:
        """The patches of `apply_to` for an object of `context` (SIDECAR_INBOUND, SIDECAR_OUTBOUND, GATEWAY)."""
        return [p for p in self.all(apply_to) if p.context in (ANY, context)]

    def adds(self, apply_to: str) -> list[Patch]:
        """ADD patches of `apply_to` for this proxy (ANY or GATEWAY on gateways, any but GATEWAY on sidecars)."""
        return [
            p
            for p in self.all(apply_to)
            if p.operation == "ADD" and (p.context in (ANY, GATEWAY) if self.gateway else p.context != GATEWAY)
        ]


def copy_message(msg: Message) -> Message:
    out = type(msg)()
    out.CopyFrom(msg)
    return out


def merge(dst: Message, src: Message) -> None:
    """Protobuf merge (set scalars overwrite, messages merge, repeated fields append) in which an Any
    field of the same type on both sides is merged unpacked (Istio's MergeAnyWithAny)."""
    for fd, value in src.ListFields():
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            target = getattr(dst, fd.name)
            value_fd = fd.message_type.fields_by_name["value"]
            for k, v in value.items():
                if value_fd.message_type is None:
                    target[k] = v
                elif k in target:
                    _merge_message(target[k], v)
                else:
                    target[k].CopyFrom(v)
        elif fd.is_repeated:
            getattr(dst, fd.name).extend(value)
        elif fd.message_type is not None:
            _merge_message(getattr(dst, fd.name), value)
        else:
            setattr(dst, fd.name, value)


def _merge_message(dst: Message, src: Message) -> None:
    if isinstance(dst, any_pb2.Any) and isinstance(src, any_pb2.Any):
        if dst.type_url and src.type_url in (dst.type_url, ""):
            ensure_type(dst.type_url.rpartition("/")[2])
            inner_cls = message_class(dst.type_url)
            if inner_cls is not None:
                a, b = inner_cls(), inner_cls()
                dst.Unpack(a)
                if src.type_url:
                    src.Unpack(b)
                merge(a, b)
                dst.Pack(a)
                return
        if dst.type_url and src.type_url and dst.type_url != src.type_url:
            raise ValueError(f"cannot merge {src.type_url.rpartition('/')[2]} into {dst.type_url.rpartition('/')[2]}")
        dst.CopyFrom(src)
        return
    merge(dst, src)


def merge_checked(target: Message, p: Patch, errors: list[str]) -> None:
    """MERGE p's value into `target`; a merge that fails leaves `target` as it was (and is reported)."""
    assert p.value is not None
    candidate = copy_message(target)
    try:
        merge(candidate, p.value)
    except (TypeError, ValueError) as e:
        errors.append(f"{p.source}: MERGE failed: {e}; skipped")
        return
    target.CopyFrom(candidate)


def _insert(items: Any, p: Patch, matches: Callable[[Any], bool], has_match: bool) -> None:
    """ADD / INSERT_FIRST / INSERT_BEFORE / INSERT_AFTER of p.value into the repeated field `items`."""
    assert p.value is not None
    new = copy_message(p.value)
    current = list(items)
    if p.operation == "ADD":
        current.append(new)
    elif p.operation == "INSERT_FIRST" or (p.operation == "INSERT_BEFORE" and not has_match):
        current.insert(0, new)
    elif p.operation == "INSERT_AFTER" and not has_match:
        current.append(new)
    else:
        at = next((i for i, x in enumerate(current) if matches(x)), -1)
        if at < 0:
            return
        current.insert(at if p.operation == "INSERT_BEFORE" else at + 1, new)
    del items[:]
    items.extend(current)


def apply_list_ops(
    items: Any,
    patches: list[Patch],
    matches: Callable[[Patch, Any], bool],
    has_match: Callable[[Patch], bool],
    errors: list[str],
) -> None:
    """Istio's list operations on a repeated field of messages (filters, routes)."""
    for p in patches:
        if p.operation in ("ADD", "INSERT_FIRST", "INSERT_BEFORE", "INSERT_AFTER"):
            _insert(items, p, _bind(matches, p), has_match(p))
            continue
        keep = []
        for x in list(items):
            if not matches(p, x):
                keep.append(x)
            elif p.operation == "REMOVE":
                continue
            elif p.operation == "REPLACE":
                assert p.value is not None
                keep.append(copy_message(p.value))
            else:  # MERGE
                merge_checked(x, p, errors)
                keep.append(x)
        del items[:]
        items.extend(keep)


def _bind(matches: Callable[[Patch, Any], bool], p: Patch) -> Callable[[Any], bool]:
    return lambda x: matches(p, x)
