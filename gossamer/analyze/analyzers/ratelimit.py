"""Rate limiting and pod references (not in Istio's analyzers; reported as IST0101
ReferencedResourceNotFound, as the references they are):

* an EnvoyFilter whose `envoy.filters.http.ratelimit` (or the network rate limit filter) sends its
  checks to a `rate_limit_service` cluster that will not exist: `outbound|PORT|SUBSET|HOST` for a
  service or port that is not there, or another name no EnvoyFilter ADDs as a CLUSTER. Envoy accepts
  such a filter and then fails every check: with `failure_mode_deny` every request is refused.
* a Deployment whose pods use a ConfigMap or Secret (volumes, env, envFrom), or a key of one, that does
  not exist and is not `optional`: its containers do not start until it does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gossamer.analyze.context import Context
from gossamer.analyze.messages import Message
from gossamer.analyze.registry import analyzer
from gossamer.mesh import parse_cluster_name
from gossamer.resources.apps import Deployment
from gossamer.resources.core import configmap_binary_data, configmap_data, secret_data
from gossamer.resources.networking import DestinationRule, EnvoyFilter
from gossamer.resources.volumes import reference_problem, references

_SERVICE_KEYS = (
    ("rate_limit_service", "rateLimitService"),
    ("grpc_service", "grpcService"),
    ("envoy_grpc", "envoyGrpc"),
    ("cluster_name", "clusterName"),
)


def _get(value: Any, names: tuple[str, str]) -> Any:
    if not isinstance(value, dict):
        return None
    return value.get(names[0], value.get(names[1]))


def _service_clusters(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[str, tuple[str | int, ...]]]:
    """(cluster name, field path) of every rate_limit_service.grpc_service.envoy_grpc.cluster_name in a
    patch value, at any depth (typed_config, TypedStruct value, ...)."""
    if isinstance(value, dict):
        node: Any = value
        where = path
        for names in _SERVICE_KEYS:
            key = names[0] if isinstance(node, dict) and names[0] in node else names[1]
            node = _get(node, names)
            where = (*where, key)
            if node is None:
                break
        else:
            if isinstance(node, str):
                yield node, where
        for k, v in value.items():
            yield from _service_clusters(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _service_clusters(v, (*path, i))


def _added_clusters(ctx: Context) -> set[str]:
    out = set()
    for ef in ctx.of_kind(EnvoyFilter):
        for cp in ef.spec.config_patches:
            value = cp.patch.value if cp.patch else None
            if cp.apply_to == "CLUSTER" and cp.patch and cp.patch.operation == "ADD" and isinstance(value, dict):
                name = value.get("name")
                if isinstance(name, str):
                    out.add(name)
    return out


def _subsets(ctx: Context, host: str) -> set[str]:
    out: set[str] = set()
    for dr in ctx.of_kind(DestinationRule):
        from gossamer.analyze.context import to_fqdn

        if to_fqdn(dr.namespace, dr.spec.host) == host:
            out.update(s.name for s in dr.spec.subsets or [])
    return out


@analyzer(
    "envoyfilter.RateLimitServiceAnalyzer",
    "Checks that a rate limit EnvoyFilter's rate_limit_service cluster exists",
    ("IST0101",),
)
def rate_limit_service(ctx: Context) -> Iterator[Message]:
    added = None
    for ef in ctx.of_kind(EnvoyFilter):
        for i, cp in enumerate(ef.spec.config_patches):
            if cp.patch is None or cp.patch.value is None:
                continue
            for cluster, path in _service_clusters(cp.patch.value, ("spec", "configPatches", i, "patch", "value")):
                parsed = parse_cluster_name(cluster)
                if parsed is not None and parsed.direction == "outbound":
                    port, subset, host = parsed.port, parsed.subset, parsed.host  # port 0: not a number
                    view = ctx.destination_service(ef.namespace, None, host)
                    if view is None:
                        yield ctx.message(
                            "IST0101",
                            ef,
                            path,
                            f"rate limit service cluster {cluster!r}: service "
                            f"{host!r} not found: every rate limit check fails",
                        )
                    elif all(p.number != port for p in view.ports):
                        yield ctx.message(
                            "IST0101",
                            ef,
                            path,
                            f"rate limit service cluster {cluster!r}: service "
                            f"{host!r} has no port {port}: every rate limit check fails",
                        )
                    elif subset and subset not in _subsets(ctx, host):
                        yield ctx.message(
                            "IST0101",
                            ef,
                            path,
                            f"rate limit service cluster {cluster!r}: no "
                            f"DestinationRule defines subset {subset!r} of {host!r}",
                        )
                    continue
                if added is None:
                    added = _added_clusters(ctx)
                if cluster not in added:
                    yield ctx.message(
                        "IST0101",
                        ef,
                        path,
                        f"rate limit service cluster {cluster!r} not found: it is "
                        "neither a service's outbound|PORT||HOST cluster nor ADDed by an EnvoyFilter",
                    )


@analyzer("deployment.ConfigReferenceAnalyzer", "Checks that the ConfigMaps and Secrets a pod uses exist", ("IST0101",))
def config_references(ctx: Context) -> Iterator[Message]:
    keys: dict[tuple[str, str, str], set[str]] = {}
    for cm in ctx.of("ConfigMap"):
        keys[("ConfigMap", cm.namespace, cm.name)] = set(configmap_data(cm.raw)) | set(configmap_binary_data(cm.raw))
    for s in ctx.of("Secret"):
        keys[("Secret", s.namespace, s.name)] = set(secret_data(s.raw))
    for d in ctx.of_kind(Deployment):
        for ref in references(d):
            problem = reference_problem(ref, keys.get((ref.kind, d.namespace, ref.name)))
            if problem:
                yield ctx.message("IST0101", d, ref.path, problem)
