"""Validation cost of large and hostile input: a 1 MB manifest (bookinfo repeated, ~1,800 objects),
an alias bomb and 5,000 unknown keys, through `parse_documents` (what apply and analyze run).

Baseline (same run): parsing the same 1 MB with PyYAML's pure-Python SafeLoader alone (no models, no
validation), as the loader used to read it. Target: the 1 MB manifest validates in well under a second;
the hostile inputs are rejected in well under a second each.

    .venv/bin/python benchmarks/validation.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gossamer.resources.loader import parse_documents  # noqa: E402
from tests.fuzz import mutate  # noqa: E402


def one_megabyte() -> str:
    base = (REPO / "samples" / "bookinfo" / "bookinfo.yaml").read_text()
    docs: list[str] = []
    n = 0
    while sum(map(len, docs)) < 1_000_000:
        docs.append(base.replace("name: ", f"name: c{n}-").replace("app: ", f"app: c{n}-"))
        n += 1
    return "\n---\n".join(docs)


def best_of(n: int, fn: object) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    text = one_megabyte()
    resources, issues = parse_documents(text, "big.yaml")
    assert len(resources) > 1000 and not [i for i in issues if i.level == "error"]
    baseline = best_of(3, lambda: list(yaml.load_all(text, Loader=yaml.SafeLoader)))
    ours = best_of(3, lambda: parse_documents(text, "big.yaml"))
    print(
        f"1 MB manifest ({len(resources)} objects): validated in {ours:.2f} s; "
        f"PyYAML pure-Python parse alone {baseline:.2f} s (ratio {ours / baseline:.2f})"
    )
    for name, hostile in mutate.special_inputs():
        seconds = best_of(3, lambda hostile=hostile, name=name: parse_documents(hostile, name))
        _, found = parse_documents(hostile, name)
        print(f"{name}: rejected in {seconds * 1000:.0f} ms ({len(hostile)} bytes; first error: {str(found[0])[:90]})")


if __name__ == "__main__":
    main()
