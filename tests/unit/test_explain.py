"""`gossamer explain` logic (gossamer/debug/explain.py) on config built offline and packed like the cache."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from gossamer.cli.explain import print_explanation
from gossamer.debug.explain import ExplainError, explain, parse_url, resolve_host, sync_states, unpack
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.translate import translate_proxy
from gossamer.xds.build import build_resources
from gossamer.xds.cache import ConfigCache
from gossamer.xds.proxy_status import ProxyTypeStatus
from gossamer.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.support.offline import proxy_for, snapshot_from_yaml

BOOKINFO = Path(__file__).resolve().parents[2] / "samples/bookinfo"
NET = BOOKINFO / "networking"
V1 = "outbound|9080|v1|reviews.default.svc.cluster.local"
V2 = "outbound|9080|v2|reviews.default.svc.cluster.local"


def mesh(*files: Path, extra: str = "") -> tuple[MeshSnapshot, dict[str, Any], dict[str, str]]:
    """(snapshot, resources unpacked from the cache, cache versions) for productpage-v1's proxy."""
    text = "\n---\n".join([(BOOKINFO / "bookinfo.yaml").read_text(), *(f.read_text() for f in files), extra])
    snapshot = snapshot_from_yaml(text)
    cache = ConfigCache()
    cache.set_group("g", build_resources(translate_proxy(snapshot, proxy_for(snapshot, "productpage-v1"))))
    packed = {t: cache.get("g", t) for t in (LISTENER, ROUTE, CLUSTER, ENDPOINT)}
    return snapshot, unpack({t: r for t, (_, r) in packed.items()}), {t: v for t, (v, _) in packed.items()}


@pytest.fixture(scope="module")
def test_v2() -> tuple[MeshSnapshot, dict[str, Any], dict[str, str]]:
    return mesh(NET / "destination-rule-all.yaml", NET / "virtual-service-reviews-test-v2.yaml")


def run(m: tuple[MeshSnapshot, dict[str, Any], dict[str, str]], url: str, *headers: str, **kw: Any) -> dict[str, Any]:
    snapshot, resources, _ = m
    return explain(
        resources,
        url=url,
        headers=list(headers),
        namespace="default",
        services=snapshot.services,
        pod_ip="10.244.1.15",
        **kw,
    )


def test_jason_goes_to_v2_by_the_virtual_service_rule_with_endpoints(test_v2: Any) -> None:
    out = run(test_v2, "http://reviews:9080/reviews/0", "end-user: jason")
    reviews_vip = next(s.vip for s in test_v2[0].services if s.name == "reviews")
    assert out["destination"]["address"] == reviews_vip and out["destination"]["port"] == 9080
    assert "Service default/reviews" in out["destination"]["resolution"]
    assert out["listener"]["name"] == "0.0.0.0_9080"
    assert "original destination port 9080" in out["listener"]["why"]
    assert out["routeConfig"] == "9080"
    assert out["virtualHost"]["name"] == "reviews.default.svc.cluster.local:9080"
    assert "'reviews:9080'" in out["virtualHost"]["why"]
    assert out["route"]["source"] == "default/reviews#http[0]"
    assert out["notMatched"] == []
    [cluster] = out["clusters"]
    assert cluster["name"] == V2 and cluster["weight"] == 100 and cluster["type"] == "EDS"
    reviews_v2 = [w.ip for w in test_v2[0].workloads if w.deployment == "reviews-v2"]
    assert [e["address"] for e in cluster["endpoints"]] == [f"{ip}:9080" for ip in reviews_v2]
    assert out["status"] is None and out["verdict"] == f"to {V2}"


def test_everyone_else_is_told_why_the_jason_rule_did_not_match(test_v2: Any) -> None:
    out = run(test_v2, "http://reviews:9080/reviews/0", "end-user: mallory")
    [skipped] = out["notMatched"]
    assert skipped["source"] == "default/reviews#http[0]"
    assert "end-user" in skipped["why"] and "'mallory'" in skipped["why"]
    assert out["route"]["source"] == "default/reviews#http[1]"
    assert [c["name"] for c in out["clusters"]] == [V1]


def test_unknown_host_by_ip_passes_through_to_the_original_destination(test_v2: Any) -> None:
    out = run(test_v2, "http://10.244.9.9:9080/", "Host: example.com")
    assert out["request"]["authority"] == "example.com"
    assert out["destination"]["address"] == "10.244.9.9"
    assert out["virtualHost"]["name"] == "allow_any"
    assert out["route"]["source"] == "default"
    [cluster] = out["clusters"]
    assert cluster["name"] == "PassthroughCluster" and cluster["type"] == "ORIGINAL_DST"
    assert cluster["endpoints"][0]["address"] == "10.244.9.9:9080"
    assert "PassthroughCluster" in out["verdict"]


def test_a_name_that_does_not_resolve_is_explained_not_simulated(test_v2: Any) -> None:
    out = run(test_v2, "http://example.com/")
    assert out["destination"]["address"] is None
    assert "does not resolve inside the pod" in out["destination"]["resolution"]
    assert "listener" not in out


def test_names_resolve_like_the_pods_hosts_file(test_v2: Any) -> None:
    services = test_v2[0].services
    vip = next(s.vip for s in services if s.name == "reviews")
    for name in ("reviews", "reviews.default", "reviews.default.svc", "reviews.default.svc.cluster.local"):
        assert resolve_host(name, "default", services)[0] == vip, name
    assert resolve_host("reviews", "other", services)[0] is None  # short names: own namespace only
    assert resolve_host("reviews.default", "other", services)[0] == vip
    assert resolve_host("istio-ingressgateway.istio-system", "default", services)[0] is not None


def test_registry_only_blocks_unknown_hosts_with_502() -> None:
    sidecar = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"""
    out = run(mesh(extra=sidecar), "http://10.244.9.9:9080/")
    assert out["status"] == 502
    assert "REGISTRY_ONLY" in out["verdict"]


def test_inbound_uses_the_virtual_inbound_listener(test_v2: Any) -> None:
    out = run(test_v2, "http://productpage:9080/productpage", inbound=True)
    assert out["destination"]["address"] == "10.244.1.15"
    assert out["listener"]["name"] == "virtualInbound"
    assert [c["name"] for c in out["clusters"]] == ["inbound|9080||"]


def test_stale_or_nacked_types_warn_that_envoy_runs_something_else(test_v2: Any) -> None:
    _, _, versions = test_v2
    types = {t: ProxyTypeStatus(t, sent_version=v, acked_version=v) for t, v in versions.items()}
    types[ROUTE] = ProxyTypeStatus(ROUTE, sent_version=versions[ROUTE], acked_version="0")
    synced = {t: "SYNCED" for t in versions} | {ROUTE: "STALE"}
    out = run(test_v2, "http://reviews:9080/reviews/0", sync=sync_states(types, synced, versions))
    assert out["sync"]["lds"]["state"] == "SYNCED" and out["sync"]["rds"]["state"] == "STALE"
    [warning] = out["warnings"]
    assert warning.startswith("RDS is STALE") and "not yet what Envoy runs" in warning


def test_url_parsing() -> None:
    assert parse_url("http://reviews:9080/reviews/0?x=1").authority == "reviews:9080"
    t = parse_url("http://reviews/")
    assert (t.port, t.authority, t.path) == (80, "reviews", "/")
    assert parse_url("reviews:9080").port == 9080
    with pytest.raises(ExplainError):
        parse_url("ftp://reviews/")


def test_cli_prints_each_step_on_one_line(test_v2: Any) -> None:
    out = run(test_v2, "http://reviews:9080/reviews/0", "end-user: mallory")
    out.update(pod="productpage-v1-0", proxy="sidecar~10.244.1.15~productpage-v1-0.default~default.svc.cluster.local")
    buf = io.StringIO()
    print_explanation(Console(file=buf, width=60, color_system=None), out)
    text = buf.getvalue()
    assert f"cluster      {V1} (weight 100, EDS)" in text.splitlines()
    assert "from default/reviews#http[0]" in text and "from default/reviews#http[1]" in text
    assert "endpoint" in text and "result" in text
