"""Rate limiting as Istio's task "Enabling Rate Limits using Envoy" sets it up, on the shared bookinfo
mesh with real requests: Envoy's local rate limit filter from the page's EnvoyFilters (workload level on
productpage's inbound listener, per route through `typed_per_filter_config`) and at the ingress gateway
on one named route only, with the bucket refilling. Each test deletes what it applied."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mesh import REPO, Applied, Mesh, applying, wait_until

pytestmark = pytest.mark.e2e

DOCS = REPO / "tests/data/istio-docs/rate-limit"
BOOKINFO_GATEWAY = REPO / "samples/bookinfo/bookinfo-gateway.yaml"


@pytest.fixture
def applied(bookinfo: Mesh, tmp_path: Path) -> Iterator[Applied]:
    with applying(bookinfo, tmp_path) as a:
        yield a


def curl_from_ratings(mesh: Mesh, url: str) -> tuple[int, dict[str, str]]:
    """Status and response headers (lower-cased names) of a GET from the ratings pod, as the page does."""
    out = mesh.exec("deploy/ratings-v1", "curl", "-s", "-D", "-", "-o", "/dev/null", "--max-time", "10", url).stdout
    lines = out.replace("\r\n", "\n").strip().splitlines()
    if not lines:
        return 0, {}
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers


def statuses_from_ratings(mesh: Mesh, url: str, n: int) -> list[int]:
    return [curl_from_ratings(mesh, url)[0] for _ in range(n)]


def wait_limited(mesh: Mesh, url: str, timeout: float = 20) -> None:
    """Until the filter is in place (the new config reached productpage's sidecar): a 429 comes back."""
    assert wait_until(lambda: curl_from_ratings(mesh, url)[0] == 429, timeout, interval=0.2), (
        "no 429 from productpage after applying the local rate limit"
    )


def test_local_rate_limit_workload_level_docs(bookinfo: Mesh, applied: Applied) -> None:
    """The page's first local EnvoyFilter (4 tokens a minute, udpa.type.v1.TypedStruct): the fifth request
    in a minute is refused by productpage's sidecar with 429 and `x-local-rate-limit: true`; other services
    are not limited."""
    url = "http://productpage:9080/productpage"
    assert curl_from_ratings(bookinfo, url)[0] == 200
    applied(DOCS / "local-ratelimit-workload.yaml")
    # Not exactly four 200s first: ratings' sidecar keeps its connections to productpage, and those stay
    # on the listener's previous filter chain (no limit) while it drains, as with Istio. Once the new
    # chain answers 429 its bucket is spent for the minute.
    wait_limited(bookinfo, url)
    for _ in range(3):
        status, headers = curl_from_ratings(bookinfo, url)
        assert status == 429 and headers.get("x-local-rate-limit") == "true", (status, headers)
    # ratings -> details is not limited (the EnvoyFilter selects app: productpage)
    assert statuses_from_ratings(bookinfo, "http://details:9080/details/0", 6) == [200] * 6
    bookinfo.delete(DOCS / "local-ratelimit-workload.yaml")
    assert wait_until(lambda: curl_from_ratings(bookinfo, url)[0] == 200, 20)


def test_local_rate_limit_per_route_docs(bookinfo: Mesh, applied: Applied) -> None:
    """The page's per-route variant: the filter without a bucket, the bucket in the routes'
    `typed_per_filter_config` of virtual host `inbound|http|9080`."""
    url = "http://productpage:9080/productpage"
    assert curl_from_ratings(bookinfo, url)[0] == 200
    applied(DOCS / "local-ratelimit-route.yaml")
    wait_limited(bookinfo, url)
    # the bucket is spent for the minute: every request now gets the filter's answer
    for _ in range(3):
        status, headers = curl_from_ratings(bookinfo, url)
        assert status == 429 and headers.get("x-local-rate-limit") == "true", (status, headers)


GATEWAY_ROUTE_LIMIT = """\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: gateway-local-ratelimit-api
  namespace: istio-system
spec:
  workloadSelector:
    labels:
      istio: ingressgateway
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter:
              name: envoy.filters.http.router
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/xds.type.v3.TypedStruct
          type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
          value:
            stat_prefix: http_local_rate_limiter
  - applyTo: HTTP_ROUTE
    match:
      context: GATEWAY
      routeConfiguration:
        vhost:
          name: "*:8080"
          route:
            name: api
    patch:
      operation: MERGE
      value:
        typed_per_filter_config:
          envoy.filters.http.local_ratelimit:
            "@type": type.googleapis.com/xds.type.v3.TypedStruct
            type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            value:
              stat_prefix: http_local_rate_limiter
              token_bucket:
                max_tokens: 2
                tokens_per_fill: 2
                fill_interval: 4s
              filter_enabled:
                default_value: {numerator: 100, denominator: HUNDRED}
              filter_enforced:
                default_value: {numerator: 100, denominator: HUNDRED}
              response_headers_to_add:
              - append_action: OVERWRITE_IF_EXISTS_OR_ADD
                header: {key: x-local-rate-limit, value: "true"}
"""


def test_local_rate_limit_at_the_gateway_on_one_route_refills(bookinfo: Mesh, applied: Applied) -> None:
    """GATEWAY context, xds.type.v3.TypedStruct, the bucket on the route named `api` only (the page's
    VirtualService of the advanced case): /api/v1/products gets 429 after two requests while
    /productpage (another route of the same virtual host) is untouched; after the fill interval the
    route answers again."""
    try:
        bookinfo.apply(DOCS / "virtualservice-api.yaml")
        applied(applied.yaml("gateway-local.yaml", GATEWAY_ROUTE_LIMIT))
        api = "/api/v1/products/1"
        assert wait_until(lambda: bookinfo.get(api).status == 429, 20, interval=0.2)
        limited = bookinfo.get(api)
        assert limited.status == 429 and limited.headers.get("x-local-rate-limit") == "true", limited
        for _ in range(5):
            assert bookinfo.get("/productpage").status == 200
        time.sleep(4.5)  # one fill interval: two tokens again
        codes = [bookinfo.get(api).status for _ in range(5)]
        # two tokens, then 429 (two more 200s only if the next fill falls between these requests)
        assert codes[:2] == [200, 200] and 429 in codes[2:], codes
    finally:
        bookinfo.apply(BOOKINFO_GATEWAY)


# ---------------------------------------------------------------------------- global rate limiting

RATELIMIT_SAMPLE = REPO / "samples/ratelimit/rate-limit-service.yaml"
RATELIMIT_DEPLOYMENT = "---\n" + RATELIMIT_SAMPLE.read_text().split("\n---\n")[-1]  # the service's Deployment
GATEWAY_REPLICAS = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: istio-ingressgateway
  namespace: istio-system
  labels: {app: istio-ingressgateway, istio: ingressgateway}
spec:
  replicas: REPLICAS
  selector:
    matchLabels: {app: istio-ingressgateway, istio: ingressgateway}
  template:
    metadata:
      labels: {app: istio-ingressgateway, istio: ingressgateway}
      annotations: {gossamer.io/proxy-type: router}
    spec:
      serviceAccountName: istio-ingressgateway-service-account
      containers:
      - name: istio-proxy
        image: docker.io/istio/proxyv2
"""


def _mid_window() -> None:
    """The service counts in fixed one-minute windows: start a sequence that must fall in one window
    well inside it."""
    second = time.time() % 60
    if second > 50:
        time.sleep(61 - second)


def _gateway_get(address: str, path: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=15) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


@pytest.fixture
def global_limit(bookinfo: Mesh, applied: Applied) -> Iterator[Applied]:
    """The task's steps 1-4: the ConfigMap, samples/ratelimit, the two EnvoyFilters; the service answering."""
    applied(DOCS / "ratelimit-config.yaml", RATELIMIT_SAMPLE)

    def ready(deployment: str) -> bool:
        pods = [p for p in bookinfo.status()["pods"] if p.get("deployment") == deployment]
        return bool(pods) and all(p["ready"] for p in pods)

    assert wait_until(lambda: ready("ratelimit") and ready("redis"), 60), bookinfo.status()["pods"]
    applied(DOCS / "filter-ratelimit.yaml", DOCS / "filter-ratelimit-svc.yaml")
    # failure_mode_deny: until the service answers, requests get 500
    assert wait_until(lambda: bookinfo.get("/static/nothing-here").status in (200, 404), 30, interval=0.5), (
        bookinfo.get("/static/nothing-here")
    )
    yield applied


def test_global_rate_limit_docs_productpage_one_per_minute(bookinfo: Mesh, global_limit: Applied) -> None:
    """The page's check: `/productpage` twice -> 200, then 429; other paths (100 a minute) still pass."""
    _mid_window()
    assert [bookinfo.get("/productpage").status for _ in range(2)] == [200, 429]
    assert bookinfo.get("/productpage").status == 429
    for _ in range(3):
        assert bookinfo.get("/api/v1/products/1").status == 200
    # explain names the filter, its service and the descriptor the gateway sends for this request
    out = bookinfo.cli(
        "explain", "deploy/istio-ingressgateway", "-n", "istio-system", "http://127.0.0.1:8080/productpage"
    ).stdout
    assert "global rate limit envoy.filters.http.ratelimit: domain 'ratelimit'" in out, out
    assert "outbound|8081||ratelimit.default.svc.cluster.local (in this proxy's clusters)" in out, out
    assert "descriptor (PATH, /productpage)" in out, out


def test_global_rate_limit_shared_by_two_gateway_replicas(bookinfo: Mesh, global_limit: Applied) -> None:
    """The advanced case (a route named api, 2 a minute) through two gateway replicas, each asked
    directly at its pod address: the second replica sees the first one's requests (one budget)."""
    try:
        bookinfo.apply(global_limit.yaml("gw2.yaml", GATEWAY_REPLICAS.replace("REPLICAS", "2")))
        assert wait_until(
            lambda: (
                len(
                    [
                        p
                        for p in bookinfo.status()["pods"]
                        if p.get("deployment") == "istio-ingressgateway" and p["ready"]
                    ]
                )
                == 2
            ),
            60,
        )
        bookinfo.apply(DOCS / "virtualservice-api.yaml")
        global_limit(DOCS / "filter-ratelimit-svc-api.yaml")
        a, b = sorted(p["ip"] for p in bookinfo.status()["pods"] if p.get("deployment") == "istio-ingressgateway")
        assert wait_until(lambda: _gateway_get(f"{b}:8080", "/productpage") in (200, 429), 30)
        _mid_window()
        codes = [
            _gateway_get(f"{a}:8080", "/api/v1/products/1"),
            _gateway_get(f"{b}:8080", "/api/v1/products/2"),
            _gateway_get(f"{b}:8080", "/api/v1/products/3"),
            _gateway_get(f"{a}:8080", "/api/v1/products/4"),
        ]
        assert codes == [200, 200, 429, 429], codes
    finally:
        bookinfo.apply(BOOKINFO_GATEWAY)
        bookinfo.apply(global_limit.yaml("gw1.yaml", GATEWAY_REPLICAS.replace("REPLICAS", "1")))


def test_global_rate_limit_service_down_failure_mode(bookinfo: Mesh, global_limit: Applied) -> None:
    """With the rate limit service gone, `failure_mode_deny: true` (the page's) refuses every request the
    filter asks about (500); `false` lets them through. With `enable_x_ratelimit_headers` Envoy writes
    x-ratelimit-* headers from the service's answers."""
    headers_filter = (
        (DOCS / "filter-ratelimit.yaml")
        .read_text()
        .replace(
            "failure_mode_deny: true",
            "failure_mode_deny: false\n            enable_x_ratelimit_headers: DRAFT_VERSION_03",
        )
    )
    lenient = global_limit.yaml("filter-ratelimit-lenient.yaml", headers_filter)
    bookinfo.apply(lenient)
    resp = bookinfo.get("/api/v1/products/1")
    assert resp.status == 200, resp
    assert resp.headers.get("x-ratelimit-limit", "").startswith("100, 100;w=60"), resp.headers
    assert int(resp.headers["x-ratelimit-remaining"]) < 100 and "x-ratelimit-reset" in resp.headers
    deployment = global_limit.yaml("ratelimit-deployment.yaml", RATELIMIT_DEPLOYMENT)
    bookinfo.delete(deployment)
    assert wait_until(lambda: not [p for p in bookinfo.status()["pods"] if p.get("deployment") == "ratelimit"], 30)
    assert [bookinfo.get("/api/v1/products/1").status for _ in range(3)] == [200] * 3
    bookinfo.apply(DOCS / "filter-ratelimit.yaml")  # failure_mode_deny: true
    assert wait_until(lambda: bookinfo.get("/api/v1/products/1").status == 500, 20)
    assert bookinfo.get("/productpage").status == 500
