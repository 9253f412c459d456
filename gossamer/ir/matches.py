"""IR for string matches (headers, query parameters, CORS origins, authorization values): shared by
routes (ir/types.py) and route actions (ir/route_actions.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MatchKind = Literal["exact", "prefix", "regex", "present"]


@dataclass(frozen=True)
class StringMatch:
    kind: MatchKind
    value: str = ""
    ignore_case: bool = False
