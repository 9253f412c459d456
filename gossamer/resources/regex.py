"""Regular expressions as Envoy runs them: RE2 (google-re2, the same library), with the program-size
limit Istio's bootstrap sets. Python's `re` is not RE2: it accepts backreferences, lookarounds,
`\\Z` and `a{1001}`, all of which Envoy rejects (a NACK)."""

from __future__ import annotations

import functools

import re2

# Istio raises Envoy's default (100) to this in every proxy's bootstrap, and so do we
# (`agent/bootstrap.py`); a regex whose compiled program is larger is rejected by Envoy.
RE2_MAX_PROGRAM_SIZE = 32768

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # errors come back to us; RE2 would also print them on stderr


@functools.lru_cache(maxsize=4096)
def re2_problem(pattern: str) -> str | None:
    """Why Envoy would reject `pattern` (RE2 syntax, program size), or None."""
    try:
        compiled = re2.compile(pattern, options=_OPTIONS)
    except re2.error as e:
        message = e.args[0] if e.args else str(e)
        return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    except (TypeError, ValueError) as e:
        return str(e)
    if compiled.programsize > RE2_MAX_PROGRAM_SIZE:
        return (
            f"compiled program size {compiled.programsize} is over Envoy's limit "
            f"(re2.max_program_size.error_level {RE2_MAX_PROGRAM_SIZE})"
        )
    return None
