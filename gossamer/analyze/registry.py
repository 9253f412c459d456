"""The analyzers, as Istio has them: each a named pure function from the analysis context to the
messages it finds. A module per family registers its analyzers with `@analyzer`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gossamer.analyze.context import Context
from gossamer.analyze.messages import Message

AnalyzerFunc = Callable[[Context], Iterable[Message]]


@dataclass(frozen=True)
class Analyzer:
    name: str  # Istio's analyzer name, e.g. "virtualservice.DestinationHostAnalyzer"
    description: str
    codes: tuple[str, ...]
    run: AnalyzerFunc
    default: bool = True  # run by `gossamer analyze` unless analyzers are named (as istioctl's All())


ANALYZERS: list[Analyzer] = []


def analyzer(
    name: str, description: str, codes: Iterable[str], *, default: bool = True
) -> Callable[[AnalyzerFunc], AnalyzerFunc]:
    def register(func: AnalyzerFunc) -> AnalyzerFunc:
        ANALYZERS.append(Analyzer(name, description, tuple(codes), func, default))
        return func

    return register
