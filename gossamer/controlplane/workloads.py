"""Kubernetes Deployments and Services -> what the runtime runs and the registry serves.

Also the built-in gateways, exposed the way Istio's are: the ingress gateway always, the
egress gateway with `up --egress-gateway` (as in Istio's demo profile; its default has none).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import MeshService, ServicePort, protocol_for_port
from gossamer.runtime.types import ContainerSpec, DeploymentSpec, Probe, ServiceAddress, ServiceEndpoints

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/16")
GATEWAY_NAMESPACE = "istio-system"
GATEWAY_NAME = "istio-ingressgateway"
GATEWAY_LABELS = {"app": GATEWAY_NAME, "istio": "ingressgateway"}

BUILTIN_SOURCE = "<builtin>"


EGRESS_GATEWAY_NAME = "istio-egressgateway"
EGRESS_GATEWAY_LABELS = {"app": EGRESS_GATEWAY_NAME, "istio": "egressgateway"}


def _gateway_documents(name: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    """A router pod's Deployment, its ServiceAccount and its Service (80->8080 http2, 443->8443 https)."""
    meta = {"name": name, "namespace": GATEWAY_NAMESPACE, "labels": dict(labels)}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": f"{name}-service-account", "namespace": GATEWAY_NAMESPACE}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {
            "selector": {"istio": labels["istio"]},
            "ports": [{"name": "http2", "port": 80, "targetPort": 8080},
                      {"name": "https", "port": 443, "targetPort": 8443}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels),
                             "annotations": {"gossamer.io/proxy-type": "router"}},
                "spec": {"serviceAccountName": f"{name}-service-account",
                         "containers": [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2"}]}}}},
    ]


def builtin_documents(*, egress_gateway: bool = False) -> list[dict[str, Any]]:
    """The ingress gateway: a router pod labelled istio: ingressgateway and its Service (80->8080, 443->8443);
    with EGRESS_GATEWAY also the egress gateway (istio: egressgateway, the same ports, nothing bound on the host)."""
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": GATEWAY_NAMESPACE}},
            *_gateway_documents(GATEWAY_NAME, GATEWAY_LABELS)]
    if egress_gateway:
        docs.extend(egress_gateway_documents())
    return docs


def egress_gateway_documents() -> list[dict[str, Any]]:
    return _gateway_documents(EGRESS_GATEWAY_NAME, EGRESS_GATEWAY_LABELS)


def is_router(deployment: Any) -> bool:
    annotations = deployment.spec.template.metadata.annotations or {}
    return annotations.get("gossamer.io/proxy-type") == "router"


def _probe(probe: Any, named_ports: dict[str, int]) -> Probe | None:
    if probe is None:
        return None

    def port_of(value: int | str) -> int:
        if isinstance(value, int):
            return value
        return int(value) if value.isdigit() else named_ports[value]

    delay = float(probe.initial_delay_seconds or 0)
    period = float(probe.period_seconds or 1)
    if probe.http_get is not None:
        return Probe("http", port_of(probe.http_get.port), probe.http_get.path or "/", delay, min(period, 1.0))
    if probe.tcp_socket is not None:
        return Probe("tcp", port_of(probe.tcp_socket.port), "/", delay, min(period, 1.0))
    return None


def named_ports(deployment: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in deployment.spec.template.spec.containers:
        for p in c.ports or []:
            if p.name:
                out[p.name] = p.container_port
    return out


def deployment_spec(deployment: Any) -> DeploymentSpec:
    template = deployment.spec.template
    annotations = dict(template.metadata.annotations or {})
    router = is_router(deployment)
    ports_by_name = named_ports(deployment)
    workdir = Path(deployment.source_file).resolve().parent if deployment.source_file not in ("", BUILTIN_SOURCE) \
        else None
    containers = () if router else tuple(
        ContainerSpec(
            name=c.name,
            command=tuple([*(c.command or []), *(c.args or [])]) if c.command else (),
            env=tuple((e.name, e.value or "") for e in c.env or []),
            ports=tuple(p.container_port for p in c.ports or []),
            readiness_probe=_probe(c.readiness_probe, ports_by_name),
            workdir=workdir,
            # No command: the container runs its image (Kubernetes' rule: args replace the image's Cmd).
            image="" if c.command else (c.image or ""),
            args=() if c.command else tuple(c.args or ()),
            pull_policy=c.image_pull_policy or "IfNotPresent",
        )
        for c in template.spec.containers
    )
    return DeploymentSpec(
        name=deployment.metadata.name,
        namespace=deployment.metadata.namespace,
        replicas=deployment.spec.replicas if deployment.spec.replicas is not None else 1,
        labels=tuple(sorted((template.metadata.labels or {}).items())),
        annotations=tuple(sorted(annotations.items())),
        service_account=template.spec.service_account_name or "default",
        containers=containers,
        inject_sidecar=router or annotations.get("sidecar.istio.io/inject", "true").lower() != "false",
        proxy_type="router" if router else "sidecar",
    )


def vip_candidates() -> Iterator[str]:
    for i, host in enumerate(SERVICE_CIDR.hosts()):
        if i >= 10:  # leave the first few addresses alone, as Kubernetes does for its own services
            yield str(host)


def mesh_service(service: Any, vip: str) -> MeshService:
    ports = tuple(
        ServicePort(
            name=p.name or "",
            port=p.port,
            target_port=p.target_port if p.target_port is not None else p.port,
            protocol=protocol_for_port(p.name or "", p.app_protocol),
        )
        for p in service.spec.ports or []
    )
    return MeshService(service.metadata.name, service.metadata.namespace, vip, ports,
                       tuple(sorted((service.spec.selector or {}).items())))


def service_address(service: MeshService) -> ServiceAddress:
    return ServiceAddress(service.name, service.namespace, service.vip)


def service_addresses(services: Iterable[MeshService]) -> list[ServiceAddress]:
    """Names pods resolve: every Service, and every ServiceEntry host with an address (its first
    IP address or an auto-allocated VIP), as Istio's DNS proxy answers for them."""
    out = []
    for s in services:
        if not s.is_service_entry:
            out.append(service_address(s))
        elif s.vip and not s.host.startswith("*"):
            out.append(ServiceAddress(s.name, s.namespace, s.vip, hostnames=(s.host,)))
    return out


def service_endpoints(snapshot: MeshSnapshot) -> list[ServiceEndpoints]:
    """What kube-proxy programs for sidecar-less pods: every Kubernetes Service port's VIP and
    the ready pods it selects (IP, target port), as the Endpoints controller lists them."""
    out = []
    for s in snapshot.services:
        if s.is_service_entry or not s.vip:
            continue
        pods = [w for w in snapshot.endpoints_of(s) if w.ready and w.ip and not w.workload_entry]
        for port in s.ports:
            endpoints = set()
            for w in pods:
                target = w.resolve_target_port(port.target_port)
                if target is not None:
                    endpoints.add((w.ip, target))
            out.append(ServiceEndpoints(s.namespace, s.name, s.vip, port.port, tuple(sorted(endpoints))))
    return out
