"""ServiceEntry analyzers: TCP ports without addresses (IST0134), one host and port with different
protocols (IST0177)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gossamer.analyze.context import EXPORT_ALL, EXPORT_LOCAL, Context
from gossamer.analyze.messages import Message
from gossamer.analyze.registry import analyzer
from gossamer.resources.base import Resource
from gossamer.resources.networking import ServiceEntry


def _addresses_auto_allocated(ctx: Context) -> bool:
    meta = ctx.mesh.default_config.get("proxyMetadata") or {}
    if not isinstance(meta, dict) or meta.get("ISTIO_META_DNS_CAPTURE") != "true":
        return False
    return meta.get("ISTIO_META_DNS_AUTO_ALLOCATE") == "true" or meta.get("PILOT_ENABLE_IP_AUTOALLOCATE") == "true"


def _status_addresses(se: Resource[Any]) -> bool:
    status = se.raw.get("status")
    return isinstance(status, dict) and bool(status.get("addresses"))


@analyzer("serviceentry.Analyzer", "Checks the validity of ServiceEntry", ("IST0134",))
def protocol_addresses(ctx: Context) -> Iterator[Message]:
    if _addresses_auto_allocated(ctx):
        return
    for se in ctx.of_kind(ServiceEntry):
        if se.spec.addresses is not None or _status_addresses(se):
            continue
        for i, port in enumerate(se.spec.ports):
            if not port.protocol or port.protocol.upper() == "TCP":
                yield ctx.message(
                    "IST0134",
                    se,
                    ("spec", "ports", i, "name"),
                    f"port {port.number} ({port.protocol or 'protocol unset'}) needs addresses: "
                    "without them (or DNS auto-allocation in the mesh config) TCP traffic cannot "
                    "be told apart",
                )


def _scopes(se: Resource[Any]) -> set[str]:
    export_to = se.spec.export_to
    if not export_to or EXPORT_ALL in export_to:
        return {EXPORT_ALL}
    return {se.namespace if e == EXPORT_LOCAL else e for e in export_to}


@analyzer(
    "serviceentry.ConflictingServiceEntryProtocolAnalyzer",
    "Checks for ServiceEntries that define the same host and port with different protocols",
    ("IST0177",),
)
def conflicting_protocols(ctx: Context) -> Iterator[Message]:
    index: dict[tuple[str, str, int], list[tuple[str, ServiceEntry]]] = {}
    for se in ctx.of_kind(ServiceEntry):
        for scope in sorted(_scopes(se)):
            for h in se.spec.hosts:
                for p in se.spec.ports:
                    index.setdefault((scope, h, p.number), []).append(((p.protocol or "").upper(), se))
    reported: set[tuple[str, str]] = set()
    for (scope, host, port), entries in index.items():
        if scope != EXPORT_ALL:
            entries = entries + index.get((EXPORT_ALL, host, port), [])
        protocols = sorted({proto for proto, _ in entries})
        if len(protocols) < 2:
            continue
        names = sorted({f"{se.namespace}/{se.name}" for _, se in entries})
        for _, se in entries:
            if (se.namespace, se.name) in reported:
                continue
            reported.add((se.namespace, se.name))
            yield ctx.message(
                "IST0177",
                se,
                ("metadata", "name"),
                f"the ServiceEntries {', '.join(names)} define host {host!r} port {port} with "
                f"different protocols ({', '.join(p or 'unset' for p in protocols)})",
            )
