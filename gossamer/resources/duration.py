"""Durations as Istio writes them: Go/protobuf style strings like "1s", "0.5s", "100ms", "1h30m"."""

from __future__ import annotations

import re

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(s: str) -> float:
    """Return the duration in seconds; raise ValueError for anything Istio would reject.

    Accepts a sequence of <number><unit> parts (units ns, us, ms, s, m, h), e.g.
    "1s", "0.5s", "100ms", "1m", "1h30m". "0" alone is zero. Negative durations
    are rejected.
    """
    if not isinstance(s, str):
        raise ValueError(f"duration must be a string like '1s' or '100ms', got {s!r}")
    text = s.strip()
    if text == "0":
        return 0.0
    if not text:
        raise ValueError("empty duration")
    if text.startswith("-"):
        raise ValueError(f"duration {s!r} must not be negative")
    pos = 0
    total = 0.0
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None:
            raise ValueError(
                f"invalid duration {s!r}: expected a number and a unit (ns, us, ms, s, m, h), e.g. '1s', '100ms'"
            )
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return total


def is_valid_duration(s: object) -> bool:
    try:
        parse_duration(s)  # type: ignore[arg-type]
    except ValueError:
        return False
    return True


def format_duration(seconds: float) -> str:
    """Inverse helper for messages: 0.25 -> '250ms', 2.0 -> '2s'."""
    ms = round(seconds * 1000)
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"
