"""Kubernetes Gateway API: policies whose selector picks a Kubernetes Gateway's pods (IST0166); Gateway
API CRDs older than this Istio version processes (IST0176), from a dump's CustomResourceDefinitions and
their `gateway.networking.k8s.io/bundle-version` annotation."""

from __future__ import annotations

import re
from collections.abc import Iterator

from gossamer.analyze.context import Context, as_dict, selector_matches
from gossamer.analyze.messages import Message
from gossamer.analyze.registry import analyzer

BUNDLE_VERSION = "gateway.networking.k8s.io/bundle-version"
# The Gateway API bundle version each CRD must have at least (Istio's minimum versions).
MINIMUM: dict[str, tuple[int, int, int]] = {
    "grpcroutes.gateway.networking.k8s.io": (1, 1, 0),
    "backendtlspolicies.gateway.networking.k8s.io": (1, 4, 0),
    "tlsroutes.gateway.networking.k8s.io": (1, 5, 0),
    "tcproutes.gateway.networking.k8s.io": (1, 6, 0),
}
_SEMVER = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


@analyzer(
    "k8sgateway.CRDVersionAnalyzer",
    "Checks Gateway API CRDs are at the minimum version required by this Istio version",
    ("IST0176",),
)
def crd_versions(ctx: Context) -> Iterator[Message]:
    for crd in ctx.of("CustomResourceDefinition"):
        minimum = MINIMUM.get(crd.name)
        installed = crd.metadata.annotations.get(BUNDLE_VERSION)
        m = _SEMVER.match(installed or "")
        if minimum is None or m is None:
            continue
        version = tuple(int(g or 0) for g in m.groups())
        if version < minimum:
            wanted = "v" + ".".join(map(str, minimum))
            yield ctx.message(
                "IST0176",
                crd,
                ("metadata", "annotations", BUNDLE_VERSION),
                f"Gateway API CRD {crd.name} is at {installed}, Istio needs at least {wanted}: "
                "its resources are not processed (upgrade the Gateway API CRDs)",
            )


GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"


@analyzer(
    "k8sgateway.SelectorAnalyzer", "Check if a policy uses a selector on the pods of a Kubernetes Gateway", ("IST0166",)
)
def gateway_selectors(ctx: Context) -> Iterator[Message]:
    gateway_pods: dict[str, list[dict[str, str]]] = {}
    for pod in ctx.pods:
        if GATEWAY_NAME_LABEL in pod.metadata.labels:
            gateway_pods.setdefault(pod.namespace, []).append(dict(pod.metadata.labels))
    for kind in ("AuthorizationPolicy", "RequestAuthentication", "Telemetry", "WasmPlugin"):
        for r in ctx.of(kind):
            if kind == "WasmPlugin":
                spec = as_dict(r.raw.get("spec"))
                if spec.get("targetRef") or not isinstance(spec.get("selector"), dict):
                    continue
                labels = as_dict(as_dict(spec.get("selector")).get("matchLabels"))
            else:
                if getattr(r.spec, "target_ref", None) is not None or r.spec.selector is None:
                    continue
                labels = r.spec.selector.match_labels
            for pod_labels in gateway_pods.get(r.namespace, []):
                if selector_matches(labels, pod_labels):
                    yield ctx.message(
                        "IST0166",
                        r,
                        ("spec", "selector"),
                        f"selector matches the pods of Kubernetes Gateway "
                        f"{pod_labels[GATEWAY_NAME_LABEL]}, where it has no effect: use targetRef",
                    )
