"""Keep watching the manifests `up` was given: an edited file is re-applied."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

POLL_SECONDS = 0.3


def manifest_files(paths: list[Path]) -> list[Path]:
    """Files as given; a folder contributes its top-level *.yaml / *.yml files."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file()))
        else:
            out.append(p)
    return out


class ManifestWatcher:
    def __init__(self, on_edit: Callable[[Path, str], None]) -> None:
        self._on_edit = on_edit
        self._roots: list[Path] = []
        self._seen: dict[Path, tuple[float, int]] = {}

    def watch(self, roots: list[Path]) -> None:
        self._roots = roots
        self._seen = {f: self._stamp(f) for f in manifest_files(roots)}

    @staticmethod
    def _stamp(f: Path) -> tuple[float, int]:
        st = f.stat()
        return (st.st_mtime, st.st_size)

    def poll(self) -> None:
        for f in manifest_files(self._roots):
            try:
                stamp = self._stamp(f)
            except FileNotFoundError:
                continue
            if self._seen.get(f) != stamp:
                self._seen[f] = stamp
                self._on_edit(f, f.read_text())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            self.poll()
