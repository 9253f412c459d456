"""The Envoy-rules check (`gossamer.xds.rules`) agrees with Envoy: what it flags in a built config,
`envoy --mode validate` rejects, and the golden cases (which Envoy accepts) have nothing flagged."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from gossamer.xds.rules import violations
from gossamer.xds.types import CLUSTER, LISTENER, ROUTE
from tests.e2e.envoy_helper import envoy_binary
from tests.golden.test_golden import CASES, build_case
from tests.unit.test_envoy_accepts import static_bootstrap

ENVOY = envoy_binary()
Resources = dict[str, dict[str, Message]]


def _route(res: Resources) -> route_pb2.Route:
    """The first route that forwards (has a route action)."""
    table = res[ROUTE]["9080"]
    assert isinstance(table, route_pb2.RouteConfiguration)
    return next(r for vh in table.virtual_hosts for r in vh.routes if r.HasField("route"))


def _cluster(res: Resources) -> cluster_pb2.Cluster:
    cluster = res[CLUSTER]["outbound|9080||reviews.default.svc.cluster.local"]
    assert isinstance(cluster, cluster_pb2.Cluster)
    return cluster


def _header_newline(res: Resources) -> None:
    h = _route(res).request_headers_to_add.add().header
    h.key, h.value = "x-a\n", "v"


def _empty_header_value_name(res: Resources) -> None:
    _route(res).request_headers_to_remove.append("")


def _long_header_value(res: Resources) -> None:
    h = _route(res).response_headers_to_add.add().header
    h.key, h.value = "x-a", "v" * 17000


def _backreference(res: Resources) -> None:
    m = _route(res).match.headers.add(name="x-a")
    m.string_match.safe_regex.regex = "(a)\\1"


def _repeat_over_1000(res: Resources) -> None:
    _route(res).match.safe_regex.regex = "/a{1001}"


def _fault_without_delay(res: Resources) -> None:
    broken = fault_pb2.HTTPFault()
    broken.delay.percentage.numerator = 10
    _route(res).typed_per_filter_config["envoy.filters.http.fault"].Pack(broken)


def _ring_too_big(res: Resources) -> None:
    c = _cluster(res)
    c.lb_policy = cluster_pb2.Cluster.RING_HASH
    c.ring_hash_lb_config.minimum_ring_size.value = 10_000_000


def _negative_timeout(res: Resources) -> None:
    _cluster(res).connect_timeout.seconds = -1


def _duplicate_filter_chain(res: Resources) -> None:
    listener = next(
        m for m in res[LISTENER].values() if isinstance(m, listener_pb2.Listener) and len(m.filter_chains) == 1
    )
    listener.filter_chains.add().CopyFrom(listener.filter_chains[0])


BREAKAGES: list[Callable[[Resources], None]] = [
    _header_newline,
    _empty_header_value_name,
    _long_header_value,
    _backreference,
    _repeat_over_1000,
    _fault_without_delay,
    _ring_too_big,
    _negative_timeout,
    _duplicate_filter_chain,
]


def _http_policies() -> Resources:
    """A private copy (builders share protos between calls: a test must not break the next one's)."""
    built = build_case(next(c for c in CASES if c.name == "http-policies"))
    out: Resources = {}
    for type_url, by_name in built.items():
        out[type_url] = {}
        for name, msg in by_name.items():
            copy = type(msg)()
            copy.CopyFrom(msg)
            out[type_url][name] = copy
    return out


def test_golden_cases_have_no_violations() -> None:
    for case in CASES:
        assert violations(build_case(case)) == [], case.name


@pytest.mark.parametrize("breakage", BREAKAGES, ids=[b.__name__.strip("_") for b in BREAKAGES])
def test_a_violation_found_is_one_envoy_rejects(breakage: Callable[[Resources], None], tmp_path: Path) -> None:
    res = _http_policies()
    breakage(res)
    found = violations(res)
    assert found, "the rules check found nothing"
    if ENVOY is None:
        pytest.skip("no envoy binary")
    # with RE2's program-size limit as Istio's (and our agent's) bootstrap sets it
    assert not _envoy_validates(res, tmp_path, {"re2.max_program_size.error_level": 32768}), (
        f"Envoy accepted what the check flagged: {found[0]}"
    )


def test_durations_beyond_protobufs_range_are_flagged() -> None:
    res = _http_policies()
    _route(res).route.timeout.seconds = 315_576_000_001  # 2562048h: Envoy's JSON cannot even say it
    assert [v.message for v in violations(res)] == ["duration out of protobuf's range (+-10000 years)"]


def test_violations_name_the_resource_and_field() -> None:
    res = _http_policies()
    _backreference(res)
    (v,) = violations(res)
    assert str(v).startswith("rds 9080: virtual_hosts[0].routes[") and ".match.headers[" in str(v)
    assert "invalid RE2 regex '(a)\\\\1'" in str(v)


def _envoy_validates(res: Resources, tmp_path: Path, runtime: dict[str, object] | None) -> bool:
    assert ENVOY is not None
    bootstrap = static_bootstrap(res)
    if runtime is not None:
        bootstrap.layered_runtime.layers.add(name="static").static_layer.update(runtime)
    config = tmp_path / "bootstrap.json"
    config.write_text(json_format.MessageToJson(bootstrap))
    proc = subprocess.run(
        [ENVOY, "--mode", "validate", "-c", str(config), "-l", "error"], capture_output=True, text=True, timeout=60
    )
    return proc.returncode == 0


@pytest.mark.skipif(ENVOY is None, reason="no envoy binary")
def test_the_agents_bootstrap_raises_re2s_program_size_limit_as_istios(tmp_path: Path) -> None:
    """`[a-z]{200}` compiles to a program over Envoy's default limit (100) and under Istio's (32768):
    Istio accepts it, so must we: validation passes it, and Envoy with our bootstrap's runtime takes it."""
    from gossamer.agent.bootstrap import build_bootstrap

    boot = build_bootstrap(
        node_id="sidecar~10.0.0.1~p.default~default.svc.cluster.local",
        cluster="p.default",
        metadata={},
        xds_socket=tmp_path / "x.sock",
        admin_socket=tmp_path / "a.sock",
    )
    (static,) = [layer["static_layer"] for layer in boot["layered_runtime"]["layers"] if "static_layer" in layer]
    res = _http_policies()
    _route(res).match.safe_regex.regex = "/[a-z]{200}"
    assert violations(res) == []
    assert not _envoy_validates(res, tmp_path, None)  # Envoy's default limit
    assert _envoy_validates(res, tmp_path, static)
