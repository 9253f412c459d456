"""Policy analyzers: AuthorizationPolicies whose workloads do not exist (IST0127) or whose source
namespaces do not exist (IST0101); Telemetry selectors without pods (IST0101), pods several Telemetries
select (IST0159), namespaces with several selector-less Telemetries (IST0160), access logging without
providers and tracing providers that cannot be used (IST0157); policies with a selector on a Kubernetes
Gateway's pods (IST0166); JWT claim routes through gateways without a RequestAuthentication (IST0149)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gossamer.analyze.analyzers.deployment import in_mesh
from gossamer.analyze.analyzers.sidecar import pod_in_ambient
from gossamer.analyze.context import Context, selector_matches, selector_string
from gossamer.analyze.messages import Message
from gossamer.analyze.registry import analyzer
from gossamer.mesh import ROOT_NAMESPACE
from gossamer.resources.base import Resource
from gossamer.resources.networking import VirtualService, VirtualServiceSpec
from gossamer.resources.security import AuthorizationPolicy, RequestAuthentication
from gossamer.resources.telemetry import Telemetry


def _namespace_match(ns: str, pattern: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return ns.endswith(pattern[1:])
    if pattern.endswith("*"):
        return ns.startswith(pattern[:-1])
    return ns.lower() == pattern.lower()


@analyzer("auth.AuthorizationPoliciesAnalyzer", "Checks the validity of authorization policies", ("IST0101", "IST0127"))
def authorization_policies(ctx: Context) -> Iterator[Message]:
    meshed: dict[str, list[dict[str, str]]] = {}
    for pod in ctx.pods:
        labels = meshed.setdefault(pod.namespace, [])
        if in_mesh(ctx, pod) or pod_in_ambient(pod):
            labels.append(dict(pod.metadata.labels))
    namespaces = [ns.name for ns in ctx.of("Namespace")]
    for ap in ctx.of_kind(AuthorizationPolicy):
        selector = ap.spec.selector.match_labels if ap.spec.selector is not None else None
        if ap.namespace == ctx.mesh.root_namespace:
            if selector is not None and not any(
                selector_matches(selector, labels) for pods in meshed.values() for labels in pods
            ):
                yield ctx.message(
                    "IST0127",
                    ap,
                    ("spec", "selector"),
                    f"no workload in the mesh matches selector {selector_string(selector)!r}",
                )
        elif selector is None:
            if not meshed.get(ap.namespace):
                yield ctx.message(
                    "IST0127",
                    ap,
                    ("metadata", "namespace"),
                    f"no workload of the mesh runs in namespace {ap.namespace}",
                )
        elif not any(selector_matches(selector, labels) for labels in meshed.get(ap.namespace, [])):
            yield ctx.message(
                "IST0127",
                ap,
                ("spec", "selector"),
                f"no workload of the mesh in {ap.namespace} matches selector {selector_string(selector)!r}",
            )
        for i, rule in enumerate(ap.spec.rules or []):
            for j, source in enumerate(rule.from_ or []):
                for field in ("namespaces", "notNamespaces"):
                    values = getattr(source.source, "namespaces" if field == "namespaces" else "not_namespaces")
                    for k, ns in enumerate(values or []):
                        if not any(_namespace_match(n, ns) for n in namespaces):
                            yield ctx.message(
                                "IST0101",
                                ap,
                                ("spec", "rules", i, "from", j, "source", field, k),
                                f"referenced namespace not found: {ns!r}",
                            )


@analyzer(
    "telemetry.SelectorAnalyzer",
    "Validates that telemetries that define a selector match at least one pod, and that there aren't "
    "multiple telemetry resources that select overlapping pods",
    ("IST0101", "IST0159"),
)
def telemetry_selectors(ctx: Context) -> Iterator[Message]:
    by_pod: dict[tuple[str, str], list[Telemetry]] = {}
    for t in ctx.of_kind(Telemetry):
        labels = t.spec.selector.match_labels if t.spec.selector is not None else {}
        if not labels:
            continue
        selected = ctx.pods_matching(labels, t.namespace)
        for pod in selected:
            by_pod.setdefault((pod.namespace, pod.name), []).append(t)
        if not selected:
            yield ctx.message(
                "IST0101",
                t,
                ("spec", "selector", "matchLabels", sorted(labels)[0]),
                f"referenced selector not found: {selector_string(labels)!r} selects no pod in {t.namespace}",
            )
    for (ns, pod_name), telemetries in by_pod.items():
        if len(telemetries) > 1:
            names = sorted(t.name for t in telemetries)
            for t in telemetries:
                yield ctx.message(
                    "IST0159",
                    t,
                    ("metadata", "name"),
                    f"the Telemetries {names} in {ns} all select pod {pod_name}: which one applies is undefined",
                )


@analyzer(
    "telemetry.DefaultSelectorAnalyzer",
    "Validates that there aren't multiple telemetry resources that have no selector",
    ("IST0160",),
)
def telemetry_default_selectors(ctx: Context) -> Iterator[Message]:
    by_ns: dict[str, list[Telemetry]] = {}
    for t in ctx.of_kind(Telemetry):
        if t.spec.selector is None:
            by_ns.setdefault(t.namespace, []).append(t)
    for ns, telemetries in by_ns.items():
        if len(telemetries) > 1:
            names = sorted(t.name for t in telemetries)
            for t in telemetries:
                yield ctx.message(
                    "IST0160",
                    t,
                    ("metadata", "name"),
                    f"the Telemetries {names} in {ns} have no selector: which one applies is undefined",
                )


@analyzer("telemetry.ProviderAnalyzer", "Validates that providers in telemetry resource is valid", ("IST0157",))
def telemetry_providers(ctx: Context) -> Iterator[Message]:
    yield from _unusable_tracing_providers(ctx)
    if ctx.mesh.default_providers.get("accessLogging"):
        return
    for t in ctx.of_kind(Telemetry):
        for i, logging in enumerate(t.spec.access_logging or []):
            if not isinstance(logging, dict) or logging.get("disabled") is True:
                continue
            if not logging.get("providers"):
                yield ctx.message(
                    "IST0157",
                    t,
                    ("spec", "accessLogging", i),
                    "access logging without providers, and the mesh config names no default "
                    "access log provider: it is ignored",
                )


# Provider kinds Gossamer sends spans with (translate/telemetry.py `tracing_provider`).
TRACING_KINDS = ("zipkin", "opentelemetry")


def _unusable_tracing_providers(ctx: Context) -> Iterator[Message]:
    """Telemetry `tracing[].providers[]` names that tracing cannot use: no such `extensionProviders` entry,
    a kind Gossamer does not send spans with, or a service and port no Service or ServiceEntry has (Envoy
    would reject a tracer whose cluster does not exist). Translation skips such a provider: the next
    usable one named, else the built-in collector, gets the spans."""
    providers = {str(p.get("name")): p for p in ctx.mesh.extension_providers if p.get("name")}
    for t in ctx.of_kind(Telemetry):
        for i, entry in enumerate(t.spec.tracing or []):
            if not isinstance(entry, dict):
                continue
            for j, named in enumerate(entry.get("providers") or []):
                name = str(named.get("name") or "") if isinstance(named, dict) else ""
                if not name:
                    continue
                problem = _tracing_provider_problem(ctx, providers.get(name))
                if problem:
                    yield ctx.message(
                        "IST0157",
                        t,
                        ("spec", "tracing", i, "providers", j, "name"),
                        f"tracing provider {name!r} {problem}: it is not used (spans go to the next usable "
                        "provider named, else the built-in collector)",
                    )


def _tracing_provider_problem(ctx: Context, provider: dict[str, Any] | None) -> str:
    if provider is None:
        return "is not in the mesh config's extensionProviders"
    kind = next((k for k in provider if k != "name"), "")
    if kind not in TRACING_KINDS:
        return f"is of kind {kind!r}; Gossamer sends spans to zipkin and opentelemetry providers only"
    value = provider.get(kind)
    settings: dict[str, Any] = value if isinstance(value, dict) else {}
    service, port = str(settings.get("service") or ""), settings.get("port")
    if not service or not isinstance(port, int) or not 0 < port < 65536:
        return "needs a service and a port"
    host = service.split("/", 1)[1] if "/" in service else service
    views = [view for (_, fqdn), view in ctx.service_hosts.items() if fqdn == host]
    if not any(p.number == port for view in views for p in view.ports):
        return f"sends spans to {host}:{port}, which no Service or ServiceEntry has"
    return ""


def jwt_claim_key(vs: Resource[Any]) -> str:
    spec: VirtualServiceSpec = vs.spec
    for rule in spec.http:
        for match in rule.match or []:
            for key in [*(match.headers or {}), *(match.without_headers or {})]:
                rest = key[len("@request.auth.claims") :] if key.lower().startswith("@request.auth.claims") else None
                if rest is None:
                    continue
                if (rest.startswith(".") and len(rest) > 1) or (
                    rest.startswith("[") and rest.endswith("]") and len(rest) > 2
                ):
                    return key
    return ""


@analyzer(
    "virtualservice.JWTClaimRouteAnalyzer",
    "Checks the VirtualService using JWT claim based routing has corresponding RequestAuthentication",
    ("IST0149",),
)
def jwt_claim_routes(ctx: Context) -> Iterator[Message]:
    selectors: dict[str, list[dict[str, str]]] = {}
    for ra in ctx.of_kind(RequestAuthentication):
        selectors.setdefault(ra.namespace, []).append(ra.spec.selector.match_labels if ra.spec.selector else {})
    for vs in ctx.of_kind(VirtualService):
        key = jwt_claim_key(vs)
        if not key:
            continue
        for ref in vs.spec.gateways:
            if ref == "mesh":
                continue
            ns, sep, name = ref.partition("/")
            ns, name = (ns, name) if sep else (vs.namespace, ref)
            gw = ctx.find("Gateway", ns, name)
            if gw is None:
                continue
            for pod in ctx.pods_matching(gw.spec.selector):
                candidates = selectors.get(ROOT_NAMESPACE, []) + selectors.get(pod.namespace, [])
                if not any(selector_matches(s, pod.metadata.labels) for s in candidates):
                    yield ctx.message(
                        "IST0149",
                        vs,
                        ("metadata", "name"),
                        f"routes on JWT claim {key!r} but no RequestAuthentication applies to pod "
                        f"{pod.name} of gateway {ns}/{name}: the claims are never available",
                    )
