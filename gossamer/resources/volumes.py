"""Pod volumes, volume mounts and environment references, checked as the API server checks them
(one object at a time; references to ConfigMaps and Secrets that do not exist are the analyzers'
and `apply`'s warnings, `references()` lists them)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gossamer.resources import apps

Path_ = tuple[str | int, ...]

SUPPORTED_VOLUMES = ("configMap", "secret", "emptyDir")
# fieldRef paths the local runtime fills (Kubernetes' downward API for env).
FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.podIP",
    "status.podIPs",
    "status.hostIP",
    "status.hostIPs",
)
_FIELD_MAP = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


@dataclass(frozen=True)
class Problem:
    level: str  # "error" | "warning"
    path: Path_
    message: str


def _relative_ok(path: str) -> str | None:
    """Why a relative path (subPath, items[].path) is not acceptable, or None."""
    if path.startswith("/"):
        return "must be a relative path"
    if ".." in path.split("/"):
        return "must not contain '..'"
    return None


def field_path_ok(path: str) -> bool:
    return path in FIELD_PATHS or bool(_FIELD_MAP.match(path))


def check_pod(pod: apps.PodSpec, pp: Path_) -> list[Problem]:
    out: list[Problem] = []
    volumes: dict[str, int] = {}
    for i, v in enumerate(pod.volumes or []):
        vp = pp + ("volumes", i)
        if v.name in volumes:
            out.append(Problem("error", vp + ("name",), f"duplicate volume name {v.name!r}"))
        volumes.setdefault(v.name, i)
        out += _volume_problems(vp, v)
    for i, c in enumerate(pod.containers):
        cp = pp + ("containers", i)
        out += _mount_problems(cp, c, volumes)
        for j, env in enumerate(c.env):
            if env.value_from is not None:
                out += _value_from_problems(cp + ("env", j), env, env.value_from)
        for j, ef in enumerate(c.env_from or []):
            out += _env_from_problems(cp + ("envFrom", j), ef)
    return out


def _volume_problems(vp: Path_, v: apps.Volume) -> list[Problem]:
    kinds = [
        k
        for k, val in (("configMap", v.config_map), ("secret", v.secret), ("emptyDir", v.empty_dir))
        if val is not None
    ] + sorted(v.model_extra or {})
    if len(kinds) != 1:
        return [
            Problem(
                "error",
                vp,
                "a volume has exactly one type (configMap, secret, emptyDir, ...)"
                if kinds
                else "a volume needs a type (configMap, secret or emptyDir)",
            )
        ]
    if kinds[0] not in SUPPORTED_VOLUMES:
        return [
            Problem(
                "warning",
                vp + (kinds[0],),
                f"{kinds[0]} volumes are not supported locally: containers mounting it get an empty directory",
            )
        ]
    out: list[Problem] = []
    if v.config_map is not None:
        out += _source_problems(vp + (kinds[0],), v.config_map, v.config_map.name, "name", "ConfigMap")
    elif v.secret is not None:
        out += _source_problems(vp + (kinds[0],), v.secret, v.secret.secret_name, "secretName", "Secret")
    if v.empty_dir is not None and v.empty_dir.medium not in (None, "", "Memory"):
        out.append(Problem("error", vp + ("emptyDir", "medium"), 'medium is "" or "Memory"'))
    return out


def _source_problems(
    sp: Path_,
    source: apps.ConfigMapVolumeSource | apps.SecretVolumeSource,
    name: str | None,
    name_field: str,
    kind: str,
) -> list[Problem]:
    out: list[Problem] = []
    if not name:
        out.append(Problem("error", sp + (name_field,), f"the {kind} name is required"))
    mode = source.default_mode
    if mode is not None and not 0 <= mode <= 0o777:
        out.append(Problem("error", sp + ("defaultMode",), "must be a file mode between 0 and 0777"))
    paths: set[str] = set()
    for j, item in enumerate(source.items or []):
        ip = sp + ("items", j)
        why = _relative_ok(item.path)
        if why:
            out.append(Problem("error", ip + ("path",), why))
        if item.path in paths:
            out.append(Problem("error", ip + ("path",), f"duplicate path {item.path!r}"))
        paths.add(item.path)
        if item.mode is not None and not 0 <= item.mode <= 0o777:
            out.append(Problem("error", ip + ("mode",), "must be a file mode between 0 and 0777"))
    return out


def _mount_problems(cp: Path_, c: apps.Container, volumes: dict[str, int]) -> list[Problem]:
    out: list[Problem] = []
    targets: set[str] = set()
    for j, m in enumerate(c.volume_mounts or []):
        mp = cp + ("volumeMounts", j)
        if m.name not in volumes:
            out.append(Problem("error", mp + ("name",), f"volume {m.name!r} is not one of the pod's volumes"))
        if not m.mount_path.startswith("/"):
            out.append(Problem("error", mp + ("mountPath",), "must be an absolute path"))
        elif ".." in m.mount_path.split("/"):
            out.append(Problem("error", mp + ("mountPath",), "must not contain '..'"))
        if m.mount_path in targets:
            out.append(Problem("error", mp + ("mountPath",), f"{m.mount_path!r} is mounted twice"))
        targets.add(m.mount_path)
        if m.sub_path:
            why = _relative_ok(m.sub_path)
            if why:
                out.append(Problem("error", mp + ("subPath",), why))
        if m.sub_path_expr:
            out.append(Problem("warning", mp + ("subPathExpr",), "not supported locally: ignored"))
    return out


def _value_from_problems(ep: Path_, env: apps.EnvVar, src: apps.EnvVarSource) -> list[Problem]:
    out: list[Problem] = []
    if env.value is not None:
        out.append(Problem("error", ep, "only one of value, valueFrom may be set"))
    set_ = [
        n
        for n, val in (
            ("configMapKeyRef", src.config_map_key_ref),
            ("secretKeyRef", src.secret_key_ref),
            ("fieldRef", src.field_ref),
            ("resourceFieldRef", src.resource_field_ref),
        )
        if val is not None
    ]
    if len(set_) != 1:
        out.append(
            Problem(
                "error",
                ep + ("valueFrom",),
                "exactly one of configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef must be set",
            )
        )
        return out
    if src.resource_field_ref is not None:
        out.append(
            Problem(
                "warning",
                ep + ("valueFrom", "resourceFieldRef"),
                "not supported locally: the variable is left unset",
            )
        )
    for what, ref in (("configMapKeyRef", src.config_map_key_ref), ("secretKeyRef", src.secret_key_ref)):
        if ref is None:
            continue
        if not ref.name:
            out.append(Problem("error", ep + ("valueFrom", what, "name"), "name is required"))
        if not _KEY.match(ref.key):
            out.append(Problem("error", ep + ("valueFrom", what, "key"), f"invalid key {ref.key!r}"))
    if src.field_ref is not None and not field_path_ok(src.field_ref.field_path):
        out.append(
            Problem(
                "error",
                ep + ("valueFrom", "fieldRef", "fieldPath"),
                f"unsupported fieldPath {src.field_ref.field_path!r} (one of "
                f"{', '.join(FIELD_PATHS)}, metadata.labels['KEY'], metadata.annotations['KEY'])",
            )
        )
    return out


def _env_from_problems(fp: Path_, ef: apps.EnvFromSource) -> list[Problem]:
    out: list[Problem] = []
    refs = [r for r in (ef.config_map_ref, ef.secret_ref) if r is not None]
    if len(refs) != 1:
        out.append(Problem("error", fp, "exactly one of configMapRef, secretRef must be set"))
    elif not refs[0].name:
        out.append(
            Problem("error", fp + ("configMapRef" if ef.config_map_ref else "secretRef", "name"), "name is required")
        )
    if ef.prefix and not _ENV_NAME.match(ef.prefix):
        out.append(Problem("error", fp + ("prefix",), f"invalid environment variable prefix {ef.prefix!r}"))
    return out


@dataclass(frozen=True)
class Reference:
    """A pod template's use of a ConfigMap or Secret key (key "" for the whole object)."""

    kind: str  # "ConfigMap" | "Secret"
    name: str
    key: str
    optional: bool
    path: Path_  # the referencing field, from the Deployment's root


def references(deployment: Any) -> Iterator[Reference]:
    pod = deployment.spec.template.spec
    pp: Path_ = ("spec", "template", "spec")
    for i, v in enumerate(pod.volumes or []):
        for kind, src, name, name_field in (
            ("ConfigMap", v.config_map, v.config_map.name if v.config_map else "", "name"),
            ("Secret", v.secret, v.secret.secret_name if v.secret else "", "secretName"),
        ):
            if src is None or not name:
                continue
            field = "configMap" if kind == "ConfigMap" else "secret"
            yield Reference(kind, name, "", bool(src.optional), pp + ("volumes", i, field, name_field))
            for j, item in enumerate(src.items or []):
                yield Reference(kind, name, item.key, bool(src.optional), pp + ("volumes", i, field, "items", j, "key"))
    for i, c in enumerate(pod.containers):
        cp = pp + ("containers", i)
        for j, env in enumerate(c.env):
            src = env.value_from
            if src is None:
                continue
            for kind, what, ref in (
                ("ConfigMap", "configMapKeyRef", src.config_map_key_ref),
                ("Secret", "secretKeyRef", src.secret_key_ref),
            ):
                if ref is not None and ref.name:
                    yield Reference(kind, ref.name, ref.key, bool(ref.optional), cp + ("env", j, "valueFrom", what))
        for j, ef in enumerate(c.env_from or []):
            for kind, what, obj in (
                ("ConfigMap", "configMapRef", ef.config_map_ref),
                ("Secret", "secretRef", ef.secret_ref),
            ):
                if obj is not None and obj.name:
                    yield Reference(kind, obj.name, "", bool(obj.optional), cp + ("envFrom", j, what, "name"))


def reference_problem(ref: Reference, data_keys: set[str] | None) -> str | None:
    """Why a (non-optional) reference cannot be satisfied, given the keys of the object it names (None:
    the object does not exist), or None when it can."""
    if ref.optional:
        return None
    if data_keys is None:
        return f"{ref.kind} {ref.name!r} not found: the pod's containers do not start until it exists"
    if ref.key and ref.key not in data_keys:
        return f"{ref.kind} {ref.name!r} has no key {ref.key!r}"
    return None
