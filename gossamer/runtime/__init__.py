"""The embedded local runtime: pods as network namespaces on one machine.

`LocalRuntime` and `cleanup_leftovers` live in `gossamer.runtime.local`; they are
re-exported lazily so that importing `gossamer.runtime.types` stays cheap and
free of import cycles (gossamer.agent imports the types).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gossamer.runtime.local import LocalRuntime, RuntimeAlreadyRunning, cleanup_leftovers

__all__ = ["LocalRuntime", "RuntimeAlreadyRunning", "cleanup_leftovers"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from gossamer.runtime import local

        return getattr(local, name)
    raise AttributeError(f"module 'gossamer.runtime' has no attribute {name!r}")
