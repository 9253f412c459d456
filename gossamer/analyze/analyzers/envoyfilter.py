"""EnvoyFilter analyzers: operations that are ignored for their applyTo (IST0152, IST0153, IST0154) and
relative operations without a priority (IST0151), worse with a proxyVersion match (IST0155)."""

from __future__ import annotations

from collections.abc import Iterator

from gossamer.analyze.context import Context
from gossamer.analyze.messages import Message
from gossamer.analyze.registry import analyzer
from gossamer.resources.networking import EnvoyConfigObjectPatch, EnvoyFilter

_ROUTE_LEVEL = ("ROUTE_CONFIGURATION", "HTTP_ROUTE")
_REPLACEABLE = ("NETWORK_FILTER", "HTTP_FILTER", "VIRTUAL_HOST")


@analyzer(
    "envoyfilter.EnvoyPatchAnalyzer", "Checks an envoyFilters", ("IST0151", "IST0152", "IST0153", "IST0154", "IST0155")
)
def envoy_patches(ctx: Context) -> Iterator[Message]:
    versioned_names: list[str] = []  # filter names patched with a proxyVersion match, so far
    for ef in ctx.of_kind(EnvoyFilter):
        for i, cp in enumerate(ef.spec.config_patches):
            patch = cp.patch
            if patch is None:
                break
            path = ("spec", "configPatches", i, "patch", "value")
            name = _patched_filter_name(cp)
            op, apply_to = patch.operation, cp.apply_to
            ignored, relative = _ignored_or_relative(op, apply_to)
            if ignored is not None:
                yield ctx.message(ignored[0], ef, path, ignored[1])
            if relative and ef.spec.priority == 0:
                if name in versioned_names:
                    yield ctx.message(
                        "IST0155",
                        ef,
                        path,
                        f"relative operation {op} without a priority, on a filter another EnvoyFilter "
                        "patches for a proxyVersion: it may not apply during an upgrade (set "
                        "priority, or use INSERT_FIRST/ADD)",
                    )
                else:
                    yield ctx.message(
                        "IST0151",
                        ef,
                        path,
                        f"relative operation {op} without a priority: it may not apply, depending on "
                        "the order of EnvoyFilters (set priority, or use INSERT_FIRST/ADD)",
                    )
            if cp.match and cp.match.proxy and cp.match.proxy.proxy_version:
                versioned_names.append(name)


def _patched_filter_name(cp: EnvoyConfigObjectPatch) -> str:
    """The name of the filter a patch adds or changes ("" when it names none)."""
    patch = cp.patch
    if patch is None or not patch.value:
        return ""
    if "name" in patch.value:
        return str(patch.value["name"])
    if cp.match and cp.match.listener and cp.match.listener.filter_chain and cp.match.listener.filter_chain.filter:
        return cp.match.listener.filter_chain.filter.name or ""
    return ""


def _ignored_or_relative(op: str, apply_to: str) -> tuple[tuple[str, str] | None, bool]:
    """(the code and text when the operation is ignored for its applyTo, whether it is relative to another filter)."""
    if op == "ADD" and apply_to in _ROUTE_LEVEL:
        return ("IST0153", f"ADD is ignored when applyTo is {apply_to}"), False
    if op == "REMOVE":
        if apply_to in _ROUTE_LEVEL:
            return ("IST0154", f"REMOVE is ignored when applyTo is {apply_to}"), False
        return None, True
    if op == "REPLACE":
        if apply_to not in _REPLACEABLE:
            return (
                "IST0152",
                f"REPLACE only applies to HTTP_FILTER, NETWORK_FILTER and VIRTUAL_HOST, not {apply_to}",
            ), False
        return None, True
    return None, op in ("INSERT_BEFORE", "INSERT_AFTER")
