"""Bookinfo end to end: real Envoy sidecars in real network namespaces, real HTTP.

Every request enters at the ingress gateway on 127.0.0.1 and flows
gateway Envoy -> productpage sidecar -> productpage -> sidecars -> reviews/ratings.
"""

from __future__ import annotations

import collections
import json
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.mesh import ACCESS_LOGGING, REPO, Mesh, leftovers, reviews_version, wait_until

pytestmark = pytest.mark.e2e
NETWORKING = REPO / "samples/bookinfo/networking"


def versions(mesh: Mesh, n: int, headers: dict[str, str] | None = None) -> collections.Counter[str | None]:
    seen: collections.Counter[str | None] = collections.Counter()
    for _ in range(n):
        resp = mesh.get("/productpage", headers)
        assert resp.status == 200, resp.body[:500]
        seen[reviews_version(resp.body)] += 1
    return seen


def login(mesh: Mesh, user: str) -> dict[str, str]:
    resp = mesh.get("/login", data=f"username={user}&passwd=password".encode())
    assert resp.status == 302, resp
    cookie = resp.headers["set-cookie"].split(";", 1)[0]
    return {"Cookie": cookie}


@pytest.fixture
def clean_routing(bookinfo: Mesh) -> Iterator[Mesh]:
    yield bookinfo
    for f in (
        "virtual-service-all-v1.yaml",
        "virtual-service-reviews-test-v2.yaml",
        "virtual-service-reviews-50-v3.yaml",
        "destination-rule-all.yaml",
    ):
        bookinfo.cli("delete", "-f", str(NETWORKING / f), "--wait", check=False)


def test_productpage_through_the_ingress_gateway(bookinfo: Mesh) -> None:
    resp = bookinfo.get("/productpage")
    assert resp.status == 200
    assert "The Comedy of Errors" in resp.body
    assert "William Shakespeare" in resp.body  # details, through two sidecars
    assert reviews_version(resp.body) in ("v1", "v2", "v3")
    assert resp.headers["server"] == "istio-envoy"  # as Istio's connection managers say


def test_ratings_stars_are_istios_markup(bookinfo: Mesh) -> None:
    """Istio's productpage markup, which Istio's own tests grep: glyphicon spans, red for v3."""
    pages: dict[str | None, str] = {}
    for _ in range(60):  # requests spread over every reviews version
        page = bookinfo.get("/productpage").body
        pages.setdefault(reviews_version(page), page)
        if {"v1", "v2", "v3"} <= set(pages):
            break
    assert {"v1", "v2", "v3"} <= set(pages), set(pages)
    assert "glyphicon" not in pages["v1"]
    for version, color in (("v2", "black"), ("v3", "red")):
        page = pages[version]
        assert f'<font color="{color}">' in page
        assert page.count('<span class="glyphicon glyphicon-star"></span>') == 9  # 5 + 4
        assert page.count("glyphicon-star") == 10  # what Istio's tests count


def test_without_a_virtual_service_requests_spread_over_every_reviews_version(bookinfo: Mesh) -> None:
    # Istio's default load balancer (LEAST_REQUEST; round robin among equally idle hosts).
    seen = versions(bookinfo, 60)
    assert set(seen) == {"v1", "v2", "v3"}, seen
    assert min(seen.values()) >= 8, seen  # no version starves (binomial tail < 0.1%)


def test_all_v1_then_jason_to_v2_then_50_50_without_restarts(clean_routing: Mesh) -> None:
    mesh = clean_routing
    pods_before = {p["name"]: p["restarts"] for p in mesh.status()["pods"]}

    mesh.apply(NETWORKING / "destination-rule-all.yaml")
    mesh.apply(NETWORKING / "virtual-service-all-v1.yaml")
    assert versions(mesh, 20) == {"v1": 20}

    mesh.apply(NETWORKING / "virtual-service-reviews-test-v2.yaml")
    jason = login(mesh, "jason")
    page = mesh.get("/productpage", jason).body
    assert "jason" in page
    assert versions(mesh, 10, jason) == {"v2": 10}
    assert '<font color="black"' in mesh.get("/productpage", jason).body
    assert versions(mesh, 10) == {"v1": 10}
    assert versions(mesh, 5, login(mesh, "mallory")) == {"v1": 5}

    mesh.apply(NETWORKING / "virtual-service-reviews-50-v3.yaml")
    seen = versions(mesh, 100)
    assert set(seen) == {"v1", "v3"}, seen
    assert 35 <= seen["v1"] <= 65 and 35 <= seen["v3"] <= 65, seen

    pods_after = {p["name"]: p["restarts"] for p in mesh.status()["pods"]}
    assert pods_after == pods_before, "a routing change must not restart or replace any pod"
    # The sidecars got those changes over VHDS: their route table 9080's virtual hosts, ACKed.
    sidecars = [p for p in mesh.status()["proxies"] if p["nodeId"].startswith("sidecar~")]
    assert sidecars and all(p["types"]["vhds 9080"]["state"] == "SYNCED" for p in sidecars), sidecars
    assert "VHDS" in mesh.cli("status").stdout


def test_a_change_takes_effect_within_a_second(clean_routing: Mesh) -> None:
    mesh = clean_routing
    mesh.apply(NETWORKING / "destination-rule-all.yaml")
    started = time.monotonic()
    mesh.apply(NETWORKING / "virtual-service-reviews-v3.yaml", wait=False)
    assert wait_until(lambda: versions(mesh, 3) == {"v3": 3}, timeout=1.5, interval=0.02)
    assert time.monotonic() - started < 3
    mesh.delete(NETWORKING / "virtual-service-reviews-v3.yaml")


def test_gateway_routes_by_host_and_answers_404_for_unknown_hosts(bookinfo: Mesh, tmp_path: Path) -> None:
    original = (REPO / "samples/bookinfo/bookinfo-gateway.yaml").read_text()
    scoped = tmp_path / "bookinfo-gateway.yaml"
    scoped.write_text(original.replace('"*"', '"bookinfo.example.com"'))
    assert "bookinfo.example.com" in scoped.read_text()
    try:
        bookinfo.apply(scoped)
        assert bookinfo.get("/productpage", {"Host": "bookinfo.example.com"}).status == 200
        assert bookinfo.get("/productpage", {"Host": "unknown.example.com"}).status == 404
        # a server on port 80 is the same gateway port as 8080 (the Service maps 80 -> 8080)
        port80 = tmp_path / "port80.yaml"
        port80.write_text(
            original.replace("number: 8080", "number: 80")
            .replace('"*"', '"eighty.example.com"')
            .replace("name: bookinfo-gateway", "name: gw80")
            .replace("- bookinfo-gateway", "- gw80")
            .replace("name: bookinfo\n", "name: bookinfo80\n")
        )
        bookinfo.apply(port80)
        assert bookinfo.get("/productpage", {"Host": "eighty.example.com"}).status == 200
        bookinfo.delete(port80)
    finally:
        bookinfo.apply(REPO / "samples/bookinfo/bookinfo-gateway.yaml")
    assert bookinfo.get("/productpage", {"Host": "unknown.example.com"}).status == 200


def test_invalid_yaml_is_rejected_with_file_and_line_and_changes_nothing(bookinfo: Mesh, tmp_path: Path) -> None:
    before = bookinfo.cli("get", "virtualservices", "-o", "json").stdout
    bad = tmp_path / "bad-weights.yaml"
    bad.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n"
        "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n"
        "      weight: 50\n    - destination: {host: reviews, subset: v3}\n      weight: 40\n"
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: ratings\n"
        "spec:\n  hosts: [ratings]\n  http:\n  - route:\n    - destination: {host: ratings}\n"
    )
    proc = bookinfo.cli("apply", "-f", str(bad), check=False)
    assert proc.returncode != 0
    assert re.search(rf"{re.escape(str(bad))}:\d+: VirtualService/reviews: spec\.http\[0\]\.route.*100", proc.stderr), (
        proc.stderr
    )
    assert bookinfo.cli("get", "virtualservices", "-o", "json").stdout == before  # all or nothing

    unknown = tmp_path / "unknown-field.yaml"
    unknown.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: x\n"
        "spec:\n  hosts: [reviews]\n  htp: []\n"
    )
    proc = bookinfo.cli("apply", "-f", str(unknown), check=False)
    assert proc.returncode != 0
    assert f"{unknown}:7: VirtualService/x: spec: unknown field 'htp'" in proc.stderr, proc.stderr


def test_a_config_envoy_rejects_is_shown_as_nacked_and_traffic_keeps_flowing(bookinfo: Mesh, tmp_path: Path) -> None:
    # Apply refuses what Envoy's published rules reject; a Lua script that does not compile is only found
    # by Envoy itself when it loads the filter: it NACKs the listener and keeps serving the old one.
    ef = tmp_path / "broken-lua.yaml"
    ef.write_text("""\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: details-broken-lua}
spec:
  workloadSelector: {labels: {app: details}}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {name: envoy.filters.http.router}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.lua
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          defaultSourceCode: {inlineString: "function envoy_on_request(h) this is not lua"}
""")
    bookinfo.apply(ef, wait=False)
    try:

        def nacked() -> list[str]:
            return [
                t["error"] for p in bookinfo.status()["proxies"] for t in p["types"].values() if t["state"] == "NACKED"
            ]

        assert wait_until(lambda: bool(nacked()), timeout=10)
        assert any("lua" in e.lower() for e in nacked()), nacked()
        text = bookinfo.cli("status").stdout
        assert "NACK" in text
        assert bookinfo.get("/productpage").status == 200
    finally:
        bookinfo.delete(ef)
    assert wait_until(
        lambda: not [1 for p in bookinfo.status()["proxies"] for t in p["types"].values() if t["state"] == "NACKED"],
        timeout=10,
    )


def test_exec_curl_inside_the_mesh_and_proxy_config(bookinfo: Mesh) -> None:
    def sidecar_log() -> str:
        return bookinfo.cli("logs", "deploy/productpage-v1", "-c", "istio-proxy").stdout

    # No access log by default (Istio's default profile); turned on the Istio way, a mesh-wide Telemetry.
    bookinfo.exec("deploy/productpage-v1", "curl", "-s", "http://details:9080/details/0")
    time.sleep(2)  # Envoy flushes its log every second
    assert "outbound|9080||details.default.svc.cluster.local" not in sidecar_log()
    bookinfo.apply(ACCESS_LOGGING)
    try:
        out = bookinfo.exec("deploy/productpage-v1", "curl", "-s", "http://details:9080/details/0").stdout
        assert '"author": "William Shakespeare"' in out or '"author":"William Shakespeare"' in out
        clusters = bookinfo.cli("proxy-config", "clusters", "deploy/productpage-v1").stdout
        assert "outbound|9080||reviews.default.svc.cluster.local" in clusters
        assert wait_until(
            lambda: "outbound|9080||details.default.svc.cluster.local" in sidecar_log(), timeout=5, interval=0.5
        ), sidecar_log()[-2000:]
    finally:
        bookinfo.delete(ACCESS_LOGGING)


def test_pod_and_service_ranges_never_route_off_the_machine(bookinfo: Mesh) -> None:
    vip = subprocess.run(["ip", "route", "get", "10.96.0.12"], capture_output=True, text=True)
    assert vip.returncode != 0 and "no route to host" in vip.stderr.lower(), vip  # the unreachable route
    pod_routes = bookinfo.exec("deploy/productpage-v1", "ip", "route").stdout
    assert "default" not in pod_routes, pod_routes
    assert "10.96.0.0/16" in pod_routes and "10.244.0.0/16" in pod_routes, pod_routes


def test_explain_names_the_rule_the_cluster_and_its_endpoints(bookinfo: Mesh) -> None:
    files = [NETWORKING / "destination-rule-all.yaml", NETWORKING / "virtual-service-reviews-test-v2.yaml"]
    bookinfo.apply(*files)
    try:
        out = bookinfo.cli(
            "explain", "deploy/productpage-v1", "http://reviews:9080/reviews/0", "-H", "end-user: jason"
        ).stdout
        assert "outbound|9080|v2|reviews.default.svc.cluster.local" in out, out
        assert "default/reviews#http[0]" in out, out
        assert re.search(r"endpoint\s+10\.244\.\d+\.\d+:9080", out), out
        assert "LDS SYNCED" in out, out
        body = json.loads(
            bookinfo.cli("explain", "deploy/productpage-v1", "http://reviews:9080/reviews/0", "-o", "json").stdout
        )
        assert [c["name"] for c in body["clusters"]] == ["outbound|9080|v1|reviews.default.svc.cluster.local"]
        assert body["notMatched"][0]["source"] == "default/reviews#http[0]"
        assert body["notMatched"][0]["operation"] == "reviews.default.svc.cluster.local:9080/*"
    finally:
        bookinfo.delete(*reversed(files))


def test_describe_and_proxy_config_secret(bookinfo: Mesh) -> None:
    dr = NETWORKING / "destination-rule-all.yaml"
    bookinfo.apply(dr)
    try:
        out = bookinfo.cli("describe", "deploy/reviews-v2").stdout
        assert "spiffe://cluster.local/ns/default/sa/bookinfo-reviews" in out, out
        assert "Service: reviews (reviews.default.svc.cluster.local)" in out, out
        assert "DestinationRule: default/reviews" in out, out
        assert re.search(r"Matching subsets: v2\b", out), out
        body = json.loads(bookinfo.cli("describe", "deploy/reviews-v2", "-o", "json").stdout)
        assert body["pod"]["ready"] and body["pod"]["sidecar"]
        assert body["services"][0]["destinationRule"]["podSubsets"] == ["v2"]
        assert body["peerAuthentication"]["mode"] == "PERMISSIVE"
    finally:
        bookinfo.delete(dr)
    out = bookinfo.cli("proxy-config", "secret", "deploy/reviews-v2").stdout
    assert "spiffe://cluster.local/ns/default/sa/bookinfo-reviews" in out, out
    assert "PRIVATE KEY" not in out
    secret = json.loads(bookinfo.cli("proxy-config", "secret", "deploy/reviews-v2", "-o", "json").stdout)
    cert = secret["certificate"]
    assert cert["identity"] == "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
    assert datetime.fromisoformat(cert["notAfter"]) > datetime.now(UTC)
    assert any(s["ackedVersion"] for s in secret["streams"]), secret["streams"]


def test_zz_down_leaves_nothing_behind(bookinfo: Mesh) -> None:
    bookinfo.cli("down")
    assert leftovers() == []
    assert not bookinfo.cli("status", check=False).returncode == 0
