"""One case per analysis code: tests/analyze/<CODE>[-what]/in.yaml -> expected.txt, the messages
`gossamer analyze -A` prints for it (every analyzer runs, so a case also shows what else istioctl
would say). Objects whose name contains "good" are the negative half: the case's code must not be
reported for them, and every case has one; a case named CODE-quiet-... expects no CODE at all. An
optional mesh.yaml is the --meshConfigFile.
Regenerate with GOLDEN_UPDATE=1 and read the diff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gossamer.analyze.run import all_analyzers
from gossamer.analyze.session import analyze

HERE = Path(__file__).parent
CASES = sorted(p for p in HERE.iterdir() if (p / "in.yaml").exists())
UPDATE = os.environ.get("GOLDEN_UPDATE") == "1"


def run_case(case: Path) -> list[str]:
    files = [("in.yaml", (case / "in.yaml").read_text())]
    mesh = case / "mesh.yaml"
    code = case.name.split("-")[0]
    # istioctl's set, plus the analyzer of this case's code when istioctl runs it only on request (IST0136)
    analyzers = [a.name for a in all_analyzers() if a.default or code in a.codes]
    result = analyze(
        files,
        all_namespaces=True,
        analyzers=analyzers,
        mesh_config=("mesh.yaml", mesh.read_text()) if mesh.exists() else None,
    )
    return [str(m) for m in result.messages]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Path) -> None:
    got = run_case(case)
    expected_file = case / "expected.txt"
    if UPDATE:
        expected_file.write_text("".join(f"{line}\n" for line in got))
    assert got == expected_file.read_text().splitlines()
    code = case.name.split("-")[0]
    positives = [line for line in got if f"[{code}]" in line]
    if "-quiet" in case.name:  # a case showing what keeps the code away
        assert not positives, positives
        return
    assert positives, f"{case.name}: no {code} message (the positive half)"
    assert "good" in (case / "in.yaml").read_text(), f"{case.name}: no negative object (name with 'good')"
    for line in positives:
        resource = line.split(f"[{code}] (", 1)[1].split(")", 1)[0]
        assert "good" not in resource.split(" ", 1)[1], f"{code} reported for a negative object: {line}"


def test_every_code_of_the_analyzers_has_a_case() -> None:
    codes = {code for a in all_analyzers() for code in a.codes}
    covered = {c.name.split("-")[0] for c in CASES}
    assert codes - covered == set()
