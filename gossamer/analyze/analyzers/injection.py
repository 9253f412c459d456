"""Injection analyzers, for dumps that carry Namespaces and Pods: namespaces without an injection label
(IST0102) or injected by default (IST0148) or with several (IST0123), pods of injected namespaces
without the proxy (IST0103), proxies whose image is not the injector's (IST0158), `image: auto`
without an injection webhook (IST0146, IST0147)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from gossamer.analyze.analyzers.deployment import PROXY_CONTAINER, containers, pod_spec
from gossamer.analyze.context import Context
from gossamer.analyze.messages import Message
from gossamer.analyze.registry import analyzer
from gossamer.mesh import ROOT_NAMESPACE
from gossamer.resources.apps import Deployment
from gossamer.resources.base import Resource

INJECTION_LABEL = "istio-injection"
REVISION_LABEL = "istio.io/rev"
DATAPLANE_MODE = "istio.io/dataplane-mode"
INJECTOR_CONFIGMAP = "istio-sidecar-injector"


def _injector_values(cm: Resource[Any]) -> dict[str, Any]:
    data = cm.raw.get("data")
    text = data.get("values") if isinstance(data, dict) else None
    try:
        values = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    return values if isinstance(values, dict) else {}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def injector_name(revision: str) -> str:
    return INJECTOR_CONFIGMAP if revision in ("", "default") else f"{INJECTOR_CONFIGMAP}-{revision}"


@analyzer(
    "injection.Analyzer",
    "Checks conditions related to Istio sidecar injection",
    ("IST0102", "IST0103", "IST0123", "IST0148"),
)
def injection(ctx: Context) -> Iterator[Message]:
    injected: set[str] = set()
    for ns in ctx.of("Namespace"):
        if ns.name == ROOT_NAMESPACE:
            continue
        labels = ns.metadata.labels
        legacy = labels.get(INJECTION_LABEL)
        istio_labels = [f"{INJECTION_LABEL}={legacy}"] if legacy is not None else []
        for key in (REVISION_LABEL, DATAPLANE_MODE):
            if key in labels and (legacy is None or legacy == "enabled"):
                istio_labels.append(f"{key}={labels[key]}")
        if len(istio_labels) > 1:
            yield ctx.message(
                "IST0123",
                ns,
                ("metadata", "labels"),
                f"several injection labels {istio_labels}: which one wins is undefined; keep one",
            )
        if labels.get(DATAPLANE_MODE) == "ambient":
            continue
        by_default = False
        cm = next((c for c in ctx.of("ConfigMap") if c.name == injector_name(labels.get(REVISION_LABEL, ""))), None)
        if cm is not None:
            hook = _injector_values(cm).get("sidecarInjectorWebhook")
            by_default = isinstance(hook, dict) and hook.get("enableNamespacesByDefault") is True
        if not legacy and REVISION_LABEL not in labels:
            if by_default:
                yield ctx.message(
                    "IST0148",
                    ns,
                    ("metadata", "name"),
                    "is injected: the injector enables namespaces by default "
                    "(enableNamespacesByDefault) and the namespace has no injection label",
                )
            else:
                yield ctx.message(
                    "IST0102",
                    ns,
                    ("metadata", "name"),
                    f"not enabled for injection: label it istio-injection=enabled (or =disabled to "
                    f"say it needs none): kubectl label namespace {ns.name} istio-injection=enabled",
                )
            continue
        if legacy == "enabled":
            injected.add(ns.name)
    for pod in ctx.pods:
        if pod.namespace not in injected:
            continue
        inject = pod.metadata.labels.get(
            "sidecar.istio.io/inject", pod.metadata.annotations.get("sidecar.istio.io/inject", "")
        )
        spec = pod_spec(pod)
        if inject.lower() == "false" or spec.get("hostNetwork"):
            continue
        if not any(c.get("name") == PROXY_CONTAINER and c.get("image") for c in containers(spec, init=True)):
            yield ctx.message(
                "IST0103",
                pod,
                ("metadata", "name"),
                f"pod {pod.namespace}/{pod.name} has no istio-proxy although its namespace is injected "
                "(restart or redeploy the workload)",
            )


def injector_proxy_image(cm: Resource[Any]) -> str:
    values = _injector_values(cm)
    glob = _dict(values.get("global"))
    proxy = _dict(glob.get("proxy"))
    image = str(proxy.get("image") or "")
    if "/" in image:
        return image
    return f"{glob.get('hub') or ''}/{image}:{glob.get('tag') or ''}"


def _image_type(ctx: Context, pod: Resource[Any]) -> str:
    """The proxy image variant (default, debug, distroless): pod annotation, else a ProxyConfig (workload,
    namespace, root namespace), else the mesh config's defaultConfig."""
    annotated = pod.metadata.annotations.get("sidecar.istio.io/proxyImageType")
    if annotated:
        return annotated
    root = ctx.mesh.root_namespace
    candidates: list[tuple[int, str]] = []
    for pc in ctx.of("ProxyConfig"):
        spec = _dict(pc.raw.get("spec"))
        kind = _dict(spec.get("image")).get("imageType")
        if not kind:
            continue
        selector = _dict(_dict(spec.get("selector")).get("matchLabels"))
        if pc.namespace == pod.namespace and selector:
            if all(pod.metadata.labels.get(k) == v for k, v in selector.items()):
                candidates.append((0, str(kind)))
        elif pc.namespace == pod.namespace and pc.namespace != root:
            candidates.append((1, str(kind)))
        elif pc.namespace == root and not selector:
            candidates.append((2, str(kind)))
    if candidates:
        return min(candidates)[1]
    image = _dict(ctx.mesh.default_config.get("image"))
    if image.get("imageType"):
        return str(image["imageType"])
    return "default"


@analyzer(
    "injection.ImageAnalyzer",
    "Checks the image of auto-injection configured with the running proxies on pods",
    ("IST0158",),
)
def proxy_images(ctx: Context) -> Iterator[Message]:
    images = {cm.name: injector_proxy_image(cm) for cm in ctx.of("ConfigMap") if cm.name.startswith(INJECTOR_CONFIGMAP)}
    if not images:
        return
    injected: dict[str, str] = {}
    namespaces: dict[str, Resource[Any] | None] = {}
    for ns in ctx.of("Namespace"):
        namespaces[ns.name] = ns
        labels = ns.metadata.labels
        if REVISION_LABEL in labels:
            injected[ns.name] = labels[REVISION_LABEL]
        elif labels.get(INJECTION_LABEL) == "enabled":
            injected[ns.name] = "default"
    mismatched: dict[str, list[str]] = {}
    for pod in ctx.pods:
        revision = injected.get(pod.namespace)
        if revision is None or pod.metadata.annotations.get("sidecar.istio.io/proxyImage"):
            continue
        if pod.source_file.startswith("<"):  # a pod of Gossamer's runtime (or made of a Deployment): Envoy has no image
            continue
        expected = images.get(injector_name(revision))
        if expected is None:
            continue
        variant = _image_type(ctx, pod)
        for c in containers(pod_spec(pod), init=True):
            if c.get("name") == PROXY_CONTAINER and c.get("image") not in (expected, f"{expected}-{variant}"):
                mismatched.setdefault(pod.namespace, []).append(pod.name)
    for ns_name, pods in sorted(mismatched.items()):
        namespace = namespaces.get(ns_name)
        if namespace is not None:
            yield ctx.message(
                "IST0158",
                namespace,
                ("metadata", "name"),
                f"the istio-proxy image of pods {sorted(pods)} is not the injector's (often after an "
                "upgrade of the control plane: redeploy them)",
            )


def label_selector_matches(selector: Any, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector (matchLabels, matchExpressions); absent: everything."""
    if not isinstance(selector, dict):
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        if not isinstance(expr, dict):
            return False
        key, op, values = str(expr.get("key")), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _auto_image(spec: Mapping[str, Any]) -> bool:
    return any(c.get("name") == PROXY_CONTAINER and c.get("image") == "auto" for c in containers(spec))


@analyzer(
    "injection.ImageAutoAnalyzer",
    "Makes sure that Pods and Deployments with `image: auto` are going to be injected",
    ("IST0146", "IST0147"),
)
def image_auto(ctx: Context) -> Iterator[Message]:
    webhooks = [
        w
        for m in ctx.of("MutatingWebhookConfiguration")
        for w in m.raw.get("webhooks") or []
        if isinstance(w, dict) and str(w.get("name", "")).endswith("istio.io")
    ]
    for pod in ctx.pods:
        if _auto_image(pod_spec(pod)):
            yield ctx.message(
                "IST0147",
                pod,
                ("metadata", "name"),
                "has an istio-proxy with `image: auto`, which only injection replaces: a Pod is "
                "created already, it cannot run",
            )
    for d in ctx.of_kind(Deployment):
        if not _auto_image(pod_spec(d)):
            continue
        ns = ctx.find("Namespace", "", d.namespace or "default")
        ns_labels = ns.metadata.labels if ns is not None else {}
        labels = d.spec.template.metadata.labels
        if not any(
            label_selector_matches(w.get("namespaceSelector"), ns_labels)
            and label_selector_matches(w.get("objectSelector"), labels)
            for w in webhooks
        ):
            yield ctx.message(
                "IST0146",
                d,
                ("metadata", "name"),
                "has an istio-proxy with `image: auto` but no Istio injection webhook selects its pods",
            )
