"""gossamer/mesh.py: the one home of Istio's names (SPIFFE ids, cluster names, host matching)."""

from __future__ import annotations

import pytest

from gossamer.mesh import (
    ClusterName,
    SpiffeId,
    host_matches,
    hosts_intersect,
    inbound_cluster_name,
    outbound_cluster_name,
    parse_cluster_name,
    parse_spiffe_id,
    principal,
    service_fqdn,
    spiffe_id,
    spiffe_prefix,
)


def test_spiffe_ids_round_trip() -> None:
    uri = spiffe_id("default", "bookinfo-reviews")
    assert uri == "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
    assert uri.startswith(spiffe_prefix())
    assert parse_spiffe_id(uri) == SpiffeId("cluster.local", "default", "bookinfo-reviews")
    assert spiffe_id("a", "b", "example.org") == "spiffe://example.org/ns/a/sa/b"
    assert principal("a", "b") == "cluster.local/ns/a/sa/b"


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "cluster.local/ns/a/sa/b",
        "spiffe:///ns/a/sa/b",
        "spiffe://td/ns/a",
        "spiffe://td/ns//sa/b",
        "spiffe://td/x/a/sa/b",
    ],
)
def test_not_spiffe_ids(uri: str) -> None:
    assert parse_spiffe_id(uri) is None


def test_cluster_names_round_trip() -> None:
    host = service_fqdn("reviews", "default")
    assert outbound_cluster_name(host, 9080, "v2") == "outbound|9080|v2|reviews.default.svc.cluster.local"
    assert parse_cluster_name(outbound_cluster_name(host, 9080, "v2")) == ClusterName("outbound", 9080, "v2", host)
    assert parse_cluster_name(inbound_cluster_name(8080)) == ClusterName("inbound", 8080, "", "")
    assert parse_cluster_name("outbound|x||h") == ClusterName("outbound", 0, "", "h")
    assert parse_cluster_name("PassthroughCluster") is None
    assert parse_cluster_name("outbound|80|h") is None


@pytest.mark.parametrize(
    ("pattern", "host", "covers"),
    [
        ("*", "a.foo.com", True),
        ("*", "*.foo.com", True),
        ("a.foo.com", "a.foo.com", True),
        ("A.Foo.com", "a.foo.COM", True),  # DNS names are case-insensitive
        ("*.foo.com", "a.foo.com", True),
        ("*.FOO.com", "a.foo.com", True),
        ("*.foo.com", "*.b.foo.com", True),
        ("*.foo.com", "foo.com", False),
        ("*.b.foo.com", "*.foo.com", False),
        ("a.foo.com", "*.foo.com", False),
        ("a.foo.com", "b.foo.com", False),
    ],
)
def test_host_matches(pattern: str, host: str, covers: bool) -> None:
    assert host_matches(pattern, host) is covers
    assert hosts_intersect(pattern, host) is (covers or host_matches(host, pattern))


def test_node_ids_round_trip() -> None:
    from gossamer.mesh import NodeId, node_id, parse_node_id

    value = node_id("sidecar", "10.244.0.5", "reviews-v1-x", "default")
    assert value == "sidecar~10.244.0.5~reviews-v1-x.default~default.svc.cluster.local"
    assert parse_node_id(value) == NodeId("sidecar", "10.244.0.5", "reviews-v1-x", "default")
    assert parse_node_id("router~1.2.3.4") == NodeId("router", "1.2.3.4", "", "")
