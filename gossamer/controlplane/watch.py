"""Keep watching the manifests `up` was given: an edited file is re-applied.

No edit stops the watch: a file that cannot be read (removed, not UTF-8, a folder put in its place) is
reported and retried on its next change, and a failure while applying it is logged, not raised (bad
config itself never raises: it is rejected with file:line and changes nothing)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

POLL_SECONDS = 0.3


def manifest_files(paths: list[Path]) -> list[Path]:
    """Files as given; a folder contributes its top-level *.yaml / *.yml files (a folder that cannot
    be listed contributes none)."""
    out: list[Path] = []
    for p in paths:
        try:
            if p.is_dir():
                out.extend(sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file()))
            else:
                out.append(p)
        except OSError as e:
            log.warning("cannot list %s: %s", p, e)
    return out


def read_manifest(path: Path) -> str:
    """A manifest's text. Bytes that are not UTF-8 become lone surrogates, which validation reports with
    their line and column (`resources/yamldoc.py`) instead of the reader raising."""
    return path.read_bytes().decode("utf-8", errors="surrogateescape")


class ManifestWatcher:
    def __init__(self, on_edit: Callable[[Path, str], None]) -> None:
        self._on_edit = on_edit
        self._roots: list[Path] = []
        self._seen: dict[Path, tuple[float, int]] = {}

    def watch(self, roots: list[Path]) -> None:
        self._roots = roots
        self._seen = {}
        for f in manifest_files(roots):
            try:
                self._seen[f] = self._stamp(f)
            except OSError:
                continue

    @staticmethod
    def _stamp(f: Path) -> tuple[float, int]:
        st = f.stat()
        return (st.st_mtime, st.st_size)

    def poll(self) -> None:
        for f in manifest_files(self._roots):
            try:
                stamp = self._stamp(f)
            except OSError:
                continue
            if self._seen.get(f) == stamp:
                continue
            self._seen[f] = stamp
            try:
                text = read_manifest(f)
            except OSError as e:
                log.error("%s: cannot read: %s (file not re-applied)", f, e)
                continue
            try:
                self._on_edit(f, text)
            except Exception:  # the watch outlives any one edit
                log.exception("%s: re-applying the edited file failed", f)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            self.poll()
