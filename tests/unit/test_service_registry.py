"""The registry side of ServiceEntry / WorkloadEntry, Istio's protocol selection, and the
names pods resolve for ServiceEntry hosts."""

from __future__ import annotations

from typing import Any

import pytest

from gossamer.controlplane.kubernetes import service_addresses
from gossamer.registry.serviceentry import registry_services, service_entry_services, workload_entry_workloads
from gossamer.registry.types import protocol_for_port
from gossamer.resources.base import Resource
from gossamer.resources.loader import parse_documents
from gossamer.resources.networking import ServiceEntry, WorkloadEntry
from gossamer.runtime.hosts import render_hosts
from gossamer.runtime.types import ServiceAddress


@pytest.mark.parametrize(
    ("name", "app_protocol", "expected"),
    [
        ("http", None, "http"),
        ("http-web", None, "http"),
        ("http2", None, "http2"),
        ("grpc", None, "grpc"),
        ("grpc-api", None, "grpc"),
        ("grpc-web", None, "http"),
        ("tcp-db", None, "tcp"),
        ("tls", None, "tls"),
        ("https", None, "tls"),
        ("https-admin", None, "tls"),
        ("mongo", None, "tcp"),
        ("mysql-main", None, "tcp"),
        ("redis", None, "tcp"),
        ("web", "grpc", "grpc"),
        ("http", "tcp", "tcp"),
        ("x", "kubernetes.io/h2c", "http2"),
        ("", None, "http"),
    ],
)
def test_protocol_selection(name: str, app_protocol: str | None, expected: str) -> None:
    assert protocol_for_port(name, app_protocol) == expected


ENTRIES = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: multi}
spec:
  hosts: [a.example.com, b.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}, {number: 80, name: web, protocol: HTTP2}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: none}
spec:
  hosts: [c.example.com, "*.d.example.com"]
  ports: [{number: 5432, name: pg, protocol: TCP}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: addressed}
spec:
  hosts: [e.example.com]
  addresses: [10.0.0.0/8, 192.0.2.10]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 192.0.2.11, ports: {http: 8080}, labels: {v: "1"}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm}
spec:
  address: 192.0.2.20
  labels: {app: vm}
  ports: {http: 9080}
"""


def _resources() -> dict[str, tuple[Resource[Any], ...]]:
    parsed, issues = parse_documents(ENTRIES, "se.yaml")
    assert not [i for i in issues if i.level == "error"]
    by_kind: dict[str, list[Resource[Any]]] = {}
    for r in parsed:
        by_kind.setdefault(r.kind, []).append(r)
    return {k: tuple(v) for k, v in by_kind.items()}


def _entry(name: str) -> ServiceEntry:
    (entry,) = [r for r in _resources()["ServiceEntry"] if isinstance(r, ServiceEntry) and r.metadata.name == name]
    return entry


def test_service_entry_hosts_become_services_with_istio_auto_allocation() -> None:
    allocated: list[tuple[str, str]] = []

    def allocate(namespace: str, key: str) -> str:
        allocated.append((namespace, key))
        return f"10.96.1.{len(allocated)}"

    services = {s.hostname: s for s in registry_services(_resources(), allocate)}
    assert set(services) == {"a.example.com", "b.example.com", "c.example.com", "*.d.example.com", "e.example.com"}
    a = services["a.example.com"]
    assert a.vip == "10.96.1.1" and a.resolution == "DNS" and a.is_service_entry
    assert [(p.port, p.protocol) for p in a.ports] == [(443, "tls"), (80, "http2")]
    assert services["b.example.com"].vip == "10.96.1.2"
    # NONE and wildcard hosts get no address (the proxy could not know the original one).
    assert services["c.example.com"].vip == "" and services["*.d.example.com"].vip == ""
    e = services["e.example.com"]
    assert e.vip == "192.0.2.10" and e.addresses == ("10.0.0.0/8", "192.0.2.10")
    assert e.endpoints[0].port_for(e.ports[0]) == 8080
    assert allocated == [
        ("default", "ServiceEntry/multi/a.example.com"),
        ("default", "ServiceEntry/multi/b.example.com"),
    ]


def test_workload_entries_are_workloads() -> None:
    (vm,) = workload_entry_workloads(r for r in _resources()["WorkloadEntry"] if isinstance(r, WorkloadEntry))
    assert vm.ip == "192.0.2.20" and vm.workload_entry and vm.ready and dict(vm.named_ports) == {"http": 9080}


def test_pods_resolve_service_entry_hosts_with_an_address() -> None:
    services = service_entry_services(_entry("multi"), lambda _ns, _key: "10.96.1.7")
    addresses = service_addresses(services)
    assert addresses == [
        ServiceAddress("a.example.com", "default", "10.96.1.7", ("a.example.com",)),
        ServiceAddress("b.example.com", "default", "10.96.1.7", ("b.example.com",)),
    ]
    text = render_hosts(pod_name="p", pod_ip="10.244.0.9", namespace="default", services=addresses[:1])
    assert "10.96.1.7\ta.example.com" in text.splitlines()
    # Without an address nothing is written.
    assert service_addresses(service_entry_services(_entry("none"), lambda _ns, _key: "10.96.1.8")) == []
