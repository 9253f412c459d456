"""Sidecar analyzers: a workloadSelector that selects no pod (IST0101), pods several Sidecars select
(IST0110), namespaces with several Sidecars without selector (IST0111), Sidecars of ambient workloads
(IST0167)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gossamer.analyze.context import Context, selector_string, to_fqdn
from gossamer.analyze.messages import Message
from gossamer.analyze.registry import analyzer
from gossamer.mesh import hosts_intersect
from gossamer.resources.base import Resource
from gossamer.resources.networking import ServiceEntry, Sidecar


def pod_in_ambient(pod: Resource[Any] | None) -> bool:
    return pod is not None and pod.metadata.annotations.get("ambient.istio.io/redirection") == "enabled"


def namespace_in_ambient(ns: Resource[Any] | None) -> bool:
    if ns is None:
        return False
    labels = ns.metadata.labels
    if labels.get("istio-injection") == "enabled" or labels.get("istio.io/rev"):
        return False
    return labels.get("istio.io/dataplane-mode") == "ambient"


@analyzer(
    "sidecar.SelectorAnalyzer",
    "Validates that sidecars that define a workload selector match at least one pod, and that there "
    "aren't multiple sidecar resources that select overlapping pods",
    ("IST0101", "IST0110", "IST0111", "IST0167"),
)
def selectors(ctx: Context) -> Iterator[Message]:
    by_pod: dict[tuple[str, str], list[Resource[Any]]] = {}
    pods: dict[tuple[str, str], Resource[Any]] = {}
    unselected: dict[str, list[Resource[Any]]] = {}
    yield from _selecting(ctx, by_pod, pods, unselected)
    ineffective: set[tuple[str, str]] = set()
    yield from _overlapping(ctx, by_pod, pods, ineffective)
    yield from _namespace_wide(ctx, unselected, ineffective)


def _selecting(
    ctx: Context,
    by_pod: dict[tuple[str, str], list[Resource[Any]]],
    pods: dict[tuple[str, str], Resource[Any]],
    unselected: dict[str, list[Resource[Any]]],
) -> Iterator[Message]:
    """Sidecars whose selector picks no pod (IST0101); fills BY_POD, PODS and UNSELECTED (no selector)."""
    for sc in ctx.of_kind(Sidecar):
        labels = sc.spec.workload_selector.labels if sc.spec.workload_selector else {}
        if not labels:
            unselected.setdefault(sc.namespace, []).append(sc)
            continue
        selected = ctx.pods_matching(labels, sc.namespace)
        for pod in selected:
            by_pod.setdefault((pod.namespace, pod.name), []).append(sc)
            pods[(pod.namespace, pod.name)] = pod
        if not selected:
            first = sorted(labels)[0]
            yield ctx.message(
                "IST0101",
                sc,
                ("spec", "workloadSelector", "labels", first),
                f"referenced selector not found: {selector_string(labels)!r} selects no pod in {sc.namespace}",
            )


def _overlapping(
    ctx: Context,
    by_pod: dict[tuple[str, str], list[Resource[Any]]],
    pods: dict[tuple[str, str], Resource[Any]],
    ineffective: set[tuple[str, str]],
) -> Iterator[Message]:
    """Sidecars selecting the same pod (IST0110), or a pod in ambient mode (IST0167)."""
    for key, sidecars in by_pod.items():
        pod = pods[key]
        if len(sidecars) == 1 and not pod_in_ambient(pod):
            continue
        names = sorted(s.name for s in sidecars)
        for sc in sidecars:
            if pod_in_ambient(pod):
                if (sc.namespace, sc.name) not in ineffective:
                    ineffective.add((sc.namespace, sc.name))
                    yield ctx.message(
                        "IST0167",
                        sc,
                        ("metadata", "name"),
                        f"pod {pod.name} is in ambient mode (no sidecar): this Sidecar has no effect",
                    )
                continue
            yield ctx.message(
                "IST0110",
                sc,
                ("metadata", "name"),
                f"the Sidecars {names} in {key[0]} all select pod {key[1]}: which one applies is undefined",
            )


def _namespace_wide(
    ctx: Context, unselected: dict[str, list[Resource[Any]]], ineffective: set[tuple[str, str]]
) -> Iterator[Message]:
    """Sidecars without a selector: in an ambient namespace (IST0167), or more than one (IST0111)."""
    for ns, sidecars in unselected.items():
        if namespace_in_ambient(ctx.find("Namespace", "", ns)):
            for sc in sidecars:
                if (sc.namespace, sc.name) not in ineffective:
                    ineffective.add((sc.namespace, sc.name))
                    yield ctx.message(
                        "IST0167",
                        sc,
                        ("metadata", "name"),
                        f"namespace {ns} is in ambient mode (no sidecars): this Sidecar has no effect",
                    )
            continue
        if len(sidecars) > 1:
            names = sorted(s.name for s in sidecars)
            for sc in sidecars:
                yield ctx.message(
                    "IST0111",
                    sc,
                    ("metadata", "name"),
                    f"the Sidecars {names} in {ns} have no workloadSelector: which one applies is undefined",
                )


def _egress_host_known(ctx: Context, namespace: str, host: str) -> bool:
    """A service of `namespace` ("*": any) is called `host` (short names are of that namespace)."""
    for r in [*ctx.of("Service"), *ctx.of_kind(ServiceEntry)]:
        if namespace != "*" and r.namespace != namespace:
            continue
        wanted = to_fqdn(r.namespace, host)
        names = (
            [to_fqdn(r.namespace, r.name)] if r.kind == "Service" else [to_fqdn(r.namespace, h) for h in r.spec.hosts]
        )
        if any(hosts_intersect(n, wanted) for n in names):
            return True
    return False


@analyzer(
    "sidecar.EgressHostAnalyzer",
    "Checks that the hosts a Sidecar's egress listeners name exist (Gossamer's; not in istioctl)",
    ("IST0101",),
)
def egress_hosts(ctx: Context) -> Iterator[Message]:
    for sc in ctx.of_kind(Sidecar):
        for i, listener in enumerate(sc.spec.egress or []):
            for j, entry in enumerate(listener.hosts):
                ns, sep, host = entry.partition("/")
                if not sep or "*" in host or ns == "~":
                    continue
                namespace = sc.namespace if ns == "." else ns
                if not _egress_host_known(ctx, namespace, host):
                    yield ctx.message(
                        "IST0101",
                        sc,
                        ("spec", "egress", i, "hosts", j),
                        f"referenced egress host not found: {entry!r} (no such service in "
                        f"{'any namespace' if namespace == '*' else namespace})",
                    )
