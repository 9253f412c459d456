"""Preparing a container that runs its image: obtain, unpack once per pod, and describe the launch.

The runtime runs the returned argv inside the pod's network namespace, as root; `container_init`
then builds the container's mount namespace and drops to its user. Each pod gets its own copy of
the image's root filesystem under its root-only directory, kept across container restarts.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gossamer.runtime.container_init import ContainerLaunch, Mount
from gossamer.runtime.images import ImageCache, image_env, resolve_user
from gossamer.runtime.types import ContainerSpec

# kubelet's image pull back-off: after a failed pull the container shows ErrImagePull, then
# ImagePullBackOff until the next try, 10 s after the first failure, doubling to 5 minutes.
ERR_IMAGE_PULL = "ErrImagePull"
IMAGE_PULL_BACKOFF = "ImagePullBackOff"
PULL_BACKOFF_INITIAL_S = 10.0
PULL_BACKOFF_MAX_S = 300.0
ERR_IMAGE_PULL_SHOWN_S = 5.0  # how long ErrImagePull shows before ImagePullBackOff (kubelet's next sync)


def pull_failed(container: str, image: str, reason: object) -> str:
    """A pod's waiting message for a container whose image could not be pulled just now."""
    return f"container {container}: {ERR_IMAGE_PULL}: cannot pull {image}: {reason}"


def backing_off(message: str, delay: float) -> str:
    """The ErrImagePull message MESSAGE once its container waits for the next try (ImagePullBackOff)."""
    head, sep, reason = message.partition(f": {ERR_IMAGE_PULL}: ")
    if not sep:
        return message
    return f"{head}: {IMAGE_PULL_BACKOFF}: back-off {delay:.0f}s before pulling again ({reason})"


def next_pull_delay(delay: float) -> float:
    return min(delay * 2, PULL_BACKOFF_MAX_S)


@dataclass(frozen=True)
class ContainerUser:
    """Who the container runs as: `explicit` when the pod's securityContext said so (then even uid 0)."""

    uid: int
    gid: int
    explicit: bool = False


def choose_user(image_user: tuple[int | None, int | None], pod_user: ContainerUser) -> tuple[int, int]:
    """The pod's securityContext wins; else the image's USER unless it is root; else the pod's non-root
    default. An image never gets root by itself: only a pod spec asking for `runAsUser: 0` does."""
    if pod_user.explicit:
        return pod_user.uid, pod_user.gid
    uid, gid = image_user
    if uid is not None and uid != 0:
        return uid, gid if gid is not None else uid
    return pod_user.uid, pod_user.gid


async def prepare_image_container(
    *,
    cache: ImageCache,
    spec: ContainerSpec,
    pod_dir: Path,
    hostname: str,
    env: Mapping[str, str],
    user: ContainerUser,
    etc_dir: Path,
    mounts: Sequence[tuple[str, str, bool]] = (),
) -> list[str]:
    """The argv that starts `spec` (run it in the pod's netns, as root). Raises ImageError."""
    image = await asyncio.to_thread(cache.ensure, spec.image, spec.pull_policy, spec.workdir)
    config = cache.config(image)
    bundle = pod_dir / "containers" / spec.name
    marker = bundle / "image-digest"
    if not marker.exists() or marker.read_text() != image.digest:
        rootfs = await asyncio.to_thread(cache.unpack, image, bundle)
        marker.write_text(image.digest)
    else:
        rootfs = bundle / "rootfs"
    uid, gid = choose_user(resolve_user(rootfs, config.user), user)
    hostname_file = bundle / "hostname"
    hostname_file.write_text(hostname + "\n")
    etc_files = {"/etc/hostname": str(hostname_file)}
    for name in ("hosts", "resolv.conf"):
        if (etc_dir / name).exists():
            etc_files[f"/etc/{name}"] = str(etc_dir / name)
    launch = ContainerLaunch(
        rootfs=str(rootfs),
        argv=config.argv(spec.command, spec.args),
        env=image_env(config, list(env.items())),
        workdir=config.working_dir,
        uid=uid,
        gid=gid,
        hostname=hostname,
        etc_files=etc_files,
        # the pod's volumes (runtime/volumes.py PodVolumes.mounts), bound inside the image's root
        mounts=[Mount(source, target, read_only) for source, target, read_only in mounts],
    )
    if not launch.argv:
        from gossamer.runtime.images import ImageError

        raise ImageError("the image has no entrypoint or cmd and the container no command or args")
    spec_path = bundle / "launch.json"
    spec_path.write_text(launch.to_json())
    spec_path.chmod(0o600)
    return launch_argv(pod_dir, spec.name)


def launched_user(pod_dir: Path, container: str) -> tuple[int, int] | None:
    """(uid, gid) a prepared image container runs as (its launch spec), None when not prepared."""
    try:
        launch = ContainerLaunch.from_json((pod_dir / "containers" / container / "launch.json").read_text())
    except (OSError, ValueError, TypeError):
        return None
    return launch.uid, launch.gid


def launch_argv(pod_dir: Path, container: str) -> list[str]:
    """The command that starts a prepared image container (also for a pod adopted after a restart)."""
    return [
        sys.executable,
        "-m",
        "gossamer.runtime.container_init",
        str(pod_dir / "containers" / container / "launch.json"),
    ]
