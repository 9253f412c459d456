"""Problems found while loading configuration, each pinned to a file and line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

MAX_QUOTE = 60  # characters of a user's value quoted in a message
_QUOTED = re.compile(rf"'(?:[^'\\\n]|\\.){{{MAX_QUOTE},}}'|\"(?:[^\"\\\n]|\\.){{{MAX_QUOTE},}}\"")


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_quote(match: re.Match[str]) -> str:
    quoted = match.group()
    return quoted[: MAX_QUOTE - 4] + "..." + quoted[0] + f" ({len(quoted) - 2} characters)"


def short_message(message: str) -> str:
    """A message quoting at most a short prefix of each value (a 5 MB value makes no 10 MB error)."""
    if len(message) <= 2 * MAX_QUOTE:
        return message
    # a long quote was cut at 4000 characters and has no closing quote any more: shortened all the same
    return shorten(_QUOTED.sub(_short_quote, shorten(message, 4000)), 400)


@dataclass(frozen=True)
class Issue:
    """One error or warning about one object (or one file, for YAML syntax errors).

    ``str(issue)`` reads ``file:line: Kind/name: field: message``; warnings read
    ``file:line: warning: Kind/name: field: message``. Empty parts are left out.
    """

    level: Literal["error", "warning"]
    file: str
    line: int
    kind: str
    name: str
    field: str
    message: str

    def __post_init__(self) -> None:
        # Kind, name, field and message may all come from the user's text: keep them readable.
        object.__setattr__(self, "kind", shorten(self.kind, 63))
        object.__setattr__(self, "name", shorten(self.name, 253))
        object.__setattr__(self, "field", shorten(self.field, 200))
        object.__setattr__(self, "message", short_message(self.message))

    @property
    def is_error(self) -> bool:
        return self.level == "error"

    def __str__(self) -> str:
        parts: list[str] = []
        location = self.file or "<input>"
        if self.line:
            location += f":{self.line}"
        parts.append(location)
        if self.level == "warning":
            parts.append("warning")
        if self.kind or self.name:
            parts.append(f"{self.kind}/{self.name}" if self.name else self.kind)
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


def errors_only(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.level == "error"]


def has_errors(issues: list[Issue]) -> bool:
    return any(i.level == "error" for i in issues)
