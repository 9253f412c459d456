"""The built-in egress gateway (`up --egress-gateway`) and Istio's egress gateway task, offline."""

from __future__ import annotations

import yaml

from gossamer.controlplane.kubernetes import builtin_documents, egress_gateway_documents
from gossamer.ir.types import ProxyConfig
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.translate import translate_proxy
from tests.support.offline import gateway_proxy, proxy_for, snapshot_from_yaml

TASK = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: curl}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: curl}
spec:
  selector: {matchLabels: {app: curl}}
  template:
    metadata: {labels: {app: curl}}
    spec:
      serviceAccountName: curl
      containers: [{name: curl, image: curlimages/curl, command: [sleep, infinity]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external}
spec:
  hosts: [external.example.com]
  location: MESH_EXTERNAL
  ports: [{number: 80, name: http-port, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.244.0.1, ports: {http-port: 9999}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [external.example.com]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: egressgateway-for-external}
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets: [{name: external}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: direct-external-through-egress-gateway}
spec:
  hosts: [external.example.com]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{gateways: [mesh], port: 80}]
    route:
    - destination: {host: istio-egressgateway.istio-system.svc.cluster.local, subset: external, port: {number: 80}}
  - match: [{gateways: [istio-egressgateway], port: 80}]
    route:
    - destination: {host: external.example.com, port: {number: 80}}
"""

EGRESS_CLUSTER = "outbound|80|external|istio-egressgateway.istio-system.svc.cluster.local"


def _snapshot() -> MeshSnapshot:
    return snapshot_from_yaml(yaml.safe_dump_all(egress_gateway_documents()) + "---\n" + TASK)


def _route_clusters(config: ProxyConfig, host: str) -> set[str]:
    return {
        d.cluster
        for t in config.route_tables
        for vh in t.virtual_hosts
        if host in vh.domains
        for r in vh.routes
        for d in r.destinations
    }


def test_egress_gateway_is_off_by_default() -> None:
    names = {(d["kind"], d["metadata"]["name"]) for d in builtin_documents()}
    assert ("Deployment", "istio-ingressgateway") in names
    assert ("Deployment", "istio-egressgateway") not in names
    with_egress = {(d["kind"], d["metadata"]["name"]) for d in builtin_documents(egress_gateway=True)}
    assert {("Deployment", "istio-egressgateway"), ("Service", "istio-egressgateway")} <= with_egress


def test_mesh_traffic_goes_to_the_egress_gateway_and_on_to_the_external_host() -> None:
    snapshot = _snapshot()
    sidecar = translate_proxy(snapshot, proxy_for(snapshot, "curl"))
    assert _route_clusters(sidecar, "external.example.com") == {EGRESS_CLUSTER}
    # The gateway pod carries no tlsMode label (as Istio's): auto mTLS sends it plaintext.
    egress_endpoints = {e.cluster: e.endpoints for e in sidecar.endpoints}[EGRESS_CLUSTER]
    assert [(e.port, e.tls_mode) for e in egress_endpoints] == [(8080, "")]

    egress = translate_proxy(snapshot, proxy_for(snapshot, "istio-egressgateway", "istio-system"))
    assert _route_clusters(egress, "external.example.com") == {"outbound|80||external.example.com"}


def test_gateways_bind_in_their_pod_only() -> None:
    """The gateways' Envoys are unprivileged: both listen in their pod, on the container port; the runtime
    forwards the host's ports to the ingress gateway's (runtime/host_ports.py)."""
    snapshot = _snapshot()
    egress = translate_proxy(snapshot, proxy_for(snapshot, "istio-egressgateway", "istio-system"))
    assert [(x.address, x.port) for x in egress.listeners] == [("0.0.0.0", 8080)]
    ingress_gw = snapshot_from_yaml(TASK.replace("{istio: egressgateway}", "{istio: ingressgateway}"))
    ingress = translate_proxy(ingress_gw, gateway_proxy(ingress_gw))
    assert [(x.address, x.port) for x in ingress.listeners] == [("0.0.0.0", 8080)]
