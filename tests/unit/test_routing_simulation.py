"""Simulation tests: where a request goes, given Istio YAML, through the xDS we build.

They assert routing decisions (listener -> route -> cluster), not proto shapes,
so they survive refactors of the translator and builders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gossamer.debug.simulate import Request, simulate
from gossamer.translate import translate_proxy
from gossamer.xds.build import build_resources
from tests.support.offline import gateway_proxy, proxy_for, snapshot_from_yaml

BOOKINFO = Path(__file__).resolve().parents[2] / "samples/bookinfo"
NET = BOOKINFO / "networking"


def resources(*files: Path, deployment: str = "productpage-v1", extra: str = "") -> dict[str, Any]:
    text = "\n---\n".join([(BOOKINFO / "bookinfo.yaml").read_text(), *(f.read_text() for f in files), extra])
    snapshot = snapshot_from_yaml(text)
    proxy = gateway_proxy(snapshot) if deployment == "gateway" else proxy_for(snapshot, deployment)
    return build_resources(translate_proxy(snapshot, proxy))


def reviews(headers: dict[str, str] | None = None, host: str = "reviews:9080") -> Request:
    return Request(host=host, path="/reviews/0", headers=headers or {}, port=9080, address="10.96.0.13")


def test_no_virtual_service_balances_over_the_whole_service() -> None:
    result = simulate(resources(), reviews())
    assert result.cluster == "outbound|9080||reviews.default.svc.cluster.local"
    assert result.listener == "0.0.0.0_9080"


@pytest.mark.parametrize(
    "host",
    [
        "reviews",
        "reviews:9080",
        "reviews.default",
        "reviews.default.svc.cluster.local",
        "reviews.default.svc.cluster.local:9080",
    ],
)
def test_every_name_of_the_service_reaches_it(host: str) -> None:
    assert simulate(resources(), reviews(host=host)).cluster == "outbound|9080||reviews.default.svc.cluster.local"


def test_unknown_host_passes_through_allow_any() -> None:
    result = simulate(resources(), Request(host="example.com", port=9080, address="10.244.9.9"))
    assert result.cluster == "PassthroughCluster"


def test_all_v1() -> None:
    res = resources(NET / "destination-rule-all.yaml", NET / "virtual-service-all-v1.yaml")
    assert simulate(res, reviews()).cluster == "outbound|9080|v1|reviews.default.svc.cluster.local"
    ratings = Request(host="ratings:9080", path="/ratings/0", port=9080)
    assert simulate(res, ratings).cluster == "outbound|9080|v1|ratings.default.svc.cluster.local"


def test_jason_reaches_v2_everyone_else_v1() -> None:
    res = resources(NET / "destination-rule-all.yaml", NET / "virtual-service-reviews-test-v2.yaml")
    assert simulate(res, reviews({"end-user": "jason"})).cluster == "outbound|9080|v2|reviews.default.svc.cluster.local"
    assert simulate(res, reviews({"end-user": "Jason"})).cluster == "outbound|9080|v1|reviews.default.svc.cluster.local"
    assert simulate(res, reviews()).cluster == "outbound|9080|v1|reviews.default.svc.cluster.local"


def test_fifty_fifty_split_between_v1_and_v3() -> None:
    res = resources(NET / "destination-rule-all.yaml", NET / "virtual-service-reviews-50-v3.yaml")
    assert dict(simulate(res, reviews()).clusters) == {
        "outbound|9080|v1|reviews.default.svc.cluster.local": 50,
        "outbound|9080|v3|reviews.default.svc.cluster.local": 50,
    }


def test_source_labels_limit_a_rule_to_matching_clients() -> None:
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{sourceLabels: {app: reviews, version: v2}}]
    route: [{destination: {host: ratings, subset: v2}}]
  - route: [{destination: {host: ratings, subset: v1}}]
"""
    ratings = Request(host="ratings:9080", path="/ratings/0", port=9080)
    from_v2 = resources(NET / "destination-rule-all.yaml", deployment="reviews-v2", extra=vs)
    from_v3 = resources(NET / "destination-rule-all.yaml", deployment="reviews-v3", extra=vs)
    assert simulate(from_v2, ratings).cluster == "outbound|9080|v2|ratings.default.svc.cluster.local"
    assert simulate(from_v3, ratings).cluster == "outbound|9080|v1|ratings.default.svc.cluster.local"


def test_gateway_routes_bookinfo_paths_and_404s_others() -> None:
    res = resources(BOOKINFO / "bookinfo-gateway.yaml", deployment="gateway")
    page = Request(host="127.0.0.1:8080", path="/productpage", port=8080)
    assert simulate(res, page).cluster == "outbound|9080||productpage.default.svc.cluster.local"
    assert simulate(res, Request(host="x", path="/api/v1/products/0", port=8080)).cluster is not None
    assert simulate(res, Request(host="x", path="/admin", port=8080)).status == 404


def test_gateway_host_binding_and_unknown_host_404() -> None:
    gw = (BOOKINFO / "bookinfo-gateway.yaml").read_text().replace('"*"', '"bookinfo.example.com"')
    snapshot_text = (BOOKINFO / "bookinfo.yaml").read_text() + "\n---\n" + gw
    snapshot = snapshot_from_yaml(snapshot_text)
    res = build_resources(translate_proxy(snapshot, gateway_proxy(snapshot)))
    ok = Request(host="bookinfo.example.com", path="/productpage", port=8080)
    assert simulate(res, ok).cluster == "outbound|9080||productpage.default.svc.cluster.local"
    assert simulate(res, Request(host="other.example.com", path="/productpage", port=8080)).status == 404


def test_mesh_virtual_service_does_not_apply_at_the_gateway_and_vice_versa() -> None:
    sidecar = resources(BOOKINFO / "bookinfo-gateway.yaml")
    # bookinfo's VirtualService is bound to the gateway only: the mesh keeps default routing.
    page = Request(host="productpage:9080", path="/admin", port=9080)
    assert simulate(sidecar, page).cluster == "outbound|9080||productpage.default.svc.cluster.local"


def test_inbound_reaches_the_local_app() -> None:
    res = resources(deployment="reviews-v1")
    result = simulate(res, Request(host="reviews:9080", path="/reviews/0", port=9080, inbound=True))
    assert result.cluster == "inbound|9080||"


DELEGATION = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-root}
spec:
  hosts: [reviews]
  http:
  - name: api
    match: [{uri: {prefix: /reviews}}]
    delegate: {name: reviews-delegate, namespace: team}
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-delegate, namespace: team}
spec:
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
  - name: outside-root
    match: [{uri: {prefix: /other}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v3}}]
  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: v3}}]
"""


def test_delegate_rules_replace_the_root_rule_with_the_root_match_merged_in() -> None:
    res = resources(NET / "destination-rule-all.yaml", extra=DELEGATION)
    v = "outbound|9080|{}|reviews.default.svc.cluster.local"
    assert simulate(res, reviews({"end-user": "jason"})).cluster == v.format("v2")
    assert simulate(res, reviews()).cluster == v.format("v3")  # the delegate's catch-all, within /reviews
    other = Request(host="reviews:9080", path="/other", port=9080)
    # /other is outside the root's /reviews prefix: the conflicting delegate rule is dropped
    assert simulate(res, other).cluster == v.format("v1")
    assert simulate(res, Request(host="reviews:9080", path="/health", port=9080)).cluster == v.format("v1")
