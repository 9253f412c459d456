"""Deprecations (IST0002): VirtualService fault `delay.percent`, Sidecar `outboundTrafficPolicy.egressProxy`,
CRDs of removed Istio kinds (rbac.istio.io), Telemetry tracing to a Lightstep provider."""

from __future__ import annotations

from collections.abc import Iterator

from gossamer.analyze.context import Context, as_dict
from gossamer.analyze.messages import Message
from gossamer.analyze.registry import analyzer
from gossamer.resources.networking import Sidecar, VirtualService
from gossamer.resources.telemetry import Telemetry

REMOVED_KINDS = {("rbac.istio.io", k) for k in ("ClusterRbacConfig", "RbacConfig", "ServiceRole", "ServiceRoleBinding")}


@analyzer("deprecation.DeprecationAnalyzer", "Checks for deprecated Istio types and fields", ("IST0002",))
def deprecated_fields(ctx: Context) -> Iterator[Message]:
    for vs in ctx.of_kind(VirtualService):
        for i, rule in enumerate(vs.spec.http):
            delay = rule.fault.delay if rule.fault else None
            if delay is not None and (delay.percent or 0) > 0:
                yield ctx.message(
                    "IST0002",
                    vs,
                    ("spec", "http", i, "fault", "delay", "percent"),
                    "HTTPRoute.fault.delay.percent is deprecated: use percentage",
                )
    for sc in ctx.of_kind(Sidecar):
        policy = sc.spec.outbound_traffic_policy
        if policy is not None and policy.egress_proxy is not None:
            yield ctx.message(
                "IST0002",
                sc,
                ("spec", "outboundTrafficPolicy", "egressProxy"),
                "OutboundTrafficPolicy.egressProxy is deprecated and ignored",
            )
    for crd in ctx.of("CustomResourceDefinition"):
        spec = as_dict(crd.raw.get("spec"))
        names = as_dict(spec.get("names"))
        if (spec.get("group"), names.get("kind")) in REMOVED_KINDS:
            yield ctx.message(
                "IST0002",
                crd,
                ("spec", "group"),
                f"custom resource type {spec.get('group')} {names.get('kind')} was removed from Istio",
            )


@analyzer("telemetry.LightstepAnalyzer", "Validates that lightstep provider is still used", ("IST0002",))
def lightstep(ctx: Context) -> Iterator[Message]:
    providers = {p.get("name") for p in ctx.mesh.extension_providers if "lightstep" in p}
    if not providers:
        return
    for t in ctx.of_kind(Telemetry):
        for i, tracing in enumerate(t.spec.tracing or []):
            for j, provider in enumerate(tracing.get("providers") or [] if isinstance(tracing, dict) else []):
                name = provider.get("name") if isinstance(provider, dict) else None
                if name in providers:
                    yield ctx.message(
                        "IST0002",
                        t,
                        ("spec", "tracing", i, "providers", j, "name"),
                        f"the Lightstep provider {name} is deprecated: use an OpenTelemetry provider",
                    )
