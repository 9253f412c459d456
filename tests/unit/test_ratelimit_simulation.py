"""What `explain` says about rate limiting, on the config Istio's rate limit task gives the ingress
gateway and productpage's sidecar (the golden cases ratelimit-gateway and ratelimit-local-sidecar):
the filters that apply and the descriptors the rate_limits actions make of a request."""

from __future__ import annotations

from pathlib import Path

from gossamer.debug.simulate import Request, simulate
from tests.golden.test_golden import build_case

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
SERVICE = "outbound|8081||ratelimit.default.svc.cluster.local"


def test_gateway_productpage_descriptor_and_service() -> None:
    r = simulate(build_case(GOLDEN / "ratelimit-gateway"), Request(host="bookinfo", path="/productpage", port=8080))
    assert r.cluster == "outbound|9080||productpage.default.svc.cluster.local"
    assert r.rate_limits[0] == (
        "global rate limit envoy.filters.http.ratelimit: domain 'ratelimit', "
        f"service {SERVICE} (in this proxy's clusters); if the service fails the request "
        "is refused (failure_mode_deny)"
    )
    assert "  virtual host rate_limits[0]: descriptor (PATH, /productpage)" in r.rate_limits
    # the local filter of the api route's bucket does not apply to this route
    assert (
        "local rate limit envoy.filters.http.local_ratelimit: no token bucket for this route: not limited"
        in r.rate_limits
    )


def test_gateway_api_route_has_its_own_actions_and_bucket() -> None:
    resources = build_case(GOLDEN / "ratelimit-gateway")
    r = simulate(resources, Request(host="bookinfo", path="/api/v1/products/7", port=8080))
    assert r.route == "api"
    assert "  route rate_limits[0]: descriptor (PATH, api)" in r.rate_limits
    assert "  virtual host rate_limits: not applied (the route has its own)" in r.rate_limits
    assert any(
        line.startswith(
            "local rate limit envoy.filters.http.local_ratelimit: the route's bucket of 2 tokens, 2 more every 4s"
        )
        for line in r.rate_limits
    ), r.rate_limits
    no_match = simulate(resources, Request(host="bookinfo", path="/api/v1/products/700", port=8080))
    assert any(
        "no descriptor (header_value_match 'api': headers did not match)" in line for line in no_match.rate_limits
    ), no_match.rate_limits


def test_sidecar_inbound_per_route_bucket() -> None:
    r = simulate(
        build_case(GOLDEN / "ratelimit-local-sidecar"),
        Request(host="productpage:9080", path="/productpage", port=9080, address="10.244.1.11", inbound=True),
    )
    assert r.rate_limits == (
        "local rate limit envoy.filters.http.local_ratelimit: the route's bucket of 4 tokens, 4 more every 60s; "
        "enabled for 100%, enforced for 100% of requests; a refused request gets 429 with x-local-rate-limit: true",
    )


def test_no_rate_limit_filters_no_lines() -> None:
    r = simulate(build_case(GOLDEN / "gateway-bookinfo"), Request(host="bookinfo", path="/productpage", port=8080))
    assert r.rate_limits == ()
