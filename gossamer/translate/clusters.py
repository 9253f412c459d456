"""Clusters and endpoints: one outbound cluster per service port and subset.

Names follow Istio: outbound|PORT|SUBSET|HOST and inbound|PORT||.
"""

from __future__ import annotations

from gossamer.ir.types import Cluster, Endpoint, EndpointSet
from gossamer.mesh import (
    BLACKHOLE_CLUSTER,
    INBOUND_PASSTHROUGH_CLUSTER,
    PASSTHROUGH_CLUSTER,
    inbound_cluster_name,
    outbound_cluster_name,
)
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import MeshService, Proxy, ServicePort, Workload
from gossamer.resources.networking import DestinationRule
from gossamer.translate.hosts import resolve_host
from gossamer.translate.security import (
    TLS_MODE_LABEL,
    endpoint_tls_mode,
    peer_authentication_modes,
    trust_domains,
    upstream_tls,
)
from gossamer.translate.traffic_policy import cluster_policy, policy_for_cluster
from gossamer.translate.visibility import exported_to, visible_services

# Envoy's inbound connections to the app come from this address, which the
# pod's iptables rules exempt from capture (see runtime.iptables).
INBOUND_SOURCE_ADDRESS = "127.0.0.6"


def _destination_rules_by_host(snapshot: MeshSnapshot) -> dict[str, list[DestinationRule]]:
    out: dict[str, list[DestinationRule]] = {}
    for dr in snapshot.of_kind(DestinationRule):
        out.setdefault(resolve_host(dr.spec.host, dr.metadata.namespace), []).append(dr)
    return out


def destination_rules_for_host(snapshot: MeshSnapshot, host: str) -> list[DestinationRule]:
    """Every DestinationRule whose host resolves to HOST, in the snapshot's order (an index, built once)."""
    return snapshot.derived("destination_rules_by_host", lambda: _destination_rules_by_host(snapshot)).get(host, [])


def destination_rule_for(snapshot: MeshSnapshot, host: str, proxy_namespace: str) -> DestinationRule | None:
    """Istio's lookup order: the proxy's namespace, then the service's, then any other."""
    return snapshot.derived(
        ("destination_rule_for", host, proxy_namespace), lambda: _destination_rule_for(snapshot, host, proxy_namespace)
    )


def _destination_rule_for(snapshot: MeshSnapshot, host: str, proxy_namespace: str) -> DestinationRule | None:
    candidates = [dr for dr in destination_rules_for_host(snapshot, host) if exported_to(dr, proxy_namespace)]
    service_ns = host.split(".")[1] if host.count(".") >= 2 else ""
    for preferred in (proxy_namespace, service_ns):
        for dr in candidates:
            if dr.metadata.namespace == preferred:
                return dr
    return candidates[0] if candidates else None


def subsets_of(snapshot: MeshSnapshot, host: str, proxy_namespace: str) -> list[tuple[str, dict[str, str]]]:
    dr = destination_rule_for(snapshot, host, proxy_namespace)
    if dr is None:
        return []
    return [(s.name, dict(s.labels or {})) for s in dr.spec.subsets or []]


def _labels_match(labels: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())


def dns_endpoints(service: MeshService, port: ServicePort, subset_labels: dict[str, str]) -> tuple[Endpoint, ...]:
    """DNS ServiceEntries: Envoy resolves the endpoints' addresses, or the host itself without endpoints."""
    if not service.endpoints:
        return (Endpoint(service.hostname, port.port),)
    return tuple(
        Endpoint(e.address, e.port_for(port), e.labels)
        for e in service.endpoints
        if _labels_match(dict(e.labels), subset_labels)
    )


def outbound_clusters(snapshot: MeshSnapshot, proxy: Proxy) -> list[Cluster]:
    """One cluster per service port and subset, with its DestinationRule traffic policy
    (merged per Istio: port level, then subset) and Istio's defaults where none is set.
    ServiceEntries choose the cluster type by resolution: STATIC -> EDS, DNS -> STRICT_DNS,
    DNS_ROUND_ROBIN -> LOGICAL_DNS, NONE -> ORIGINAL_DST."""
    clusters: list[Cluster] = []
    for service in visible_services(snapshot, proxy):
        dr = destination_rule_for(snapshot, service.hostname, proxy.namespace)
        subsets = subsets_of(snapshot, service.hostname, proxy.namespace)
        for port in service.ports:
            http2 = port.protocol in ("http2", "grpc")
            for subset, labels in [("", {}), *subsets]:
                merged = policy_for_cluster(dr, subset, port.port)
                policy = cluster_policy(merged)
                passthrough = policy.lb_policy == "CLUSTER_PROVIDED" or service.resolution == "NONE"
                endpoints: tuple[Endpoint, ...] = ()
                if passthrough:
                    kind = "original_dst"
                elif service.resolution in ("DNS", "DNS_ROUND_ROBIN"):
                    endpoints = dns_endpoints(service, port, labels)
                    kind = "strict_dns" if service.resolution == "DNS" else "logical_dns"
                    endpoints = endpoints[:1] if kind == "logical_dns" else endpoints
                else:
                    kind = "eds"
                # Auto mTLS needs endpoints that say whether they take mTLS: EDS ones.
                tls, auto_mtls = upstream_tls(
                    snapshot,
                    proxy,
                    service,
                    port.port,
                    subset,
                    merged.tls if merged is not None else None,
                    kind == "eds",
                )
                clusters.append(
                    Cluster(
                        name=outbound_cluster_name(service.hostname, port.port, subset),
                        kind=kind,  # type: ignore[arg-type]
                        static_endpoints=endpoints,
                        http2=http2 or policy.h2_upgrade,
                        service_host=service.hostname,
                        port=port.port,
                        subset=subset,
                        service_name=service.hostname if service.is_service_entry else service.name,
                        service_namespace=service.namespace,
                        traffic_policy=policy,
                        tls=tls,
                        auto_mtls=auto_mtls,
                    )
                )
    return clusters


def static_clusters() -> list[Cluster]:
    return [
        Cluster(BLACKHOLE_CLUSTER, "blackhole"),
        Cluster(PASSTHROUGH_CLUSTER, "original_dst"),
        Cluster(INBOUND_PASSTHROUGH_CLUSTER, "original_dst", upstream_bind_address=INBOUND_SOURCE_ADDRESS),
    ]


def inbound_ports(snapshot: MeshSnapshot, proxy: Proxy) -> list[tuple[int, MeshService, str]]:
    """(target port, service, protocol) for every service port that selects this proxy's workload
    (protocol: Istio's, e.g. "http", "grpc", "tcp", "tls")."""
    labels = proxy.label_map
    named = dict(proxy.named_ports)
    seen: dict[int, tuple[int, MeshService, str]] = {}
    for service in snapshot.services_selecting(proxy.namespace, labels):
        for port in service.ports:
            target = port.target_port
            number = target if isinstance(target, int) else (int(target) if target.isdigit() else named.get(target))
            if number is None or number in seen:
                continue
            seen[number] = (number, service, port.protocol)
    return sorted(seen.values(), key=lambda t: t[0])


def inbound_clusters(snapshot: MeshSnapshot, proxy: Proxy) -> list[Cluster]:
    # HTTP/2 and gRPC ports speak HTTP/2 to the application too (gRPC servers need it).
    return [
        Cluster(
            inbound_cluster_name(port),
            "static",
            static_endpoints=(Endpoint("127.0.0.1", port),),
            upstream_bind_address=INBOUND_SOURCE_ADDRESS,
            http2=protocol in ("http2", "grpc"),
            service_host=service.hostname,
            service_name=service.name,
            service_namespace=service.namespace,
        )
        for port, service, protocol in inbound_ports(snapshot, proxy)
    ]


def _workload_port(service: MeshService, port: ServicePort, w: Workload) -> int | None:
    if service.is_service_entry:
        # A WorkloadEntry names its ports after the ServiceEntry's; pods serve the target port.
        named = dict(w.named_ports).get(port.name) if w.workload_entry else None
        return named or w.resolve_target_port(port.target_port)
    return w.resolve_target_port(port.target_port)


def translate_endpoints(snapshot: MeshSnapshot, proxy_namespace: str) -> tuple[EndpointSet, ...]:
    """EDS for every outbound EDS cluster: ready workloads (pods, WorkloadEntries) the service
    selects and a ServiceEntry's inline endpoints, narrowed by subset labels. The same for every
    proxy of a namespace, so computed once per snapshot and namespace."""
    return snapshot.derived(
        ("endpoints", proxy_namespace), lambda: tuple(_translate_endpoints(snapshot, proxy_namespace))
    )


def _translate_endpoints(snapshot: MeshSnapshot, proxy_namespace: str) -> list[EndpointSet]:
    sets: list[EndpointSet] = []
    for service in snapshot.services:
        sets.extend(endpoint_sets_for(snapshot, service, proxy_namespace))
    return sets


def endpoint_sets_for(snapshot: MeshSnapshot, service: MeshService, proxy_namespace: str) -> list[EndpointSet]:
    """EDS for one service's clusters, as a proxy of PROXY_NAMESPACE sees them (its DestinationRule's
    subsets); once per snapshot, carried over while the service's pods and the DestinationRules stay."""
    return snapshot.derived(
        ("endpoint_sets_for", service.namespace, service.hostname, proxy_namespace),
        lambda: _endpoint_sets_for(snapshot, service, proxy_namespace),
    )


def _endpoint_sets_for(snapshot: MeshSnapshot, service: MeshService, proxy_namespace: str) -> list[EndpointSet]:
    if service.resolution != "STATIC":
        return []  # DNS clusters carry their endpoints; NONE goes to the original destination
    picked = subsets_of(snapshot, service.hostname, proxy_namespace)
    subsets = tuple((name, tuple(sorted(labels.items()))) for name, labels in picked)
    return service_endpoint_sets(snapshot, service, subsets)


Subsets = tuple[tuple[str, tuple[tuple[str, str], ...]], ...]


def service_endpoint_sets(snapshot: MeshSnapshot, service: MeshService, subsets: Subsets) -> list[EndpointSet]:
    """One service's endpoint sets (per port and subset): the same for every proxy namespace that
    picks the same subsets, so computed once per snapshot."""
    return snapshot.derived(
        ("service_endpoints", service.namespace, service.hostname, subsets),
        lambda: _service_endpoints(snapshot, service, subsets),
    )


def _service_endpoints(snapshot: MeshSnapshot, service: MeshService, subsets: Subsets) -> list[EndpointSet]:
    sets: list[EndpointSet] = []
    workloads = [w for w in snapshot.endpoints_of(service) if w.ready and w.ip]
    mtls_modes = {id(w): peer_authentication_modes(snapshot, w) for w in workloads}
    td = trust_domains(snapshot)
    for port in service.ports:
        for subset, subset_labels in [("", {}), *((name, dict(labels)) for name, labels in subsets)]:
            endpoints = []
            for w in workloads:
                if not _labels_match(w.label_map, subset_labels):
                    continue
                target = _workload_port(service, port, w)
                if target is not None:
                    endpoints.append(
                        Endpoint(
                            w.ip,
                            target,
                            w.labels,
                            endpoint_tls_mode(w, mtls_modes[id(w)], target),
                            workload=w.deployment or w.name,
                            workload_namespace=w.namespace,
                            principal=td.spiffe_id(w.namespace, w.service_account) if w.has_sidecar else "",
                        )
                    )
            for e in service.endpoints:
                if _labels_match(dict(e.labels), subset_labels):
                    tls_mode = "istio" if dict(e.labels).get(TLS_MODE_LABEL) == "istio" else ""
                    endpoints.append(Endpoint(e.address, e.port_for(port), e.labels, tls_mode))
            sets.append(
                EndpointSet(
                    outbound_cluster_name(service.hostname, port.port, subset),
                    tuple(sorted(set(endpoints), key=lambda e: (e.address, e.port))),
                )
            )
    return sets
