"""Shared pieces of the typed models: the model base class, common field types,
object metadata and `Resource`, one parsed Kubernetes/Istio object."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Generic, Self, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, GetCoreSchemaHandler, PrivateAttr, model_validator
from pydantic_core import CoreSchema, core_schema

from gossamer.resources.duration import parse_duration


def to_camel(name: str) -> str:
    """snake_case -> camelCase, Istio style: consecutive_5xx_errors -> consecutive5xxErrors,
    http1_max_pending_requests -> http1MaxPendingRequests, from_ -> from."""
    parts = name.rstrip("_").split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


class Model(BaseModel):
    """Base of every spec model: immutable, unknown fields rejected, camelCase in YAML,
    snake_case in Python."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        """`field: null` means unset, as in Kubernetes and Istio (protobuf JSON): the default applies.
        Unknown fields keep their null, so they are still reported."""
        if isinstance(data, dict) and any(v is None for v in data.values()):
            known = _field_names(cls)
            return {k: v for k, v in data.items() if v is not None or k not in known}
        return data

    def to_dict(self) -> dict[str, Any]:
        """camelCase dict of the fields that were set (for storing / printing)."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude_unset=True)


@functools.cache
def _field_names(cls: type[BaseModel]) -> frozenset[str]:
    return frozenset(n for name, f in cls.model_fields.items() for n in (name, f.alias) if n)


# Envoy keeps durations as int64 nanoseconds: it rejects 9223372036s (~292 years) and longer.
MAX_DURATION_SECONDS = 9_223_372_035


class Duration(str):
    """A duration as written ("1s", "0.5s", "100ms", "1h"), parsed once at load: `.seconds`.
    It stays the text it was (a `str`): stored, printed and compared as written."""

    seconds: float

    def __new__(cls, text: str) -> Duration:
        if not isinstance(text, str):
            raise ValueError(f"duration must be a string like '1s' or '100ms', got {text!r}")
        seconds = parse_duration(text)
        if seconds >= MAX_DURATION_SECONDS + 1:
            raise ValueError(
                f"duration {text!r} is longer than Envoy's maximum ({MAX_DURATION_SECONDS}s, about 292 years)"
            )
        self = super().__new__(cls, text)
        self.seconds = seconds
        return self

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            lambda v: v if isinstance(v, Duration) else cls(v),
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )


def _int_or_string(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise ValueError(f"must be a number or a name, got {v!r}")
    return v


IntOrString = Annotated[int | str, BeforeValidator(_int_or_string)]
"""Kubernetes IntOrString (e.g. targetPort: 8080 or targetPort: http)."""


def _null_is_empty(v: Any) -> Any:
    return {} if v is None else v


StringMap = Annotated[dict[str, str], BeforeValidator(_null_is_empty)]
"""labels / annotations: `null` (as `kubectl get -o yaml` may print) reads as empty."""

NonNegInt = Annotated[int, Field(ge=0)]
PosInt = Annotated[int, Field(ge=1)]
INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1
Int32 = Annotated[int, Field(ge=-INT32_MAX - 1, le=INT32_MAX)]
NonNegInt32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
"""Kubernetes' int32 fields (replicas, probe timings) and protobuf's int32."""
PosInt32 = Annotated[int, Field(ge=1, le=INT32_MAX)]
UInt32 = Annotated[int, Field(ge=0, le=UINT32_MAX)]
"""protobuf uint32 (Istio's counts and limits)."""
Port = Annotated[int, Field(ge=1, le=65535)]


class Metadata(Model):
    """Kubernetes ObjectMeta, the parts that matter here (others tolerated and kept)."""

    name: str
    namespace: str = "default"
    labels: StringMap = Field(default_factory=dict)
    annotations: StringMap = Field(default_factory=dict)
    generate_name: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    uid: str | None = None
    creation_timestamp: Any = None
    deletion_timestamp: Any = None
    deletion_grace_period_seconds: int | None = None
    owner_references: list[dict[str, Any]] | None = None
    finalizers: list[str] | None = None
    managed_fields: list[dict[str, Any]] | None = None
    self_link: str | None = None


FieldPath = tuple[str | int, ...]


SpecT = TypeVar("SpecT")


class Resource(BaseModel, Generic[SpecT]):
    """One parsed object; `spec` is its kind's typed spec model. Each kind has its own class (e.g.
    `networking.VirtualService`, a `Resource[VirtualServiceSpec]` whose `KIND` is "VirtualService"):
    the loader builds that class, so `snapshot.of_kind(VirtualService)` returns typed objects.
    Kinds without a spec (ServiceAccount, Secret, ConfigMap, Pod) are `Resource[None]`."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    KIND: ClassVar[str] = ""  # the kind this class holds ("" for the generic base)

    api_version: str
    kind: str
    metadata: Metadata
    spec: SpecT
    source_file: str = ""
    source_line: int = 0
    raw: dict[str, Any] = Field(default_factory=dict)

    # field path (as in the raw document, e.g. ("spec", "http", 0, "route")) -> 1-based line
    _lines: dict[FieldPath, int] = PrivateAttr(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.metadata.namespace, self.metadata.name)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def line_of(self, path: Sequence[str | int] | str) -> int:
        """Line of the field at `path` in the source file (the deepest part of the path that
        was found), or `source_line` when unknown. `path` is a tuple like
        ("spec", "http", 0, "timeout") or a dotted string like "spec.http[0].timeout"."""
        parts: FieldPath = split_path(path) if isinstance(path, str) else tuple(path)
        while parts:
            line = self._lines.get(parts)
            if line:
                return line
            parts = parts[:-1]
        return self.source_line

    @classmethod
    def spec_model(cls) -> type[BaseModel] | None:
        """The model `spec` is parsed into, or None for kinds without a spec."""
        annotation = cls.model_fields["spec"].annotation
        return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None

    def with_lines(self, lines: dict[FieldPath, int]) -> Self:
        self._lines = dict(lines)
        return self


def format_path(path: Sequence[str | int]) -> str:
    """("spec", "http", 0, "route") -> "spec.http[0].route"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def split_path(text: str) -> FieldPath:
    """Inverse of `format_path` (keys containing '.' or '[' are not supported)."""
    out: list[str | int] = []
    for chunk in text.split("."):
        if not chunk:
            continue
        name, _, rest = chunk.partition("[")
        if name:
            out.append(name)
        while rest:
            idx, _, rest = rest.partition("]")
            out.append(int(idx))
            rest = rest.lstrip("[")
    return tuple(out)
