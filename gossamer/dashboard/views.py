"""What the dashboard's JSON endpoints answer, from the control plane's own state (read only)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from gossamer.analyze.live import mesh_messages
from gossamer.analyze.messages import Message
from gossamer.api.server import pod_json
from gossamer.controlplane.facade import ControlPlaneFacade, NoPrometheus
from gossamer.controlplane.kubernetes import BUILTIN_SOURCE
from gossamer.dashboard.graph import (
    RateWindow,
    Sample,
    ServiceInfo,
    WorkloadInfo,
    build_graph,
    edge_counters,
    request_samples_from_text,
)
from gossamer.mesh import service_fqdn
from gossamer.resources.enforcement import not_enforced_issues
from gossamer.runtime.types import PodStatus
from gossamer.store import StoredObject
from gossamer.telemetry.prometheus import PrometheusError
from gossamer.xds.proxy_status import ProxyStatus
from gossamer.xds.types import short_name

# The config view's kinds, in the order shown (Istio's networking kinds first).
CONFIG_KINDS = (
    "VirtualService",
    "DestinationRule",
    "Gateway",
    "ServiceEntry",
    "Sidecar",
    "PeerAuthentication",
    "AuthorizationPolicy",
    "RequestAuthentication",
    "Telemetry",
)
XDS_ORDER = ("cds", "eds", "lds", "rds", "sds")
STATE_RANK = {"NACKED": 3, "STALE": 2, "NOT SENT": 1, "SYNCED": 0}


def proxy_json(proxy: ProxyStatus, pods: Sequence[PodStatus]) -> dict[str, Any]:
    """One connected proxy: per xDS type its sync state (and Envoy's NACK message), and the worst of them."""
    synced = proxy.synced
    types: dict[str, dict[str, Any]] = {}
    for type_url, ts in proxy.types.items():
        types[short_name(type_url)] = {
            "state": synced.get(type_url, "NOT SENT"),
            "sent": ts.sent_version,
            "acked": ts.acked_version,
            "error": ts.error,
        }
    ordered = dict(sorted(types.items(), key=lambda kv: (XDS_ORDER.index(kv[0]) if kv[0] in XDS_ORDER else 99, kv[0])))
    pod = next((p for p in pods if f"~{p.name}.{p.namespace}~" in proxy.node_id), None)
    states = [str(t["state"]) for t in ordered.values()]
    return {
        "nodeId": proxy.node_id,
        "group": proxy.group,
        "delta": proxy.delta,
        "pod": pod.name if pod else None,
        "namespace": pod.namespace if pod else None,
        "types": ordered,
        "state": max(states, key=lambda s: STATE_RANK.get(s, 1)) if states else "NOT SENT",
        "nacks": [f"{t.upper()}: {v['error']}" for t, v in ordered.items() if v["state"] == "NACKED"],
    }


def workloads_view(
    pods: Sequence[PodStatus], proxies: Iterable[ProxyStatus], netns: Callable[[PodStatus], str]
) -> dict[str, Any]:
    """Pods (readiness, restarts, IP, sidecar) and proxies (sync per xDS type, NACKs)."""
    pod_rows = []
    for p in sorted(pods, key=lambda p: (p.namespace, p.name)):
        row = pod_json(p, netns(p))
        row["containersReady"] = f"{int(p.app_ready) + int(p.has_sidecar and p.proxy_ready)}/{1 + int(p.has_sidecar)}"
        pod_rows.append(row)
    proxy_rows = sorted((proxy_json(x, pods) for x in proxies), key=lambda r: (r["namespace"] or "", r["nodeId"]))
    return {
        "pods": pod_rows,
        "proxies": proxy_rows,
        "summary": {
            "pods": len(pod_rows),
            "ready": sum(1 for p in pods if p.ready),
            "restarts": sum(p.restarts for p in pods),
            "proxies": len(proxy_rows),
            "synced": sum(1 for r in proxy_rows if r["state"] == "SYNCED"),
            "nacked": sum(1 for r in proxy_rows if r["state"] == "NACKED"),
        },
    }


def _hosts(kind: str, spec: dict[str, Any]) -> list[str]:
    if kind == "DestinationRule":
        return [str(spec["host"])] if spec.get("host") else []
    if kind == "Gateway":
        return [str(h) for s in spec.get("servers") or [] for h in s.get("hosts") or []]
    return [str(h) for h in spec.get("hosts") or []]


def _summary(kind: str, spec: dict[str, Any]) -> str:
    """A few words on what the resource does."""
    if kind == "VirtualService":
        parts = [f"{len(spec.get(k) or [])} {k}" for k in ("http", "tcp", "tls") if spec.get(k)]
        if spec.get("gateways"):
            parts.append("gateways " + ", ".join(map(str, spec["gateways"])))
        return "; ".join(parts)
    if kind == "DestinationRule":
        subsets = [str(s.get("name")) for s in spec.get("subsets") or []]
        return ("subsets " + ", ".join(subsets) if subsets else "") + (
            "; trafficPolicy" if spec.get("trafficPolicy") else ""
        )
    if kind == "Gateway":
        return ", ".join(
            f"{(s.get('port') or {}).get('protocol', '')} {(s.get('port') or {}).get('number', '')}"
            for s in spec.get("servers") or []
        )
    if kind in ("PeerAuthentication",):
        return str((spec.get("mtls") or {}).get("mode", ""))
    if kind == "AuthorizationPolicy":
        return f"{spec.get('action', 'ALLOW')}, {len(spec.get('rules') or [])} rules"
    return ""


def config_view(
    stored: Iterable[StoredObject], parsed: Sequence[Any], messages: Sequence[Message] = ()
) -> dict[str, Any]:
    """Istio config objects with their source file:line, the analysis messages about them (what
    `gossamer analyze` says of the running mesh) and the fields accepted but not enforced."""
    analysis: dict[tuple[str, str, str], list[Message]] = {}
    for m in messages:
        analysis.setdefault((m.kind, m.namespace, m.name), []).append(m)
    by_key = {r.key: r for r in parsed}
    items: list[dict[str, Any]] = []
    for obj in stored:
        if obj.kind not in CONFIG_KINDS or obj.source_file == BUILTIN_SOURCE:
            continue
        resource = by_key.get(obj.key)
        warnings: list[dict[str, Any]] = []
        if resource is not None:
            warnings = [
                {"line": i.line, "field": i.field, "message": i.message, "text": str(i)}
                for i in not_enforced_issues(resource)
            ]
            warnings += [
                {
                    "line": m.line,
                    "field": m.field,
                    "message": f"{m.text} ({m.code} {m.type.name})",
                    "code": m.code,
                    "level": m.level,
                    "text": str(m),
                }
                for m in analysis.get(obj.key, [])
            ]
        spec = obj.body.get("spec") or {}
        items.append(
            {
                "kind": obj.kind,
                "namespace": obj.namespace,
                "name": obj.name,
                "source": f"{obj.source_file}:{obj.source_line}" if obj.source_line else obj.source_file,
                "resourceVersion": obj.resource_version,
                "generation": obj.generation,
                "hosts": _hosts(obj.kind, spec),
                "summary": _summary(obj.kind, spec),
                "warnings": warnings,
            }
        )
    items.sort(key=lambda i: (CONFIG_KINDS.index(i["kind"]), i["namespace"], i["name"]))
    return {
        "items": items,
        "warnings": sum(len(i["warnings"]) for i in items),
        "analysis": [m.to_json() for m in messages],
    }


def mesh_services(resources: dict[str, tuple[Any, ...]]) -> list[ServiceInfo]:
    return [
        ServiceInfo(
            host=service_fqdn(s.metadata.name, s.metadata.namespace),
            name=s.metadata.name,
            namespace=s.metadata.namespace,
            selector=tuple(sorted(s.spec.selector.items())) if s.spec.selector else None,
        )
        for s in resources.get("Service", ())
    ]


def mesh_workloads(pods: Sequence[PodStatus]) -> list[WorkloadInfo]:
    by_deployment: dict[tuple[str, str], list[PodStatus]] = {}
    for p in pods:
        by_deployment.setdefault((p.namespace, p.deployment or p.name), []).append(p)
    return [
        WorkloadInfo(
            name=name,
            namespace=ns,
            labels=ps[0].labels,
            pods=len(ps),
            ready=sum(1 for p in ps if p.ready),
            sidecar=any(p.has_sidecar for p in ps),
        )
        for (ns, name), ps in sorted(by_deployment.items())
    ]


class Dashboard:
    """The dashboard's view of one control plane; keeps the request counters' recent history for rates."""

    def __init__(self, control_plane: ControlPlaneFacade, rates: RateWindow | None = None) -> None:
        self.control_plane = control_plane
        self.window = rates or RateWindow()
        self._analysis: tuple[Any, list[Message]] | None = None

    async def sample(self) -> None:
        """The request counters now: from Prometheus (PromQL) when the mesh runs one, else from
        the control plane's own scrape of the pods."""
        samples: list[Sample] | None = None
        with contextlib.suppress(NoPrometheus, PrometheusError):  # none, or not up yet: the pods answer themselves
            samples = [Sample(labels, value) for labels, value in await self.control_plane.request_counters()]
        if samples is None:
            samples = request_samples_from_text(await self.control_plane.metrics_text())
        self.window.observe(edge_counters(samples))

    async def graph(self) -> dict[str, Any]:
        await self.sample()
        out = build_graph(
            mesh_services(self.control_plane.resources_by_kind()),
            mesh_workloads(self.control_plane.pods()),
            self.window.latest(),
            self.window.rates(),
        )
        out["windowSeconds"] = self.window.window
        return out

    def workloads(self) -> dict[str, Any]:
        return workloads_view(self.control_plane.pods(), self.control_plane.proxies(), self.control_plane.netns_name)

    def config(self) -> dict[str, Any]:
        parsed = self.control_plane.resources()
        pods = self.control_plane.pods()
        # Analysis follows config and pod changes, not polls: cached per store revision and pod set.
        key = (self.control_plane.revision(), tuple((p.namespace, p.name, p.labels, p.has_sidecar) for p in pods))
        if self._analysis is None or self._analysis[0] != key:
            self._analysis = (key, mesh_messages(parsed, pods))
        return config_view(self.control_plane.stored_objects(), parsed, self._analysis[1])

    def overview(self) -> dict[str, Any]:
        cp = self.control_plane
        return {"ready": cp.is_ready(), "ingress": cp.ingress_url, "revision": cp.revision()}
