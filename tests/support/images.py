"""Container images for tests, built here from Debian's static busybox with umoci: never from a registry."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "httpd", "id", "cat", "ls", "sleep", "echo", "touch", "wget", "env")


def tools_missing() -> str | None:
    """Why images cannot be built here (None when they can)."""
    for tool in ("umoci", "skopeo"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (scripts/install)"
    if not BUSYBOX.exists() or "statically linked" not in _file_type(BUSYBOX):
        return "static busybox not installed (busybox-static)"
    return None


def _file_type(path: Path) -> str:
    out = subprocess.run(["file", "-L", str(path)], capture_output=True, text=True, check=False).stdout
    return out if out else "statically linked"  # no `file` command: trust the package


def build_busybox_image(
    layout: Path,
    tag: str,
    *,
    entrypoint: Sequence[str] = (),
    cmd: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    workdir: str = "",
    user: str = "",
    files: Mapping[str, str] | None = None,
    passwd: str = "root:x:0:0:root:/root:/bin/sh\n",
) -> str:
    """An OCI layout at `layout` holding `tag`: busybox and its applets in /bin, `files` (path -> text).
    Returns the `oci:LAYOUT:TAG` reference a Deployment can name."""

    def umoci(*args: str) -> None:
        subprocess.run(["umoci", *args], check=True, capture_output=True)

    if not (layout / "index.json").exists():
        umoci("init", "--layout", str(layout))
    umoci("new", "--image", f"{layout}:{tag}")
    bundle = layout.parent / f".bundle-{tag}"
    shutil.rmtree(bundle, ignore_errors=True)
    umoci("unpack", "--image", f"{layout}:{tag}", str(bundle))
    root = bundle / "rootfs"
    (root / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "tmp").mkdir(mode=0o1777, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "passwd").write_text(passwd)
    (root / "etc" / "group").write_text(
        "".join(
            f"{line.split(':')[0]}:x:{line.split(':')[3]}:\n" for line in passwd.splitlines() if line.count(":") >= 3
        )
    )
    for path, text in (files or {}).items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        if text.startswith("#!"):
            target.chmod(0o755)
    umoci("repack", "--image", f"{layout}:{tag}", str(bundle))
    shutil.rmtree(bundle, ignore_errors=True)
    config = ["config", "--image", f"{layout}:{tag}"]
    for part in entrypoint:
        config += ["--config.entrypoint", part]
    for part in cmd:
        config += ["--config.cmd", part]
    for key, value in (env or {}).items():
        config += ["--config.env", f"{key}={value}"]
    if workdir:
        config += ["--config.workingdir", workdir]
    if user:
        config += ["--config.user", user]
    umoci(*config)
    umoci("gc", "--layout", str(layout))
    return f"oci:{layout}:{tag}"
