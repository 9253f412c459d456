"""Where a mesh keeps its state and sockets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    state_dir: Path
    run_dir: Path

    @property
    def store(self) -> Path:
        return self.state_dir / "store.db"

    @property
    def api_socket(self) -> Path:
        return self.run_dir / "api.sock"

    @property
    def xds_socket(self) -> Path:
        return self.run_dir / "xds.sock"

    @property
    def zipkin_socket(self) -> Path:
        return self.run_dir / "zipkin.sock"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "up.pid"
