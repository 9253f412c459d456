"""The Kubernetes adapters: Deployments and Services -> what the runtime runs (`DeploymentSpec`, the
names pods resolve, kube-proxy's endpoints) and what the registry serves (`MeshService`, VIP candidates).

Also the built-in gateways, exposed the way Istio's are: the ingress gateway always, the
egress gateway with `up --egress-gateway` (as in Istio's demo profile; its default has none).
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from gossamer.mesh import ROOT_NAMESPACE
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import MeshService, ServicePort, protocol_for_port
from gossamer.resources import apps
from gossamer.resources.apps import Deployment, run_as
from gossamer.resources.core import ConfigMap, Secret, Service, configmap_binary_data, configmap_data, secret_data
from gossamer.resources.meshconfig import DEFAULT_MESH_CONFIG, MeshConfig
from gossamer.runtime.types import (
    ContainerSpec,
    DeploymentSpec,
    EnvFrom,
    EnvRef,
    KeyToPath,
    Probe,
    ServiceAddress,
    ServiceEndpoints,
    SourceData,
    VolumeMount,
    VolumeSpec,
)

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/16")
GATEWAY_NAMESPACE = ROOT_NAMESPACE  # Istio's built-in gateways live in its root namespace
GATEWAY_NAME = "istio-ingressgateway"
GATEWAY_LABELS = {"app": GATEWAY_NAME, "istio": "ingressgateway"}

BUILTIN_SOURCE = "<builtin>"


EGRESS_GATEWAY_NAME = "istio-egressgateway"
EGRESS_GATEWAY_LABELS = {"app": EGRESS_GATEWAY_NAME, "istio": "egressgateway"}


def _gateway_documents(name: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    """A router pod's Deployment, its ServiceAccount and its Service (80->8080 http2, 443->8443 https)."""
    meta = {"name": name, "namespace": GATEWAY_NAMESPACE, "labels": dict(labels)}
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": f"{name}-service-account", "namespace": GATEWAY_NAMESPACE},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "selector": {"istio": labels["istio"]},
                "ports": [
                    {"name": "http2", "port": 80, "targetPort": 8080},
                    {"name": "https", "port": 443, "targetPort": 8443},
                ],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": dict(labels)},
                "template": {
                    "metadata": {"labels": dict(labels), "annotations": {"gossamer.io/proxy-type": "router"}},
                    "spec": {
                        "serviceAccountName": f"{name}-service-account",
                        "containers": [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2"}],
                    },
                },
            },
        },
    ]


def builtin_documents(*, egress_gateway: bool = False) -> list[dict[str, Any]]:
    """The ingress gateway: a router pod labelled istio: ingressgateway and its Service (80->8080, 443->8443);
    with EGRESS_GATEWAY also the egress gateway (istio: egressgateway, the same ports, nothing bound on the host)."""
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": GATEWAY_NAMESPACE}},
        *_gateway_documents(GATEWAY_NAME, GATEWAY_LABELS),
    ]
    if egress_gateway:
        docs.extend(egress_gateway_documents())
    return docs


def egress_gateway_documents() -> list[dict[str, Any]]:
    return _gateway_documents(EGRESS_GATEWAY_NAME, EGRESS_GATEWAY_LABELS)


def is_router(deployment: Deployment) -> bool:
    annotations = deployment.spec.template.metadata.annotations or {}
    return annotations.get("gossamer.io/proxy-type") == "router"


def _probe(probe: apps.Probe | None, named_ports: dict[str, int]) -> Probe | None:
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


def named_ports(deployment: Deployment) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in deployment.spec.template.spec.containers:
        for p in c.ports or []:
            if p.name:
                out[p.name] = p.container_port
    return out


PROXY_CONFIG_ANNOTATION = "proxy.istio.io/config"


def hold_application(annotations: dict[str, str], mesh: MeshConfig) -> bool:
    """Istio's holdApplicationUntilProxyStarts: the pod's `proxy.istio.io/config` annotation (ProxyConfig
    YAML), else the mesh config's defaultConfig. Decided when the pod is made, as Istio's injector does."""
    text = annotations.get(PROXY_CONFIG_ANNOTATION)
    if text:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = None
        if isinstance(value, dict) and isinstance(value.get("holdApplicationUntilProxyStarts"), bool):
            return bool(value["holdApplicationUntilProxyStarts"])
    return mesh.hold_application_until_proxy_starts


def _env_refs(container: apps.Container) -> tuple[EnvRef, ...]:
    out = []
    for e in container.env or []:
        src = e.value_from
        if src is None:
            continue
        if src.config_map_key_ref is not None:
            r = src.config_map_key_ref
            out.append(EnvRef(e.name, "ConfigMap", r.name, r.key, bool(r.optional)))
        elif src.secret_key_ref is not None:
            r = src.secret_key_ref
            out.append(EnvRef(e.name, "Secret", r.name, r.key, bool(r.optional)))
        elif src.field_ref is not None:
            out.append(EnvRef(e.name, "field", src.field_ref.field_path))
    return tuple(out)


def _env_from(container: apps.Container) -> tuple[EnvFrom, ...]:
    out = []
    for ef in container.env_from or []:
        if ef.config_map_ref is not None:
            out.append(EnvFrom("ConfigMap", ef.config_map_ref.name, ef.prefix or "", bool(ef.config_map_ref.optional)))
        elif ef.secret_ref is not None:
            out.append(EnvFrom("Secret", ef.secret_ref.name, ef.prefix or "", bool(ef.secret_ref.optional)))
    return tuple(out)


def _volume(v: apps.Volume) -> VolumeSpec:
    def items(src: apps.ConfigMapVolumeSource | apps.SecretVolumeSource) -> tuple[KeyToPath, ...]:
        return tuple(KeyToPath(i.key, i.path, i.mode) for i in src.items or [])

    if v.config_map is not None:
        src = v.config_map
        return VolumeSpec(
            v.name,
            "configMap",
            src.name,
            items(src),
            src.default_mode if src.default_mode is not None else 0o644,
            bool(src.optional),
        )
    if v.secret is not None:
        secret = v.secret
        return VolumeSpec(
            v.name,
            "secret",
            secret.secret_name,
            items(secret),
            secret.default_mode if secret.default_mode is not None else 0o644,
            bool(secret.optional),
        )
    if v.empty_dir is not None:
        return VolumeSpec(v.name, "emptyDir", medium=v.empty_dir.medium or "")
    return VolumeSpec(v.name, "unsupported")


def _sources(
    deployment: Deployment,
    volumes: tuple[VolumeSpec, ...],
    containers: tuple[ContainerSpec, ...],
    snapshot: MeshSnapshot | None,
) -> tuple[SourceData, ...]:
    """The current content of every ConfigMap and Secret the pod template uses."""
    wanted: set[tuple[str, str]] = set()
    for v in volumes:
        if v.kind in ("configMap", "secret") and v.source:
            wanted.add(("ConfigMap" if v.kind == "configMap" else "Secret", v.source))
    for c in containers:
        wanted.update((r.kind, r.source) for r in c.env_refs if r.kind != "field")
        wanted.update((f.kind, f.source) for f in c.env_from)
    if not wanted:
        return ()
    ns = deployment.metadata.namespace
    found: dict[tuple[str, str], dict[str, bytes]] = {}
    if snapshot is not None:
        for r in snapshot.of_kind(ConfigMap):
            if r.metadata.namespace == ns and ("ConfigMap", r.metadata.name) in wanted:
                data = {k: v.encode() for k, v in configmap_data(r.raw).items()}
                data.update(configmap_binary_data(r.raw))
                found[("ConfigMap", r.metadata.name)] = data
        for secret in snapshot.of_kind(Secret):
            if secret.metadata.namespace == ns and ("Secret", secret.metadata.name) in wanted:
                found[("Secret", secret.metadata.name)] = secret_data(secret.raw)
    out = []
    for kind, name in sorted(wanted):
        content = found.get((kind, name))
        encoded = tuple(sorted((k, base64.b64encode(v).decode()) for k, v in (content or {}).items()))
        out.append(SourceData(kind, name, content is not None, encoded))  # type: ignore[arg-type]
    return tuple(out)


def deployment_spec(deployment: Deployment, snapshot: MeshSnapshot | None = None) -> DeploymentSpec:
    """What the runtime runs for a Deployment; with the SNAPSHOT, the content of the ConfigMaps and
    Secrets its pods use (volumes, env)."""
    template = deployment.spec.template
    annotations = dict(template.metadata.annotations or {})
    router = is_router(deployment)
    ports_by_name = named_ports(deployment)
    workdir = (
        Path(deployment.source_file).resolve().parent if deployment.source_file not in ("", BUILTIN_SOURCE) else None
    )
    containers = (
        ()
        if router
        else tuple(
            ContainerSpec(
                name=c.name,
                command=tuple([*(c.command or []), *(c.args or [])]) if c.command else (),
                env=tuple((e.name, e.value or "") for e in c.env or [] if e.value_from is None),
                ports=tuple(p.container_port for p in c.ports or []),
                readiness_probe=_probe(c.readiness_probe, ports_by_name),
                workdir=workdir,
                # No command: the container runs its image (Kubernetes' rule: args replace the image's Cmd).
                image="" if c.command else (c.image or ""),
                args=() if c.command else tuple(c.args or ()),
                pull_policy=c.image_pull_policy or "IfNotPresent",
                mounts=tuple(
                    VolumeMount(m.name, m.mount_path, m.sub_path or "", bool(m.read_only))
                    for m in c.volume_mounts or []
                ),
                env_refs=_env_refs(c),
                env_from=_env_from(c),
                run_as_user=run_as(template.spec, c)[0],
                run_as_group=run_as(template.spec, c)[1],
            )
            for c in template.spec.containers
        )
    )
    volumes = () if router else tuple(_volume(v) for v in template.spec.volumes or [])
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
        volumes=volumes,
        sources=_sources(deployment, volumes, containers, snapshot),
        hold_application_until_proxy_starts=not router
        and hold_application(annotations, snapshot.mesh_config if snapshot is not None else DEFAULT_MESH_CONFIG),
    )


def vip_candidates() -> Iterator[str]:
    for i, host in enumerate(SERVICE_CIDR.hosts()):
        if i >= 10:  # leave the first few addresses alone, as Kubernetes does for its own services
            yield str(host)


def mesh_service(service: Service, vip: str) -> MeshService:
    ports = tuple(
        ServicePort(
            name=p.name or "",
            port=p.port,
            target_port=p.target_port if p.target_port is not None else p.port,
            protocol=protocol_for_port(p.name or "", p.app_protocol),
        )
        for p in service.spec.ports or []
    )
    return MeshService(
        service.metadata.name,
        service.metadata.namespace,
        vip,
        ports,
        tuple(sorted((service.spec.selector or {}).items())),
    )


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
    return [e for s in snapshot.services if has_service_endpoints(s) for e in service_endpoints_of(snapshot, s)]


def has_service_endpoints(service: MeshService) -> bool:
    """Whether kube-proxy programs SERVICE (a Kubernetes Service with a VIP)."""
    return not service.is_service_entry and bool(service.vip)


def service_endpoints_of(snapshot: MeshSnapshot, s: MeshService) -> list[ServiceEndpoints]:
    """service_endpoints of one service (per port). Depends on the service and the workloads it selects
    (snapshot.endpoints_of) alone."""
    out = []
    pods = [w for w in snapshot.endpoints_of(s) if w.ready and w.ip and not w.workload_entry]
    for port in s.ports:
        endpoints = set()
        for w in pods:
            target = w.resolve_target_port(port.target_port)
            if target is not None:
                endpoints.add((w.ip, target))
        out.append(ServiceEndpoints(s.namespace, s.name, s.vip, port.port, tuple(sorted(endpoints))))
    return out
