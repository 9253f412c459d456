"""Golden translation tests: tests/golden/<case>/in.yaml -> ir.yaml and xds.yaml.

Each case's proxy.yaml names the proxy to translate for (deployment, namespace, and `sds: true`
for a proxy whose agent serves SDS, i.e. with mTLS).
Regenerate with GOLDEN_UPDATE=1 and read the diff.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from gossamer.ir.types import ProxyConfig
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy
from gossamer.translate import translate_proxy
from gossamer.xds.build import build_resources
from gossamer.xds.envoyfilter import apply_envoy_filters
from gossamer.xds.types import SHORT_NAMES
from tests.support.offline import proxy_for, snapshot_from_yaml

CASES = sorted(p for p in Path(__file__).parent.iterdir() if (p / "in.yaml").exists())
UPDATE = os.environ.get("GOLDEN_UPDATE") == "1"


def _dump(data: object) -> str:
    return yaml.safe_dump(data, sort_keys=False, width=120)


def _ir_plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _ir_plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name)}
    if isinstance(value, tuple | list):
        return [_ir_plain(v) for v in value]
    return value


def load_case(case: Path) -> tuple[MeshSnapshot, Proxy]:
    snapshot = snapshot_from_yaml((case / "in.yaml").read_text(), "in.yaml")
    spec = yaml.safe_load((case / "proxy.yaml").read_text())
    # sds: true — the proxy's agent serves certificates over SDS, so mTLS is on (auto mTLS,
    # PeerAuthentication); without it the proxy is plaintext-only.
    proxy = proxy_for(snapshot, spec["deployment"], spec.get("namespace", "default"),
                      has_sds=bool(spec.get("sds", False)))
    return snapshot, proxy


def translate_case(case: Path) -> ProxyConfig:
    return translate_proxy(*load_case(case))


def build_case(case: Path) -> dict[str, dict[str, Message]]:
    """The case's xDS resources: type_url -> name -> proto, EnvoyFilters applied (the pipeline's last
    step); a case's EnvoyFilters must all apply cleanly."""
    snapshot, proxy = load_case(case)
    config = translate_proxy(snapshot, proxy)
    patched = apply_envoy_filters(config.envoy_filters, build_resources(config))
    assert not patched.errors, patched.errors
    return patched.resources


_MAPS = ("policies", "providers", "jsonFormat")


def _sort_struct(value: object) -> object:
    if isinstance(value, dict):
        return {k: _sort_struct(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_sort_struct(v) for v in value]
    return value


def _sort_maps(value: object) -> object:
    """Protobuf map fields have no order: RBAC `policies`, jwt_authn `providers` and access log
    `jsonFormat` (a Struct) are dumped sorted by name."""
    if isinstance(value, dict):
        if str(value.get("@type", "")).endswith(".TypedStruct") and isinstance(value.get("value"), dict):
            # a TypedStruct's value is a google.protobuf.Struct: a map, dumped sorted
            return {**value, "value": _sort_struct(value["value"])}
        if isinstance(value.get("filterMetadata"), dict):
            # metadata values are google.protobuf.Structs: maps, dumped sorted
            value = {**value, "filterMetadata": _sort_struct(value["filterMetadata"])}
        return {k: (_sort_maps(dict(sorted(v.items()))) if k in _MAPS and isinstance(v, dict) else _sort_maps(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_sort_maps(v) for v in value]
    return value


def render(case: Path) -> tuple[str, str]:
    config = translate_case(case)
    resources = build_case(case)
    xds = {SHORT_NAMES[t]: [_sort_maps(json.loads(json_format.MessageToJson(m))) for _, m in sorted(items.items())]
           for t, items in resources.items()}
    return _dump(_ir_plain(config)), _dump(xds)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Path) -> None:
    ir_text, xds_text = render(case)
    if UPDATE:
        (case / "ir.yaml").write_text(ir_text)
        (case / "xds.yaml").write_text(xds_text)
    assert (case / "ir.yaml").exists(), f"run GOLDEN_UPDATE=1 to create {case.name}/ir.yaml"
    assert ir_text == (case / "ir.yaml").read_text(), f"{case.name}: IR differs (GOLDEN_UPDATE=1 to accept)"
    assert xds_text == (case / "xds.yaml").read_text(), f"{case.name}: xDS differs (GOLDEN_UPDATE=1 to accept)"
