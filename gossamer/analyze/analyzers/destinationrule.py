"""DestinationRule analyzers: TLS without server verification (IST0128, IST0129), hosts that are no
service (IST0174), subsets that select no pod (IST0173)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from gossamer.analyze.context import Context, selector_matches
from gossamer.analyze.messages import Message
from gossamer.analyze.registry import analyzer
from gossamer.resources.networking import DestinationRule

# Node labels Istio turns into a pod's locality labels (pilot's AugmentLabels).
_REGION, _ZONE, _SUBZONE = "topology.kubernetes.io/region", "topology.kubernetes.io/zone", "topology.istio.io/subzone"


@analyzer(
    "destinationrule.CaCertificateAnalyzer",
    "Checks if caCertificates is set when TLS mode is SIMPLE/MUTUAL",
    ("IST0128", "IST0129"),
)
def ca_certificates(ctx: Context) -> Iterator[Message]:
    for dr in ctx.of_kind(DestinationRule):
        policy = dr.spec.traffic_policy
        if policy is None:
            continue
        selected = dr.spec.workload_selector is not None
        tls = policy.tls
        if (
            tls is not None
            and tls.mode in ("SIMPLE", "MUTUAL")
            and not tls.ca_certificates
            and not (tls.credential_name and selected)
        ):
            yield ctx.message(
                "IST0128",
                dr,
                ("spec", "trafficPolicy", "tls", "caCertificates"),
                f"TLS mode {tls.mode} to {dr.spec.host} without caCertificates: the server's "
                "certificate is not verified",
            )
        for i, port in enumerate(policy.port_level_settings or []):
            tls = port.tls
            if (
                tls is not None
                and tls.mode in ("SIMPLE", "MUTUAL")
                and not tls.ca_certificates
                and not (tls.credential_name and selected)
            ):
                number = port.port.number if port.port else 0
                yield ctx.message(
                    "IST0129",
                    dr,
                    ("spec", "trafficPolicy", "portLevelSettings", i, "tls", "caCertificates"),
                    f"TLS mode {tls.mode} to {dr.spec.host} port {number} without caCertificates: "
                    "the server's certificate is not verified",
                )


def _pod_labels(
    pod_labels: Mapping[str, str], node_name: str, nodes: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """A pod's labels as the registry sees them: plus locality from its node, and its node name."""
    labels = dict(pod_labels)
    node = nodes.get(node_name, {})
    region, zone, subzone = node.get(_REGION, ""), node.get(_ZONE, ""), node.get(_SUBZONE, "")
    if region:
        labels[_REGION] = region
    if zone:
        labels[_ZONE] = zone
    if subzone:
        labels[_SUBZONE] = subzone
    if node_name:
        labels["kubernetes.io/hostname"] = node_name
    return labels


@analyzer(
    "destinationrule.SubsetSelectPodAnalyzer",
    "Checks that a DestinationRule's host is a service and its subsets select pods",
    ("IST0173", "IST0174"),
)
def subsets_select_pods(ctx: Context) -> Iterator[Message]:
    nodes = {n.name: n.metadata.labels for n in ctx.of("Node")}
    pods = [
        _pod_labels(p.metadata.labels, str((p.raw.get("spec") or {}).get("nodeName") or ""), nodes) for p in ctx.pods
    ]
    for dr in ctx.of_kind(DestinationRule):
        service = ctx.destination_service(dr.namespace, dr.spec.export_to, dr.spec.host)
        if service is None:
            yield ctx.message("IST0174", dr, ("spec", "host"), f"host {dr.spec.host!r} is not a service of the mesh")
            continue
        for i, subset in enumerate(dr.spec.subsets):
            selector = {**(service.workload_selector or {}), **subset.labels}
            if not any(selector_matches(selector, labels) for labels in pods):
                yield ctx.message(
                    "IST0173",
                    dr,
                    ("spec", "subsets", i, "name"),
                    f"subset {subset.name!r} selects no pod (requests to it get 503 UH, no healthy upstream)",
                )
