"""Property-based fuzzing of the config path (issue 11): manifests from the samples and golden cases,
mutated (text, structure, field edges: `mutate.py`), go through validation as `gossamer apply` runs it,
the store's round trip, translation and build for every proxy, and the Envoy-rules check.

Properties, for every mutated manifest:
* no exception escapes validation (bad input is an error with file:line, never a traceback);
* an accepted config translates and builds for every proxy;
* everything built passes Envoy's own rules (what Envoy would NACK was rejected at apply).

Bounded to about a minute (GOSSAMER_FUZZ_EXAMPLES, default 2000); derandomized so CI is repeatable
(`python -m tests.fuzz.explore N --rules --seed S` explores further).
"""

from __future__ import annotations

import os
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import mutate, pipeline

CORPUS = mutate.corpus()
EXAMPLES = int(os.environ.get("GOSSAMER_FUZZ_EXAMPLES", "2000"))


@st.composite
def mutated_manifests(draw: st.DrawFn) -> tuple[str, str]:
    name, text = draw(st.sampled_from(CORPUS))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    return name, mutate.mutate(random.Random(seed), text)


def test_the_corpus_is_the_samples_and_goldens() -> None:
    names = {name for name, _ in CORPUS}
    assert any(n.startswith("samples/") for n in names) and any(n.startswith("tests/golden/") for n in names)
    assert all(pipeline.run([c]).stage == "accepted" for c in CORPUS[:5])


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated_manifests())
def test_no_input_breaks_the_config_path(manifest: tuple[str, str]) -> None:
    outcome = pipeline.run([manifest], envoy_rules=True)
    shown = manifest[1][:3000]
    assert not outcome.crashed, f"{outcome.stage} raised {outcome.error}: {outcome.detail}\n--- input:\n{shown}"
    assert outcome.stage in ("accepted", "rejected"), (
        f"accepted, but Envoy would reject what was built: {outcome.problems}\n--- input:\n{shown}"
    )


@settings(max_examples=len(mutate.special_inputs()), deadline=None, database=None)
@given(st.sampled_from(mutate.special_inputs()))
def test_hostile_inputs_are_rejected(manifest: tuple[str, str]) -> None:
    """Alias bombs, deep nesting, self-referencing aliases, thousands of unknown keys."""
    outcome = pipeline.run([manifest])
    assert outcome.stage == "rejected", (outcome.stage, outcome.error, outcome.detail)
