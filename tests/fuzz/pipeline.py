"""The path a manifest takes through the control plane, stage by stage, for fuzzing: validation (as
`gossamer apply` / `analyze` run it), the store's round trip, translation and build for every proxy,
EnvoyFilters, and the Envoy-rules check of what was built.

`run(files)` never raises: it returns an `Outcome` saying how far the config got and, when a stage
raised, which exception (with the innermost frame of our own code, so crashes group by class).
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gossamer.controlplane.config import applied_object, parse_files
from gossamer.resources.apps import Deployment
from gossamer.resources.envoy_checks import missing_files
from gossamer.resources.issues import Issue
from gossamer.resources.loader import resource_from_raw
from gossamer.translate import translate_proxy, translate_proxy_endpoints
from gossamer.xds.build import build_resources
from gossamer.xds.envoyfilter import apply_envoy_filters
from tests.support.offline import proxy_for, snapshot_from_resources

MAX_MESSAGE = 1000  # an error message longer than this echoes the input


@dataclass
class Outcome:
    stage: str  # "rejected", "accepted", or the stage that raised: validate, store, translate, envoy-rules
    seconds: float = 0.0
    error: str = ""  # exception class and where it was raised
    detail: str = ""
    problems: list[str] = field(default_factory=list)  # unhelpful messages, Envoy-rule violations
    built: list[dict[str, dict[str, Any]]] = field(default_factory=list)  # per proxy, when keep_built

    @property
    def crashed(self) -> bool:
        return bool(self.error)


def _where(e: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "/gossamer/" in f.filename]
    last = frames[-1] if frames else traceback.extract_tb(e.__traceback__)[-1]
    return f"{type(e).__name__} at {last.filename.rsplit('/gossamer/', 1)[-1]}:{last.lineno} ({last.name})"


def message_problems(issues: Sequence[Issue]) -> list[str]:
    """Messages a user could not act on: too long (echoing input), a suggestion of the same word,
    no line for an object's field."""
    out = []
    for i in issues:
        text = str(i)
        if len(text) > MAX_MESSAGE:
            out.append(f"long message ({len(text)} chars): {text[:120]}...")
        if "did you mean" in i.message:
            said = i.message.split("did you mean", 1)[1]
            unknown = (
                i.message.split("unknown field", 1)[1].split("(", 1)[0].strip() if "unknown field" in i.message else ""
            )
            if unknown and unknown in said:
                out.append(f"suggests the same word: {text[:200]}")
        if i.level == "error" and i.line == 0 and i.file and i.kind:
            out.append(f"no line: {text[:200]}")
    return out


def run(files: Sequence[tuple[str, str]], *, envoy_rules: bool = False, keep_built: bool = False) -> Outcome:
    start = time.monotonic()
    try:
        resources, errors, _warnings = parse_files(files)
    except Exception as e:  # noqa: BLE001 - that is what is being measured
        return Outcome("validate", time.monotonic() - start, _where(e), repr(e)[:300])
    # as `apply` on this machine: certificate files must be here (controlplane/envoycheck.py)
    errors += [
        Issue("error", r.source_file, r.line_of(path), r.kind, r.name, "", message)
        for r in resources
        for path, message in missing_files(r)
    ]
    seconds = time.monotonic() - start
    if errors:
        return Outcome("rejected", seconds, problems=message_problems(errors))
    try:
        for r in resources:
            stored = applied_object(r)
            resource_from_raw(json.loads(json.dumps(stored.body)), stored.source_file, stored.source_line)
    except Exception as e:  # noqa: BLE001
        return Outcome("store", seconds, _where(e), repr(e)[:300])
    outcome = Outcome("accepted", seconds)
    try:
        snapshot = snapshot_from_resources(resources)
        proxies = [
            proxy_for(snapshot, d.metadata.name, d.metadata.namespace, has_sds=True)
            for d in snapshot.of_kind(Deployment)
        ]
        for proxy in proxies:
            config = translate_proxy(snapshot, proxy)
            built = build_resources(config)
            translate_proxy_endpoints(snapshot, proxy)
            patched = apply_envoy_filters(config.envoy_filters, built)
            if keep_built:
                outcome.built.append(patched.resources)
            if envoy_rules:
                from gossamer.xds.rules import violations

                found = violations(patched.resources)
                if found:
                    outcome.stage = "envoy-rules"
                    outcome.problems = [str(v) for v in found[:5]]
                    return outcome
    except Exception as e:  # noqa: BLE001
        return Outcome("translate", seconds, _where(e), repr(e)[:300])
    return outcome
