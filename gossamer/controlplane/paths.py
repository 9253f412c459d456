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
    def runtime_socket(self) -> Path:
        """The runtime process's own API (root only): what only it holds, e.g. an agent's SDS state."""
        return self.run_dir / "runtime.sock"

    @property
    def runtime_state_dir(self) -> Path:
        return self.state_dir / "runtime"

    @property
    def images_dir(self) -> Path:
        """Images the control plane pulls at apply and the runtime unpacks (runtime_state_dir/../images)."""
        return self.state_dir / "images"

    @property
    def pid_file(self) -> Path:
        """The supervisor's (`gossamer up`) pid."""
        return self.state_dir / "up.pid"

    @property
    def processes_file(self) -> Path:
        """The supervisor's record of its two children (pid, start time, argv, restarts)."""
        return self.state_dir / "processes.json"
