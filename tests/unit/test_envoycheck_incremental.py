"""apply's Envoy check costs what the change touches: a VirtualService change builds and checks the virtual
hosts of its hosts again, not every scope's route tables; what it finds is what checking the whole built
config finds."""

from __future__ import annotations

from typing import Any

import pytest

import gossamer.controlplane.envoycheck as envoycheck
from gossamer.ir.types import HttpRoute, ProxyConfig, RouteMatch, RouteTable, VirtualHost, WeightedDestination
from gossamer.resources.loader import parse_documents
from gossamer.translate import OutboundConfig
from gossamer.xds.build import build_resources, routes
from gossamer.xds.rules import violations

NAMESPACES = 2
SERVICES = 10


def _mesh() -> str:
    docs = [f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: ns-{k}}}\n" for k in range(NAMESPACES)]
    for i in range(SERVICES):
        ns = f"ns-{i % NAMESPACES}"
        docs.append(f"""apiVersion: v1
kind: Service
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  selector: {{app: svc-{i}}}
  ports: [{{name: http, port: 8000}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: svc-{i}}}}}
  template:
    metadata: {{labels: {{app: svc-{i}}}}}
    spec:
      containers: [{{name: app, command: [sleep, "1"]}}]
""")
    return "---\n".join(docs)


def _virtual_service(timeout: int) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc-0, namespace: ns-0}}
spec:
  hosts: [svc-0]
  http:
  - route: [{{destination: {{host: svc-0}}}}]
    timeout: {timeout}s
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc-0, namespace: ns-0}}
spec:
  host: svc-0
"""


def _parse(text: str, filename: str) -> list[Any]:
    resources, issues = parse_documents(text, filename)
    assert not [i for i in issues if i.level == "error"], issues
    return resources


def _merged(existing: list[Any], new: list[Any]) -> list[Any]:
    keys = {r.key for r in new}
    return [r for r in existing if r.key not in keys] + new


def test_a_virtual_service_change_checks_again_only_the_virtual_hosts_of_its_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    existing = _merged(_parse(_mesh(), "mesh.yaml"), _parse(_virtual_service(1), "vs.yaml"))
    envoycheck.prepare(existing)
    built: list[str] = []
    real = routes.built_virtual_host

    def counting(vhost: VirtualHost) -> Any:
        built.append(vhost.name)
        return real(vhost)

    monkeypatch.setattr(envoycheck, "built_virtual_host", counting)
    # Applied again from another file (the DestinationRule unchanged but for where it was read from).
    new = _parse(_virtual_service(2), "other.yaml")
    assert envoycheck.check_rejections(new, existing) == []
    # The changed host's virtual host, once per outbound scope (one per namespace): not the others'.
    assert built == ["svc-0.ns-0.svc.cluster.local:8000"] * NAMESPACES


def test_what_the_check_finds_is_what_checking_the_whole_built_config_finds() -> None:
    route = HttpRoute("default", RouteMatch(), (WeightedDestination("outbound|8000||a", 100),))
    good = VirtualHost("a:8000", ("a", "a:8000"), (route,))
    nameless = VirtualHost("", ("b",), (route,))  # Envoy: a virtual host's name may not be empty
    no_domains = VirtualHost("c:8000", (), (route,))  # ...nor its domains
    outbound = OutboundConfig(
        listeners=(),
        route_tables=(RouteTable("8000", (good, nameless, no_domains)), RouteTable("9000", (no_domains,))),
        clusters=(),
        endpoints=(),
    )
    whole = [str(v) for v in violations(build_resources(ProxyConfig(listeners=(), route_tables=outbound.route_tables)))]
    assert whole and any("virtual_hosts[1]" in p for p in whole) and any("virtual_hosts[2]" in p for p in whole)
    assert envoycheck._outbound_problems(outbound) == whole
    # Once checked, a virtual host in another table (another translation) is not checked again, and its
    # problems are named at its new place.
    moved = OutboundConfig((), (RouteTable("8000", (no_domains, good)),), (), ())
    expected = [str(v) for v in violations(build_resources(ProxyConfig(route_tables=moved.route_tables)))]
    assert envoycheck._outbound_problems(moved) == expected
    assert [p for p in expected if "virtual_hosts[0]" in p] and not [p for p in expected if "virtual_hosts[1]" in p]
