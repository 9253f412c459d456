"""Validation of Telemetry: providers, metrics overrides, access logging and tracing entries."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from gossamer.resources.telemetry import Telemetry
from gossamer.resources.validation.common import Finding, Report, check_target


def validate_telemetry(res: Telemetry) -> list[Finding]:
    from pydantic import ValidationError

    from gossamer.resources.telemetry import ENTRY_MODELS

    rep = Report()
    check_target(rep, res.spec)
    for field, model in ENTRY_MODELS.items():
        for i, entry in enumerate(getattr(res.spec, _snake(field)) or []):
            try:
                model.model_validate(entry)
            except ValidationError as e:
                for err in e.errors()[:20]:
                    loc = tuple(p for p in err["loc"] if isinstance(p, int) or p in _known_keys(entry, err["loc"]))
                    message = (
                        f"unknown field {err['loc'][-1]!r}"
                        if err["type"] == "extra_forbidden"
                        else "required field is missing"
                        if err["type"] == "missing"
                        else str(err["msg"]).removeprefix("Value error, ")
                    )
                    shown = loc[:-1] if err["type"] == "extra_forbidden" else loc
                    rep.error(("spec", field, i) + shown, message)
    return rep.findings


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _known_keys(entry: Any, loc: Sequence[Any]) -> set[str]:
    """The keys present along `loc` in `entry` (pydantic's locations also name union members)."""
    keys: set[str] = set()
    cur = entry
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            keys.add(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        elif isinstance(part, str):
            keys.add(part)  # a missing or unknown key: named at the end
            break
    return keys
