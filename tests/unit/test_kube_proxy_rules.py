"""kube-proxy rules for sidecar-less pods (gossamer.runtime.kube_proxy)."""

from __future__ import annotations

import re

from gossamer.controlplane.kubernetes import service_endpoints
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import MeshService, ServicePort, Workload
from gossamer.runtime.kube_proxy import SERVICES_CHAIN, service_chain, service_rules
from gossamer.runtime.types import ServiceEndpoints

ECHO = ServiceEndpoints(
    "default", "echo", "10.96.0.20", 8000, (("10.244.0.7", 80), ("10.244.0.5", 80), ("10.244.0.6", 80))
)
EMPTY = ServiceEndpoints("default", "gone", "10.96.0.30", 9000, ())


def _table(rules: str, name: str) -> list[str]:
    lines = rules.splitlines()
    start = lines.index(f"*{name}")
    return lines[start : lines.index("COMMIT", start)]


def test_cascade_probabilities() -> None:
    nat = _table(service_rules([ECHO]), "nat")
    chain = service_chain(ECHO)
    assert f"-A OUTPUT -p tcp -j {SERVICES_CHAIN}" in nat
    jump = [r for r in nat if r.startswith(f"-A {SERVICES_CHAIN} ")]
    assert len(jump) == 1 and "-d 10.96.0.20/32 -p tcp -m tcp --dport 8000" in jump[0] and jump[0].endswith(chain)
    dnat = [r for r in nat if r.startswith(f"-A {chain} ")]
    assert [re.search(r"--to-destination (\S+)", r).group(1) for r in dnat] == [  # type: ignore[union-attr]
        "10.244.0.5:80",
        "10.244.0.6:80",
        "10.244.0.7:80",
    ]
    probs = [re.search(r"--probability (\S+)", r) for r in dnat]
    assert [float(p.group(1)) if p else None for p in probs] == [float(f"{1 / 3:.10f}"), 0.5, None]


def test_single_endpoint_has_no_statistic() -> None:
    one = ServiceEndpoints("default", "one", "10.96.0.40", 80, (("10.244.0.9", 8080),))
    nat = _table(service_rules([one]), "nat")
    dnat = [r for r in nat if r.startswith(f"-A {service_chain(one)} ")]
    assert dnat == [f"-A {service_chain(one)} -p tcp -j DNAT --to-destination 10.244.0.9:8080"]


def test_reject_without_endpoints() -> None:
    rules = service_rules([ECHO, EMPTY])
    nat, filt = _table(rules, "nat"), _table(rules, "filter")
    assert not any("10.96.0.30" in r for r in nat)
    rejects = [r for r in filt if "REJECT" in r]
    assert len(rejects) == 1
    assert rejects[0].startswith(f"-A {SERVICES_CHAIN} -d 10.96.0.30/32 -p tcp -m tcp --dport 9000")
    assert rejects[0].endswith("-j REJECT --reject-with tcp-reset")
    assert f"-A OUTPUT -p tcp -j {SERVICES_CHAIN}" in filt


def test_idempotent_and_order_independent() -> None:
    a = service_rules([ECHO, EMPTY])
    shuffled = ServiceEndpoints(ECHO.namespace, ECHO.name, ECHO.vip, ECHO.port, tuple(reversed(ECHO.endpoints)))
    assert a == service_rules([EMPTY, shuffled]) == service_rules([EMPTY, ECHO, ECHO])
    assert service_rules([]).count("COMMIT") == 2  # empty tables still replace the old ones
    assert len(service_chain(ECHO)) <= 28


def test_service_endpoints_from_snapshot() -> None:
    svc = MeshService("echo", "default", "10.96.0.20", (ServicePort("http", 8000, "http"),), (("app", "echo"),))
    pods = [
        Workload("echo-1", "default", "10.244.0.5", (("app", "echo"),), "default", True, named_ports=(("http", 80),)),
        Workload("echo-2", "default", "10.244.0.6", (("app", "echo"),), "default", False, named_ports=(("http", 80),)),
        Workload("other", "default", "10.244.0.8", (("app", "x"),), "default", True),
    ]
    snapshot = MeshSnapshot(1, services=(svc,), workloads=tuple(pods))
    assert service_endpoints(snapshot) == [
        ServiceEndpoints("default", "echo", "10.96.0.20", 8000, (("10.244.0.5", 80),))
    ]
