"""Injection webhook analyzer (IST0139): Istio's mutating webhooks that overlap (a pod would be injected
twice) or call a control plane Service that does not exist."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gossamer.analyze.analyzers.injection import label_selector_matches
from gossamer.analyze.context import Context, as_dict
from gossamer.analyze.messages import Message
from gossamer.analyze.registry import analyzer
from gossamer.resources.base import Resource

REV = "istio.io/rev"
NAMESPACE_LABELS: tuple[dict[str, str], ...] = ({}, {"istio-injection": "enabled"}, {"istio-injection": "disabled"})
OBJECT_LABELS: tuple[dict[str, str], ...] = (
    {},
    {"sidecar.istio.io/inject": "true"},
    {"sidecar.istio.io/inject": "false"},
)


def _revisions(config: Resource[Any], hooks: list[dict[str, Any]]) -> set[str]:
    revs = {config.metadata.labels[REV]} if REV in config.metadata.labels else set()
    for hook in hooks:
        for key in ("namespaceSelector", "objectSelector"):
            selector = as_dict(hook.get(key))
            if REV in as_dict(selector.get("matchLabels")):
                revs.add(str(selector["matchLabels"][REV]))
            for expr in selector.get("matchExpressions") or []:
                if isinstance(expr, dict) and expr.get("key") == REV:
                    revs.update(str(v) for v in expr.get("values") or [])
    return revs


@analyzer("webhook.Analyzer", "Checks the validity of Istio webhooks", ("IST0139",))
def injection_webhooks(ctx: Context) -> Iterator[Message]:
    hooks: dict[str, tuple[Resource[Any], int, dict[str, Any]]] = {}
    revisions: set[str] = set()
    for config in ctx.of("MutatingWebhookConfiguration"):
        listed = [h for h in config.raw.get("webhooks") or [] if isinstance(h, dict)]
        revs = _revisions(config, listed)
        if not revs and not any(str(h.get("name", "")).endswith("istio.io") for h in listed):
            continue
        revisions |= revs
        for i, h in enumerate(listed):
            hooks[f"{config.name}/{h.get('name', '')}"] = (config, i, h)
    namespace_sets = [
        *NAMESPACE_LABELS,
        *({**base, REV: rev} for rev in sorted(revisions) for base in NAMESPACE_LABELS),
    ]
    object_sets = [*OBJECT_LABELS, *({**base, REV: rev} for rev in sorted(revisions) for base in OBJECT_LABELS)]
    reported: set[tuple[str, str]] = set()
    for ns_labels in namespace_sets:
        for obj_labels in object_sets:
            matches = sorted(
                name
                for name, (_, _, h) in hooks.items()
                if label_selector_matches(h.get("namespaceSelector"), ns_labels)
                and label_selector_matches(h.get("objectSelector"), obj_labels)
            )
            if len(matches) < 2:
                continue
            for name in matches:
                others = [m for m in matches if m != name]
                if (name, ",".join(others)) in reported:
                    continue
                reported.add((name, ",".join(others)))
                config, i, _ = hooks[name]
                yield ctx.message(
                    "IST0139",
                    config,
                    ("webhooks", i, "name"),
                    f"webhook {name} overlaps with {others}: pods would be injected twice",
                )
    for name, (config, i, h) in hooks.items():
        service = as_dict(as_dict(h.get("clientConfig")).get("service"))
        if not service:
            continue
        if ctx.find("Service", str(service.get("namespace", "")), str(service.get("name", ""))) is None:
            yield ctx.message(
                "IST0139",
                config,
                ("webhooks", i, "clientConfig", "service"),
                f"webhook {name} calls Service {service.get('namespace')}/{service.get('name')}, which does not exist",
            )


def _webhook_url_host(url: str) -> str | None:
    """The host of a webhook URL; None when it does not parse."""
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return None


@analyzer(
    "externalcontrolplane.ExternalControlPlaneAnalyzer",
    "Checks that the remote IstioOperator resources reference an external control plane",
    ("IST0163", "IST0164"),
)
def external_control_plane(ctx: Context) -> Iterator[Message]:
    import ipaddress

    configs = [
        c
        for c in ctx.of("ValidatingWebhookConfiguration")
        if c.name == "istiod-default-validator" or c.name.startswith("istio-validator")
    ]
    configs += [c for c in ctx.of("MutatingWebhookConfiguration") if c.name.startswith("istio-sidecar-injector")]
    for config in configs:
        for i, hook in enumerate(h for h in config.raw.get("webhooks") or [] if isinstance(h, dict)):
            name = str(hook.get("name", ""))
            client = as_dict(hook.get("clientConfig"))
            path = ("webhooks", i, "clientConfig")
            if client.get("url") is not None:  # `url:` with no value is no URL
                url = str(client["url"])
                host = _webhook_url_host(url)
                if host is None:
                    yield ctx.message(
                        "IST0163",
                        config,
                        path + ("url",),
                        f"webhook {name}: URL {url!r} to the external control plane does not parse",
                    )
                    continue
                try:
                    ipaddress.ip_address(host)
                except ValueError:
                    continue
                yield ctx.message(
                    "IST0164",
                    config,
                    path + ("url",),
                    f"webhook {name} reaches the external control plane at an IP address ({url}); "
                    "use a hostname in production",
                )
            elif not client.get("service"):
                yield ctx.message(
                    "IST0163",
                    config,
                    path,
                    f"webhook {name} names neither a URL nor a Service to reach the control plane",
                )
