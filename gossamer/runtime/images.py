"""Container images: obtained with skopeo, cached as OCI layouts, unpacked with umoci.

A container with an `image` and no `command` runs that image (see `container_init`). Where the
image comes from follows its reference:

* `oci:PATH[:TAG]`, `oci-archive:PATH[:TAG]`, `docker-archive:PATH[:REF]` (a `docker save` /
  `podman save` archive): local sources, a relative PATH taken from the manifest's folder;
* anything else is a registry reference (`cncamp/httpserver:v1` is `docker.io/cncamp/httpserver:v1`),
  looked up first among the images already in the cache (pulled before, or `gossamer image load`ed).

Every image obtained is kept under `<state>/images/<key>/` as an OCI layout (tag `img`) with a
`source.json` saying where it came from, so `imagePullPolicy: IfNotPresent` (the default) and `Never`
need no registry once it is there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PullPolicy = Literal["Always", "IfNotPresent", "Never"]
LOCAL_TRANSPORTS = ("oci:", "oci-archive:", "docker-archive:")
CACHE_TAG = "img"
PULL_TIMEOUT_S = 120
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageError(Exception):
    """An image could not be obtained or read; the message is the reason, for `cannot pull IMAGE: <reason>`."""


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config that decide how its process runs."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str = "/"
    user: str = ""

    def argv(self, command: Sequence[str], args: Sequence[str]) -> list[str]:
        """Kubernetes' rule: `command` replaces the entrypoint (and drops the image's cmd); `args` replace cmd."""
        if command:
            return [*command, *args]
        return [*self.entrypoint, *(args if args else self.cmd)]


@dataclass(frozen=True)
class CachedImage:
    reference: str  # as the Deployment wrote it
    layout: Path  # OCI layout directory holding tag CACHE_TAG
    digest: str  # manifest digest

    @property
    def image(self) -> str:
        return f"{self.layout}:{CACHE_TAG}"


def normalize_reference(image: str) -> str:
    """`nginx` -> `docker.io/library/nginx:latest`; `cncamp/httpserver:v1` -> `docker.io/cncamp/httpserver:v1`."""
    if image.startswith(LOCAL_TRANSPORTS):
        return image
    name, digest = (image.split("@", 1) + [""])[:2]
    first, _, rest = name.partition("/")
    if not rest:
        domain, path = "docker.io", f"library/{first}"
    elif "." in first or ":" in first or first == "localhost":
        domain, path = first, rest
    else:
        domain, path = "docker.io", name
    if digest:
        return f"{domain}/{path}@{digest}"
    if ":" not in path.rsplit("/", 1)[-1]:
        path += ":latest"
    return f"{domain}/{path}"


def skopeo_source(image: str, base_dir: Path | None) -> str:
    """The skopeo transport string for an image reference (relative local paths from `base_dir`)."""
    for transport in LOCAL_TRANSPORTS:
        if image.startswith(transport):
            rest = image[len(transport) :]
            path, sep, tag = rest.partition(":")
            p = Path(path)
            if not p.is_absolute() and base_dir is not None:
                p = base_dir / p
            return f"{transport}{p.resolve()}{sep}{tag}"
    return f"docker://{normalize_reference(image)}"


def _reason(stderr: str) -> str:
    """skopeo's last fatal line, without its logrus decoration."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    if not lines:
        return "unknown error"
    last = lines[-1]
    m = re.search(r'msg="(.*)"', last)
    text = m.group(1).replace('\\"', '"') if m else last
    return text[:400]


class ImageCache:
    """`<state>/images`: one OCI layout per image reference (root only: images may hold secrets)."""

    def __init__(self, root: Path, *, skopeo: str = "skopeo", umoci: str = "umoci") -> None:
        self.root = Path(root)
        self.skopeo = skopeo
        self.umoci = umoci

    def _dir(self, image: str, base_dir: Path | None) -> Path:
        key = skopeo_source(image, base_dir) if image.startswith(LOCAL_TRANSPORTS) else normalize_reference(image)
        return self.root / hashlib.sha256(key.encode()).hexdigest()[:24]

    def cached(self, image: str, base_dir: Path | None = None) -> CachedImage | None:
        layout = self._dir(image, base_dir)
        try:
            meta = json.loads((layout / "source.json").read_text())
        except (OSError, ValueError):
            return None
        return CachedImage(image, layout, str(meta.get("digest", "")))

    def ensure(self, image: str, policy: PullPolicy = "IfNotPresent", base_dir: Path | None = None) -> CachedImage:
        """The image, from the cache or pulled as `policy` says; ImageError with the reason otherwise."""
        if policy != "Always":
            hit = self.cached(image, base_dir)
            if hit is not None:
                return hit
            if policy == "Never":
                raise ImageError("image not present and imagePullPolicy is Never")
        return self.pull(image, base_dir)

    def pull(self, image: str, base_dir: Path | None = None) -> CachedImage:
        if shutil.which(self.skopeo) is None:
            raise ImageError(f"{self.skopeo} is not installed (scripts/install installs it)")
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        layout = self._dir(image, base_dir)
        source = skopeo_source(image, base_dir)
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".pull-") as tmp:
            staged = Path(tmp) / "layout"
            try:
                proc = subprocess.run(
                    [
                        self.skopeo,
                        "--command-timeout",
                        f"{PULL_TIMEOUT_S}s",
                        "copy",
                        "--quiet",
                        source,
                        f"oci:{staged}:{CACHE_TAG}",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=PULL_TIMEOUT_S + 10,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise ImageError(f"timed out after {PULL_TIMEOUT_S}s") from None
            if proc.returncode != 0:
                raise ImageError(_reason(proc.stderr))
            digest = _manifest_digest(staged)
            (staged / "source.json").write_text(
                json.dumps({"reference": image, "source": source, "digest": digest, "pulled_at": time.time()})
            )
            # Replace atomically enough: a reader sees the old layout or the new one.
            old = layout.with_name(layout.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            if layout.exists():
                layout.rename(old)
            staged.rename(layout)
            shutil.rmtree(old, ignore_errors=True)
        return CachedImage(image, layout, digest)

    def config(self, image: CachedImage) -> ImageConfig:
        return read_image_config(image.layout)

    def unpack(self, image: CachedImage, bundle: Path) -> Path:
        """A fresh root filesystem for one pod at `bundle/rootfs` (umoci unpack); returns it."""
        if shutil.which(self.umoci) is None:
            raise ImageError(f"{self.umoci} is not installed (scripts/install installs it)")
        shutil.rmtree(bundle, ignore_errors=True)
        bundle.parent.mkdir(parents=True, exist_ok=True)
        argv = [self.umoci, "unpack", "--image", image.image, str(bundle)]
        if os.geteuid() != 0:
            argv.insert(2, "--rootless")
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ImageError(f"unpack failed: {_reason(proc.stderr)}")
        return bundle / "rootfs"


def _blob(layout: Path, digest: str) -> dict[str, object]:
    algo, _, hexdigest = digest.partition(":")
    data = json.loads((layout / "blobs" / algo / hexdigest).read_text())
    if not isinstance(data, dict):
        raise ImageError(f"blob {digest} is not a JSON object")
    return data


def _manifest_digest(layout: Path) -> str:
    try:
        index = json.loads((layout / "index.json").read_text())
        manifests = index["manifests"]
        tagged = [
            m for m in manifests if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == CACHE_TAG
        ]
        return str((tagged or manifests)[0]["digest"])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ImageError(f"not an OCI layout: {exc}") from None


def read_image_config(layout: Path) -> ImageConfig:
    """Entrypoint, Cmd, Env, WorkingDir and User from the image's OCI config."""
    try:
        manifest = _blob(layout, _manifest_digest(layout))
        config_ref = manifest["config"]
        assert isinstance(config_ref, dict)
        blob = _blob(layout, str(config_ref["digest"]))
    except (OSError, ValueError, KeyError, AssertionError) as exc:
        raise ImageError(f"unreadable image config: {exc}") from None
    cfg = blob.get("config") or {}
    assert isinstance(cfg, dict)
    env: list[tuple[str, str]] = []
    for item in cfg.get("Env") or []:
        key, _, value = str(item).partition("=")
        env.append((key, value))
    return ImageConfig(
        entrypoint=tuple(str(a) for a in cfg.get("Entrypoint") or ()),
        cmd=tuple(str(a) for a in cfg.get("Cmd") or ()),
        env=tuple(env),
        working_dir=str(cfg.get("WorkingDir") or "/"),
        user=str(cfg.get("User") or ""),
    )


def _lookup(path: Path, name: str, field: int) -> int | None:
    """A name's id in an /etc/passwd- or /etc/group-format file of the image."""
    try:
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split(":")
            if len(parts) > field and parts[0] == name and parts[field].isdigit():
                return int(parts[field])
    except OSError:
        return None
    return None


def resolve_user(rootfs: Path, user: str) -> tuple[int | None, int | None]:
    """The image's `User` ("uid", "uid:gid", "name", "name:group") as numbers, from the image's own files.
    (None, None) when the image names no user."""
    if not user:
        return None, None
    name, _, group = user.partition(":")
    if name.isdigit():
        uid: int | None = int(name)
        primary = None
    else:
        uid = _lookup(rootfs / "etc" / "passwd", name, 2)
        if uid is None:
            raise ImageError(f"user {name!r} not found in the image's /etc/passwd")
        primary = _lookup(rootfs / "etc" / "passwd", name, 3)
    if group:
        gid = int(group) if group.isdigit() else _lookup(rootfs / "etc" / "group", group, 2)
        if gid is None:
            raise ImageError(f"group {group!r} not found in the image's /etc/group")
    else:
        gid = primary if primary is not None else uid
    return uid, gid


def image_env(config: ImageConfig, overrides: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The image's Env, then the pod's and container's (Kubernetes: the container's win); PATH always set."""
    env = dict(config.env)
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(overrides)
    return env
