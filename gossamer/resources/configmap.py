"""core/v1 ConfigMap: `data` (strings), `binaryData` (base64), `immutable`, as the API server
checks them; `ConfigMap istio-system/istio` also has its `mesh` key checked as Istio's MeshConfig
(`meshconfig.py`), each problem at its own line inside the embedded YAML."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from gossamer.resources.base import Resource
from gossamer.resources.core import configmap_data
from gossamer.resources.meshconfig import (
    MESH_CONFIGMAP_KEY,
    MESH_CONFIGMAP_NAME,
    MESH_CONFIGMAP_NAMESPACE,
    parse_mesh_config,
)
from gossamer.resources.validation import Finding

_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
MAX_CONFIGMAP_BYTES = 1024 * 1024  # the API server's limit on data + binaryData


def validate_config_map(res: Resource[Any]) -> list[Finding]:
    out: list[Finding] = []
    raw = res.raw
    size = 0
    keys: set[str] = set()
    for section in ("data", "binaryData"):
        values = raw.get(section)
        if values is None:
            continue
        if not isinstance(values, dict):
            out.append(Finding("error", (section,), f"{section} must be a mapping of key to value"))
            continue
        for key, value in values.items():
            path = (section, str(key))
            if not isinstance(key, str) or len(key) > 253 or not _KEY.match(key):
                out.append(
                    Finding("error", path, "invalid key: keys are letters, digits, '-', '_' and '.' (at most 253)")
                )
                continue
            if key in keys:
                out.append(Finding("error", path, f"key {key!r} is in both data and binaryData"))
            keys.add(key)
            if not isinstance(value, str):
                out.append(Finding("error", path, f"{section}.{key} must be a string"))
                continue
            if section == "binaryData":
                try:
                    size += len(base64.b64decode(value, validate=True))
                except (binascii.Error, ValueError):
                    out.append(Finding("error", path, f"binaryData.{key} is not valid base64"))
            else:
                size += len(value.encode())
    if size > MAX_CONFIGMAP_BYTES:
        out.append(Finding("error", ("data",), f"a ConfigMap holds at most {MAX_CONFIGMAP_BYTES} bytes"))
    immutable = raw.get("immutable")
    if immutable is not None and not isinstance(immutable, bool):
        out.append(Finding("error", ("immutable",), "immutable must be true or false"))
    if res.metadata.namespace == MESH_CONFIGMAP_NAMESPACE and res.metadata.name == MESH_CONFIGMAP_NAME:
        out += _mesh_findings(res)
    return out


def _mesh_findings(res: Resource[Any]) -> list[Finding]:
    text = configmap_data(res.raw).get(MESH_CONFIGMAP_KEY)
    if text is None:
        return []
    _, problems = parse_mesh_config(text)
    key_line = res.line_of(("data", MESH_CONFIGMAP_KEY))
    # A block scalar (`mesh: |`) starts on the line after its key: line N of the text is key + N.
    block = "\n" in text.rstrip("\n")
    return [
        Finding(
            "warning" if p.level == "warning" else "error",
            ("data", MESH_CONFIGMAP_KEY, *p.path),
            p.message,
            line=key_line + p.line if block else key_line,
        )
        for p in problems
    ]
