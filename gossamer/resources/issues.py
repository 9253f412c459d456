"""Problems found while loading configuration, each pinned to a file and line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


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
