"""Pod volumes and environment references, as the kubelet provides them.

* **configMap / secret** volumes: the object's keys (or `items`, key -> path, with modes) as files, in
  the kubelet's atomic layout: the files live in `..<timestamp>/`, `..data` points at it and every
  top-level name is a symlink through `..data`. An update writes a new timestamped directory and
  swaps `..data` with one rename, so a reader never sees half an update (a `subPath` mount binds one
  file as it was when the container started and is not updated, as in Kubernetes).
* **emptyDir**: an empty directory (0777) for the pod's life, shared by its containers; `/run` is a
  tmpfs, so `medium: Memory` is what every emptyDir gets.

Each pod's volumes live in `<run-dir>/<pod id>/volumes/` (0700 root: no other process on the host,
not even the pod's Envoy, reaches them). A container sees them at its `volumeMounts[].mountPath`, and
only there: its process starts in a mount namespace of its own (`ip netns exec` makes one, slave to the host, so nothing
mounted in it leaks out), where a short script bind-mounts the volumes (configMap and secret
read-only) before it drops privileges and execs the container's command. No other pod and no host
process sees those mounts. Mount points that do not exist on the host are created (empty directories,
or empty files for a file `subPath`) and recorded in the runtime's state record (`mountpoints`), so
`gossamer down` removes them.

Environment: `valueFrom.configMapKeyRef` / `secretKeyRef` / `fieldRef` and `envFrom` are resolved
when a container starts (as the kubelet does: a later change reaches restarted containers only).
A reference to a ConfigMap, Secret or key that does not exist and is not `optional` keeps the pod's
containers from starting until it appears (the kubelet's CreateContainerConfigError).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shlex
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gossamer.runtime.types import ContainerSpec, DeploymentSpec, SourceData, VolumeSpec

log = logging.getLogger(__name__)


class MountRecord(Protocol):
    """Where created mount points are recorded (runtime/state.py's StateRecord, which removes them
    with `cleanup_mountpoints`)."""

    def add(self, kind: str, value: str) -> None: ...


DATA_DIR = "..data"
# envFrom keys that become variables: C identifiers (the kubelet skips other keys, as it long did; a
# name like `config.yaml` would not survive the `sh` that starts the container either).
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FIELD_MAP = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")
MOUNTPOINTS = "mountpoints"  # the state record's list of mount points created on the host


def volumes_dir(pod_run_dir: Path) -> Path:
    """Inside the pod's run directory (removed, and kept on adoption, with it); 0700 root."""
    return pod_run_dir / "volumes"


def _sources(spec: DeploymentSpec) -> dict[tuple[str, str], dict[str, bytes] | None]:
    out: dict[tuple[str, str], dict[str, bytes] | None] = {}
    for s in spec.sources:
        out[(s.kind, s.name)] = {k: base64.b64decode(v) for k, v in s.data} if s.present else None
    return out


def _source_kind(volume: VolumeSpec) -> str:
    return "ConfigMap" if volume.kind == "configMap" else "Secret"


def projected_files(
    volume: VolumeSpec, sources: Mapping[tuple[str, str], dict[str, bytes] | None]
) -> tuple[dict[str, tuple[bytes, int]], str | None]:
    """The files of a configMap/secret volume: relative path -> (content, mode), and what is missing
    (None: nothing) for a volume that is not optional."""
    data = sources.get((_source_kind(volume), volume.source))
    kind = _source_kind(volume)
    if data is None:
        missing = None if volume.optional else f"{kind} {volume.source!r} not found"
        return {}, missing
    files: dict[str, tuple[bytes, int]] = {}
    if not volume.items:
        for key, value in data.items():
            files[key] = (value, volume.default_mode)
        return files, None
    missing_keys = []
    for item in volume.items:
        if item.key in data:
            files[item.path] = (data[item.key], item.mode if item.mode is not None else volume.default_mode)
        else:
            missing_keys.append(item.key)
    if missing_keys and not volume.optional:
        return files, f"{kind} {volume.source!r} has no key {missing_keys[0]!r}"
    return files, None


def write_atomic(directory: Path, files: Mapping[str, tuple[bytes, int]]) -> None:
    """Write FILES into DIRECTORY the kubelet's way (timestamped dir, `..data` swapped by a rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    stamp = directory / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns() % 10**9}"
    stamp.mkdir(mode=0o755)
    for rel, (content, mode) in files.items():
        target = stamp / rel
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        target.write_bytes(content)
        target.chmod(mode)
    data_link = directory / DATA_DIR
    old = os.readlink(data_link) if data_link.is_symlink() else None
    tmp = directory / "..data_tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(stamp.name)
    os.replace(tmp, data_link)
    top = {rel.split("/", 1)[0] for rel in files}
    for name in top:
        link = directory / name
        if not link.is_symlink():
            link.symlink_to(f"{DATA_DIR}/{name}")
    for entry in directory.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.name not in top and entry.is_symlink():
            entry.unlink()
    if old and old != stamp.name:
        shutil.rmtree(directory / old, ignore_errors=True)


@dataclass
class PodVolumes:
    """One pod's volumes on the host (created before its containers start, kept up to date)."""

    root: Path
    spec: DeploymentSpec

    def prepare(self) -> list[str]:
        """Create every volume; what keeps the containers from starting (empty: nothing)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        for v in self.spec.volumes:
            d = self.root / v.name
            if v.kind in ("configMap", "secret"):
                continue
            d.mkdir(exist_ok=True)
            d.chmod(0o777 if v.kind == "emptyDir" else 0o755)
        self.refresh(self.spec, force=True)
        return self.missing()

    def refresh(self, spec: DeploymentSpec, *, force: bool = False) -> bool:
        """New content of the ConfigMaps/Secrets (same template): rewrite the volumes whose files
        changed. True if anything was written."""
        old_sources = _sources(self.spec)
        self.spec = spec
        sources = _sources(spec)
        changed = False
        for v in spec.volumes:
            if v.kind not in ("configMap", "secret"):
                continue
            files, _ = projected_files(v, sources)
            if not force and files == projected_files(v, old_sources)[0]:
                continue
            write_atomic(self.root / v.name, files)
            changed = True
        return changed

    def missing(self) -> list[str]:
        """References (volumes, env) that are neither satisfied nor optional."""
        sources = _sources(self.spec)
        out = []
        for v in self.spec.volumes:
            if v.kind in ("configMap", "secret"):
                problem = projected_files(v, sources)[1]
                if problem:
                    out.append(f"volume {v.name!r}: {problem}")
        for c in self.spec.containers:
            out += [f"container {c.name!r}: {p}" for p in env_problems(c, sources)]
        return out

    def mounts(self, container: ContainerSpec) -> list[tuple[str, str, bool]]:
        """(source on the host, target in the container, read only) for each of its volume mounts."""
        kinds = {v.name: v.kind for v in self.spec.volumes}
        out = []
        for m in container.mounts:
            kind = kinds.get(m.name)
            if kind is None:
                continue
            source = self.root / m.name
            if kind == "unsupported":
                source.mkdir(exist_ok=True)
            if m.sub_path:
                # Through the volume's symlinks: the bind resolves them when the container (re)starts,
                # so it gets the content of that moment and keeps it (a subPath is never updated).
                source = source / m.sub_path
                if not source.exists() and kind in ("emptyDir", "unsupported"):
                    source.mkdir(parents=True, exist_ok=True)
            read_only = m.read_only or kind in ("configMap", "secret")
            out.append((str(source), m.mount_path, read_only))
        return out


def ensure_mountpoints(mounts: Sequence[tuple[str, str, bool]], record: MountRecord) -> None:
    """Mount points a bind needs on the host: missing directories (or an empty file for a file source)
    are created and recorded, outermost first, so `down` removes them (cleanup_mountpoints)."""
    for source, target, _ in mounts:
        path = Path(target)
        wanted_dir = Path(source).is_dir()
        missing = []
        p = path
        while not p.exists() and not p.is_symlink():
            missing.append(p)
            p = p.parent
        for m in reversed(missing):
            record.add(MOUNTPOINTS, str(m))
            if m == path and not wanted_dir:
                m.touch(mode=0o644)
            else:
                m.mkdir(mode=0o755)


def mounted_anywhere() -> set[str]:
    """Mount points of every live process's mount namespace (a container's volumes are mounted in its
    own): removing such a directory on the host would detach the mount from under a running pod (an
    adopted one, after a runtime restart)."""
    seen: set[str] = set()
    out: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ns = os.readlink(proc / "ns/mnt")
            if ns in seen:
                continue
            seen.add(ns)
            for line in (proc / "mountinfo").read_text().splitlines():
                fields = line.split()
                if len(fields) > 4:
                    out.add(fields[4].replace("\\040", " "))
        except OSError:
            continue
    return out


def cleanup_mountpoints(paths: Sequence[str]) -> None:
    """Remove recorded mount points, innermost first, only while they are empty and mounted nowhere."""
    in_use = mounted_anywhere() if paths else set()
    for p in sorted(paths, key=lambda x: x.count("/"), reverse=True):
        path = Path(p)
        if p in in_use:
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            elif path.is_file() and path.stat().st_size == 0:
                path.unlink()
        except OSError:
            continue


def mount_script(mounts: Sequence[tuple[str, str, bool]]) -> str:
    """`sh -c` program binding MOUNTS in the process's own mount namespace, then exec "$@"."""
    lines = ["set -e"]
    for source, target, read_only in mounts:
        s, t = shlex.quote(source), shlex.quote(target)
        lines.append(f"mount --no-canonicalize --bind {s} {t}")
        if read_only:
            lines.append(f"mount --no-canonicalize -o remount,bind,ro {t}")
    lines.append('exec "$@"')
    return "\n".join(lines)


def with_mounts(argv: Sequence[str], netns: str, mounts: Sequence[tuple[str, str, bool]]) -> list[str]:
    """ARGV (`ip netns exec NETNS ...`) with the mounts made first, inside that process's namespace."""
    prefix = ["ip", "netns", "exec", netns]
    if not mounts or list(argv[:4]) != prefix:
        return list(argv)
    return [*prefix, "sh", "-c", mount_script(mounts), "gsm-volumes", *argv[4:]]


# ---------------------------------------------------------------------------- environment


def env_problems(container: ContainerSpec, sources: Mapping[tuple[str, str], dict[str, bytes] | None]) -> list[str]:
    out = []
    for r in container.env_refs:
        if r.kind == "field" or r.optional:
            continue
        data = sources.get((r.kind, r.source))
        if data is None:
            out.append(f"env {r.name}: {r.kind} {r.source!r} not found")
        elif r.key not in data:
            out.append(f"env {r.name}: {r.kind} {r.source!r} has no key {r.key!r}")
    for f in container.env_from:
        if not f.optional and sources.get((f.kind, f.source)) is None:
            out.append(f"envFrom: {f.kind} {f.source!r} not found")
    return out


def field_value(path: str, fields: Mapping[str, str], labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
    m = _FIELD_MAP.match(path)
    if m:
        return (labels if m.group(1) == "labels" else annotations).get(m.group(2), "")
    return fields.get(path, "")


def container_env(container: ContainerSpec, spec: DeploymentSpec, fields: Mapping[str, str]) -> dict[str, str]:
    """The container's variables from envFrom (first) and its env list, as the kubelet orders them:
    envFrom keys that are not C identifiers are skipped, env entries override them."""
    sources = _sources(spec)
    out: dict[str, str] = {}
    for f in container.env_from:
        for key, value in sorted((sources.get((f.kind, f.source)) or {}).items()):
            name = f.prefix + key
            if _ENV_NAME.match(name):
                out[name] = value.decode(errors="replace")
    out.update(dict(container.env))
    labels, annotations = dict(spec.labels), dict(spec.annotations)
    for r in container.env_refs:
        if r.kind == "field":
            out[r.name] = field_value(r.source, fields, labels, annotations)
            continue
        data = sources.get((r.kind, r.source)) or {}
        if r.key in data:
            out[r.name] = data[r.key].decode(errors="replace")
    return out


def pod_fields(*, name: str, namespace: str, ip: str, service_account: str, uid: str) -> dict[str, str]:
    """What `fieldRef` paths read for one pod (the node is this machine)."""
    host = os.uname().nodename
    return {
        "metadata.name": name,
        "metadata.namespace": namespace,
        "metadata.uid": uid,
        "spec.nodeName": host,
        "spec.serviceAccountName": service_account,
        "status.podIP": ip,
        "status.podIPs": ip,
        "status.hostIP": "10.244.0.1",
        "status.hostIPs": "10.244.0.1",
    }


__all__ = [
    "SourceData",
    "PodVolumes",
    "container_env",
    "ensure_mountpoints",
    "cleanup_mountpoints",
    "with_mounts",
    "pod_fields",
    "volumes_dir",
]
