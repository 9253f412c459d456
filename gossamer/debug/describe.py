"""`gossamer describe POD`: the config that applies to one pod, like `istioctl x describe pod`.

Pure: a MeshSnapshot and one of its workloads in, a JSON-able dict out. Every choice (which
VirtualService wins for a host, which DestinationRule, PeerAuthentication, Sidecar, Telemetry,
EnvoyFilter applies) is made by the translator's own selection functions, so this says what the
proxy was actually configured with.
"""

from __future__ import annotations

from typing import Any

from gossamer.mesh import host_matches
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import MeshService, Proxy, Workload
from gossamer.resources.base import Model, Resource
from gossamer.resources.core import ConfigMap, configmap_data
from gossamer.resources.meshconfig import MESH_CONFIGMAP_KEY, MESH_CONFIGMAP_NAME, MESH_CONFIGMAP_NAMESPACE
from gossamer.resources.networking import TrafficPolicy
from gossamer.resources.security import AuthorizationPolicy, RequestAuthentication
from gossamer.translate.authorization import authz_applies
from gossamer.translate.clusters import destination_rule_for
from gossamer.translate.envoyfilter import envoy_filters_for
from gossamer.translate.gateway import gateways_for
from gossamer.translate.hosts import resolve_host
from gossamer.translate.jwt import request_authentication_applies
from gossamer.translate.routes import MESH_GATEWAY, RouteContext, qualify_gateway, virtual_services_for
from gossamer.translate.security import peer_authentication_levels, peer_authentication_modes, trust_domains
from gossamer.translate.sidecar import virtual_service_for_host
from gossamer.translate.telemetry import Side, telemetry_levels, telemetry_off, tracing_for
from gossamer.translate.visibility import registry_only, sidecar_for

SIDES: tuple[Side, ...] = ("client", "server")


class DescribeError(Exception):
    pass


def _ref(resource: Resource[Any]) -> str:
    return f"{resource.metadata.namespace}/{resource.metadata.name}"


def find_workload(snapshot: MeshSnapshot, ref: str, namespace: str = "default") -> Workload:
    """ "POD" or "deploy/NAME" (the first pod of that Deployment, ready ones first)."""
    pods = [w for w in snapshot.workloads if w.namespace == namespace and not w.workload_entry]
    if ref.startswith(("deploy/", "deployment/")):
        deploy = ref.split("/", 1)[1]
        candidates = sorted((w for w in pods if w.deployment == deploy), key=lambda w: (not w.ready, w.name))
        if not candidates:
            raise DescribeError(f"no pod for deployment {namespace}/{deploy}")
        return candidates[0]
    for w in pods:
        if w.name == ref:
            return w
    raise DescribeError(f'pod "{ref}" not found in namespace "{namespace}"')


def proxy_of(workload: Workload) -> Proxy:
    """The proxy identity the workload's Envoy presents (with its agent's SDS, as pods have)."""
    return Proxy(
        type="router" if workload.router else "sidecar",
        namespace=workload.namespace,
        labels=workload.labels,
        named_ports=workload.named_ports,
        has_sds=True,
    )


def _summary(model: Model | None) -> dict[str, Any] | None:
    return model.to_dict() if model is not None else None


def traffic_policy_summary(policy: TrafficPolicy | None) -> dict[str, Any]:
    if policy is None:
        return {}
    out: dict[str, Any] = {}
    lb = policy.load_balancer
    if lb is not None:
        out["loadBalancer"] = lb.simple or ("CONSISTENT_HASH" if lb.consistent_hash is not None else "") or _summary(lb)
    for key, value in (("connectionPool", policy.connection_pool), ("outlierDetection", policy.outlier_detection)):
        if value is not None:
            out[key] = _summary(value)
    if policy.tls is not None:
        out["tls"] = policy.tls.mode
    if policy.port_level_settings:
        out["portLevelSettings"] = [s.to_dict() for s in policy.port_level_settings]
    return out


def _destination_rule(snapshot: MeshSnapshot, service: MeshService, workload: Workload) -> dict[str, Any] | None:
    dr = destination_rule_for(snapshot, service.hostname, workload.namespace)
    if dr is None:
        return None
    labels = workload.label_map
    subsets = []
    for s in dr.spec.subsets or []:
        subsets.append(
            {
                "name": s.name,
                "labels": dict(s.labels or {}),
                "matchesPod": all(labels.get(k) == v for k, v in (s.labels or {}).items()),
                "trafficPolicy": traffic_policy_summary(s.traffic_policy),
            }
        )
    return {
        "name": _ref(dr),
        "host": dr.spec.host,
        "subsets": subsets,
        "podSubsets": [s["name"] for s in subsets if s["matchesPod"]],
        "trafficPolicy": traffic_policy_summary(dr.spec.traffic_policy),
    }


def _virtual_services(snapshot: MeshSnapshot, service: MeshService, proxy: Proxy) -> dict[str, Any]:
    """The mesh VirtualServices for the service's host, as a sidecar in the pod's namespace sees them."""
    ctx = RouteContext(proxy, frozenset({MESH_GATEWAY}), 0)
    vss = list(virtual_services_for(snapshot, ctx))
    matching = [
        vs
        for vs in vss
        if any(host_matches(resolve_host(h, vs.metadata.namespace), service.hostname) for h in vs.spec.hosts or [])
    ]
    winner = virtual_service_for_host(matching, service.hostname)
    out: dict[str, Any] = {
        "items": [_ref(vs) for vs in matching],
        "effective": _ref(winner) if winner else None,
        "warnings": [],
    }
    if len(matching) > 1:
        out["warnings"].append(
            f"IST0109 (ConflictingMeshGatewayVirtualServiceHosts) The VirtualServices "
            f"{', '.join(out['items'])} associated with mesh gateway define the same host "
            f"{service.hostname} which can lead to undefined behavior; sidecars use "
            f"{out['effective'] or 'none of them for HTTP'}"
        )
    return out


def _service(snapshot: MeshSnapshot, service: MeshService, workload: Workload, proxy: Proxy) -> dict[str, Any]:
    return {
        "name": service.name,
        "namespace": service.namespace,
        "host": service.hostname,
        "vip": service.vip,
        "ports": [
            {
                "name": p.name,
                "port": p.port,
                "targetPort": p.target_port,
                "protocol": p.protocol,
                "podPort": workload.resolve_target_port(p.target_port),
            }
            for p in service.ports
        ],
        "virtualServices": _virtual_services(snapshot, service, proxy),
        "destinationRule": _destination_rule(snapshot, service, workload),
    }


def _peer_authentication(snapshot: MeshSnapshot, workload: Workload, ports: list[int]) -> dict[str, Any]:
    mode, by_port = peer_authentication_modes(snapshot, workload)
    levels = peer_authentication_levels(snapshot, workload)
    source = "mesh default (PERMISSIVE)"
    for policy in levels:  # least specific first: the most specific policy with a mode decides
        if policy is not None and policy.spec.mtls is not None and (policy.spec.mtls.mode or "UNSET") != "UNSET":
            source = _ref(policy)
    workload_policy = levels[2]
    out_ports = []
    for port in sorted(set(ports) | set(by_port)):
        if port in by_port and workload_policy is not None:
            out_ports.append(
                {"port": port, "mode": by_port[port], "policy": f"{_ref(workload_policy)} (portLevelMtls)"}
            )
        else:
            out_ports.append({"port": port, "mode": mode, "policy": source})
    return {"mode": mode, "policy": source, "ports": out_ports, "policies": [_ref(p) for p in levels if p is not None]}


def _gateways(snapshot: MeshSnapshot, proxy: Proxy) -> list[dict[str, Any]]:
    out = []
    for gw in gateways_for(snapshot, proxy):
        name = qualify_gateway(gw.metadata.name, gw.metadata.namespace)
        ctx = RouteContext(proxy, frozenset({name}), 0)
        bound = [{"name": _ref(vs), "hosts": list(vs.spec.hosts or [])} for vs in virtual_services_for(snapshot, ctx)]
        out.append(
            {
                "name": name,
                "servers": [
                    {"port": s.port.number, "protocol": s.port.protocol, "hosts": list(s.hosts or [])}
                    for s in gw.spec.servers or []
                ],
                "virtualServices": bound,
            }
        )
    return out


def mesh_config_summary(snapshot: MeshSnapshot) -> dict[str, Any]:
    """Istio's mesh-wide options in effect, and where they come from (ConfigMap istio-system/istio)."""
    source = next(
        (
            cm
            for cm in snapshot.of_kind(ConfigMap)
            if (cm.metadata.namespace, cm.metadata.name) == (MESH_CONFIGMAP_NAMESPACE, MESH_CONFIGMAP_NAME)
            and MESH_CONFIGMAP_KEY in configmap_data(cm.raw)
        ),
        None,
    )
    where = None
    if source is not None:
        where = f"ConfigMap {_ref(source)}" + (
            f" ({source.source_file}:{source.source_line})" if source.source_file else ""
        )
    return {"source": where, "options": snapshot.mesh_config.summary()}


def describe(snapshot: MeshSnapshot, workload: Workload) -> dict[str, Any]:
    proxy = proxy_of(workload)
    labels = workload.label_map
    services = [
        s
        for s in snapshot.services
        if not s.is_service_entry and s.namespace == workload.namespace and s.selects(labels)
    ]
    pod_ports = sorted(
        {p for s in services for sp in s.ports if (p := workload.resolve_target_port(sp.target_port)) is not None}
    )
    sidecar = sidecar_for(snapshot, proxy)
    logs_off, metrics_off = telemetry_off(snapshot, proxy)
    return {
        "pod": {
            "name": workload.name,
            "namespace": workload.namespace,
            "deployment": workload.deployment,
            "ip": workload.ip,
            "labels": labels,
            "serviceAccount": workload.service_account,
            "identity": trust_domains(snapshot).spiffe_id(workload.namespace, workload.service_account or "default"),
            "ready": workload.ready,
            "sidecar": workload.has_sidecar,
            "proxyType": proxy.type if workload.has_sidecar else None,
        },
        "services": [_service(snapshot, s, workload, proxy) for s in services],
        "peerAuthentication": _peer_authentication(snapshot, workload, pod_ports),
        "authorizationPolicies": [
            {
                "name": _ref(p),
                "action": p.spec.action or "ALLOW",
                **({"note": "CUSTOM is not enforced"} if p.spec.action == "CUSTOM" else {}),
            }
            for p in snapshot.of_kind(AuthorizationPolicy)
            if authz_applies(p, proxy)
        ],
        "requestAuthentications": [
            _ref(p) for p in snapshot.of_kind(RequestAuthentication) if request_authentication_applies(p, proxy)
        ],
        "sidecar": {
            "name": _ref(sidecar) if sidecar is not None else None,
            "outboundTrafficPolicy": "REGISTRY_ONLY" if registry_only(snapshot, proxy) else "ALLOW_ANY",
        },
        "meshConfig": mesh_config_summary(snapshot),
        "telemetry": {
            "policies": [_ref(t) for t in telemetry_levels(snapshot, proxy)],
            "accessLogging": not logs_off,
            "metrics": not metrics_off,
            "tracing": {
                side: (
                    None
                    if (t := tracing_for(snapshot, proxy, side)) is None
                    else {"sampling": t.sampling, "spans": t.spans}
                )
                for side in SIDES
            },
        },
        "envoyFilters": [_ref(ef) for ef in envoy_filters_for(snapshot, proxy)],
        "gateways": _gateways(snapshot, proxy),
    }
