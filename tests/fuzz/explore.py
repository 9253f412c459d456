"""Generator-driven exploration of bad input: N mutations of the samples and goldens through the
control plane's config path, outcomes counted and crashes grouped by class.

    .venv/bin/python -m tests.fuzz.explore [N] [--seed S] [--rules] [--show-crashes DIR]

Prints one line per outcome with its count, then each crash class with a reproducing seed.
Memory is capped (an alias bomb must fail, not take the machine) and each case has a time limit.
"""

from __future__ import annotations

import argparse
import collections
import random
import resource
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from tests.fuzz import mutate, pipeline

CASE_SECONDS = 10
HANG_SECONDS = 2.0


class _Timeout(BaseException):
    pass


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise _Timeout()


def case_text(seed: int, sources: list[tuple[str, str]]) -> tuple[str, str]:
    rng = random.Random(seed)
    if seed % 500 == 0:
        specials = mutate.special_inputs()
        return specials[(seed // 500) % len(specials)]
    name, text = rng.choice(sources)
    return name, mutate.mutate(rng, text)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rules", action="store_true", help="also check built resources against Envoy's rules")
    parser.add_argument("--show-crashes", type=Path)
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    signal.signal(signal.SIGALRM, _alarm)
    sources = mutate.corpus()
    counts: collections.Counter[str] = collections.Counter()
    classes: dict[str, list[int]] = {}
    problems: dict[str, list[int]] = {}
    started = time.monotonic()
    for seed in range(args.seed, args.seed + args.n):
        name, text = case_text(seed, sources)
        signal.alarm(CASE_SECONDS)
        t0 = time.monotonic()
        try:
            outcome = pipeline.run([(name, text)], envoy_rules=args.rules)
        except _Timeout:
            outcome = pipeline.Outcome("timeout", CASE_SECONDS, "timeout")
        except MemoryError:
            outcome = pipeline.Outcome("memory", time.monotonic() - t0, "MemoryError")
        finally:
            signal.alarm(0)
        elapsed = time.monotonic() - t0
        if outcome.crashed:
            counts[f"crash in {outcome.stage}"] += 1
            classes.setdefault(f"{outcome.stage}: {outcome.error}", []).append(seed)
            if args.show_crashes:
                args.show_crashes.mkdir(parents=True, exist_ok=True)
                (args.show_crashes / f"{seed}.yaml").write_text(text)
        else:
            counts[outcome.stage] += 1
        if outcome.seconds > HANG_SECONDS or elapsed > 3 * HANG_SECONDS:
            counts["slow (validation > 2 s)"] += 1
            classes.setdefault(f"slow: {name}", []).append(seed)
        if outcome.problems:
            key = "envoy-rules" if outcome.stage == "envoy-rules" else "unhelpful message"
            counts[key + " (cases)"] += 0 if key == "envoy-rules" else 1
            for p in outcome.problems[:1]:
                problems.setdefault(f"{key}: {p[:150]}", []).append(seed)
    total = time.monotonic() - started
    print(f"{args.n} mutations in {total:.0f} s (seeds {args.seed}..{args.seed + args.n - 1})")
    for key, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {key:32} {n}")
    print("crash classes:")
    for key, seeds in sorted(classes.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(seeds):5}  {key}  (seed {seeds[0]})")
    print("problems:")
    for key, seeds in sorted(problems.items(), key=lambda kv: -len(kv[1]))[:60]:
        print(f"  {len(seeds):5}  {key}  (seed {seeds[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
