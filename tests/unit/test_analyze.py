"""Apply-time analysis warnings: Istio's analyzers over the applied objects and the existing config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gossamer.controlplane.analyze import analyze
from gossamer.resources.loader import parse_documents

BOOKINFO = Path(__file__).resolve().parents[2] / "samples/bookinfo"


def parsed(text: str, name: str = "f.yaml") -> list[Any]:
    resources, issues = parse_documents(text, name)
    assert not [i for i in issues if i.level == "error"], issues
    return resources


EXISTING = parsed(
    (BOOKINFO / "bookinfo.yaml").read_text()
    + "\n---\n"
    + (BOOKINFO / "networking/destination-rule-all.yaml").read_text(),
    "base.yaml",
)


def messages(text: str) -> list[str]:
    return [str(i) for i in analyze(parsed(text, "vs.yaml"), EXISTING)]


def test_known_hosts_and_subsets_are_quiet() -> None:
    assert messages((BOOKINFO / "networking/virtual-service-all-v1.yaml").read_text()) == []


def test_unknown_subset_is_warned_with_its_line() -> None:
    out = messages("""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
        subset: v9
""")
    assert out == [
        "vs.yaml:10: warning: VirtualService/reviews: spec.http[0].route[0].destination.subset: "
        "referenced host+subset in destinationrule not found: 'reviews+v9' "
        "(IST0101 ReferencedResourceNotFound)"
    ]


def test_mirror_to_an_unknown_host_and_a_missing_gateway_are_warned() -> None:
    out = messages("""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  gateways: [no-such-gateway, mesh]
  http:
  - route:
    - destination: {host: ratings}
    mirror: {host: shadow}
""")
    assert any("spec.http[0].mirror.host: referenced mirror host not found: 'shadow'" in m for m in out), out
    assert any("vs.yaml:6:" in m and "referenced gateway not found: 'no-such-gateway'" in m for m in out), out


def test_a_subset_defined_in_the_same_apply_counts() -> None:
    text = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: details}
spec:
  host: details
  subsets: [{name: v7, labels: {version: v7}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details}
spec:
  hosts: [details]
  http:
  - route: [{destination: {host: details, subset: v7}}]
"""
    # the subset is known (no IST0101); no pod carries version: v7 (IST0173, Istio's error level)
    assert [m.split(": ")[-1] for m in messages(text)] == [
        "subset 'v7' selects no pod (requests to it get 503 UH, no healthy upstream) "
        "(IST0173 DestinationRuleSubsetNotSelectPods)"
    ]


def test_two_mesh_virtual_services_for_one_host_are_warned() -> None:
    existing_vs = parsed(
        """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-a}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
""",
        "a.yaml",
    )
    new = parsed(
        """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-b}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http: [{route: [{destination: {host: reviews, subset: v2}}]}]
""",
        "b.yaml",
    )
    out = [str(i) for i in analyze(new, [*EXISTING, *existing_vs])]
    assert any(
        "b.yaml:3: warning: VirtualService/reviews-b: metadata.name" in m
        and "IST0109" in m
        and "default/reviews-a" in m
        for m in out
    ), out


def test_the_running_mesh_is_analyzed_with_its_pods() -> None:
    from gossamer.analyze.live import analyze_mesh
    from gossamer.runtime.types import PodStatus

    stored = parsed(
        """apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: batch, namespace: shop}
spec:
  selector: {matchLabels: {app: batch}}
  template:
    metadata:
      labels: {app: batch}
      annotations: {sidecar.istio.io/inject: "false"}
    spec:
      containers: [{name: batch, image: batch:1, command: [batch]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: batch, namespace: shop}
spec:
  host: cart.shop.svc.cluster.local
  subsets: [{name: v1, labels: {app: batch}}, {name: v2, labels: {app: gone}}]
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  selector: {app: batch}
  ports: [{name: http, port: 80}]
""",
        "mesh.yaml",
    )

    def pod(name: str, sidecar: bool) -> PodStatus:
        return PodStatus(
            name=name,
            namespace="shop",
            deployment="batch",
            ip="10.244.0.9",
            labels=(("app", "batch"),),
            service_account="default",
            has_sidecar=sidecar,
            proxy_type="sidecar",
            phase="Running",
            app_ready=True,
            proxy_ready=True,
        )

    found = {
        (m.code, m.kind, m.name)
        for m in analyze_mesh([], stored, [pod("batch-1", False)], all_namespaces=True).messages
    }
    # the pod opted out of injection (its Deployment's template says so): no IST0103; subsets as pods run
    assert found == {("IST0173", "DestinationRule", "batch"), ("IST0135", "Pod", "batch-1")}  # deprecated annotation
    running = analyze_mesh([], stored, [], all_namespaces=True).messages
    assert ("IST0173", "v1") in {(m.code, m.text.split("'")[1]) for m in running}  # no pod runs at all


def test_null_fields_read_as_unset() -> None:
    """`kubectl get -o yaml` and Istio's protobuf JSON write `null` for unset fields: defaults apply;
    an unknown field is still reported, null or not."""
    resources, issues = parse_documents(
        """apiVersion: v1
kind: Service
metadata: {name: web, namespace: null, labels: null, annotations: null}
spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: null}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  gateways: null
  http: [{match: null, route: [{destination: {host: web, subset: null}}]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web}
spec: {host: web, subsets: null, trafficPolicy: null, bogus: null}
""",
        "nulls.yaml",
    )
    assert [(i.kind, i.field, i.message) for i in issues] == [("DestinationRule", "spec", "unknown field 'bogus'")]
    svc, vs = resources
    assert (svc.namespace, svc.metadata.labels, svc.spec.ports[0].target_port) == ("default", {}, None)
    assert vs.spec.gateways == [] and vs.spec.http[0].match is None
