"""gossamer.resources: parsing Istio/Kubernetes YAML into typed models, with line-accurate issues."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from gossamer.resources import (
    ALL_KINDS,
    Issue,
    Resource,
    ResourceError,
    load_paths,
    lookup_kind,
    not_enforced_fields,
    parse_documents,
    parse_duration,
    resource_from_raw,
)
from gossamer.resources.networking import DestinationRuleSpec, VirtualServiceSpec


def parse(text: str, filename: str = "f.yaml") -> tuple[list[Resource[Any]], list[Issue]]:
    return parse_documents(textwrap.dedent(text).lstrip("\n"), filename)


def errors(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.level == "error"]


def only_error(issues: list[Issue]) -> Issue:
    errs = errors(issues)
    assert len(errs) == 1, [str(i) for i in issues]
    return errs[0]


MESH = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: shop
  labels: {app: reviews}
spec:
  hosts:
  - reviews
  http:
  - name: jason
    match:
    - headers:
        end-user:
          exact: jason
      uri:
        prefix: /api
      ignoreUriCase: true
    route:
    - destination:
        host: reviews
        subset: v2
        port:
          number: 9080
      headers:
        request:
          set: {x-canary: "true"}
        response:
          remove: [x-internal]
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 75
    - destination: {host: reviews, subset: v3}
      weight: 25
    timeout: 0.5s
    retries: {attempts: 3, perTryTimeout: 100ms, retryOn: "5xx,connect-failure"}
---
# a comment between documents
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: reviews
  namespace: shop
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: LEAST_REQUEST
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms}
      http: {http1MaxPendingRequests: 10, maxRequestsPerConnection: 1}
    outlierDetection:
      consecutive5xxErrors: 5
      interval: 10s
      baseEjectionTime: 1m
      maxEjectionPercent: 50
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer:
        consistentHash:
          httpCookie: {name: user, ttl: 0s}
  - name: v3
    labels: {version: v3}
"""

APP = """
apiVersion: v1
kind: Service
metadata:
  name: reviews
spec:
  selector: {app: reviews}
  ports:
  - name: http
    port: 9080
    targetPort: http
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews-v1
spec:
  selector:
    matchLabels: {app: reviews, version: v1}
  template:
    metadata:
      labels: {app: reviews, version: v1}
    spec:
      containers:
      - name: reviews
        command: [python3, -m, http.server, "9080"]
        env:
        - {name: LOG_DIR, value: /tmp/logs}
        ports:
        - {containerPort: 9080, name: http}
        readinessProbe:
          httpGet: {path: /health, port: http}
          periodSeconds: 2
"""


# ---------------------------------------------------------------------------- happy paths


def test_parses_istio_multi_document_yaml() -> None:
    resources, issues = parse(MESH)
    assert errors(issues) == []
    assert [r.key for r in resources] == [
        ("VirtualService", "shop", "reviews"),
        ("DestinationRule", "shop", "reviews"),
    ]
    vs, dr = resources
    assert isinstance(vs.spec, VirtualServiceSpec)
    assert vs.api_version == "networking.istio.io/v1"
    assert vs.source_file == "f.yaml" and vs.source_line == 1
    assert vs.metadata.labels == {"app": "reviews"}
    first = vs.spec.http[0]
    assert first.match and first.route
    match = first.match[0]
    assert match.uri is not None and match.uri.prefix == "/api"
    assert match.headers is not None and match.headers["end-user"].exact == "jason"
    assert match.ignore_uri_case is True
    destination = first.route[0]
    assert destination.destination.port is not None and destination.destination.port.number == 9080
    assert destination.headers is not None and destination.headers.request is not None
    assert destination.headers.request.set == {"x-canary": "true"}
    second = vs.spec.http[1]
    assert second.route is not None and [r.weight for r in second.route] == [75, 25]
    assert second.timeout is not None and parse_duration(second.timeout) == 0.5
    assert second.retries is not None and second.retries.attempts == 3
    assert second.retries.per_try_timeout is not None
    assert parse_duration(second.retries.per_try_timeout) == pytest.approx(0.1)

    assert isinstance(dr.spec, DestinationRuleSpec)
    assert dr.source_line == 40
    tp = dr.spec.traffic_policy
    assert tp is not None and tp.load_balancer is not None and tp.load_balancer.simple == "LEAST_REQUEST"
    assert tp.connection_pool is not None and tp.connection_pool.http is not None
    assert tp.connection_pool.http.http1_max_pending_requests == 10
    assert tp.outlier_detection is not None and tp.outlier_detection.consecutive_5xx_errors == 5
    assert [s.name for s in dr.spec.subsets] == ["v1", "v2", "v3"]
    subset_lb = dr.spec.subsets[1].traffic_policy
    assert subset_lb is not None and subset_lb.load_balancer is not None
    consistent_hash = subset_lb.load_balancer.consistent_hash
    assert consistent_hash is not None and consistent_hash.http_cookie is not None
    assert consistent_hash.http_cookie.name == "user"
    # the original document is kept for storing / printing
    assert dr.raw["spec"]["subsets"][0] == {"name": "v1", "labels": {"version": "v1"}}
    # and each field's line
    assert vs.line_of("spec.http[1].timeout") == 35
    assert vs.line_of(("spec", "http", 0, "match", 0, "uri", "prefix")) == 17


def test_parses_deployment_and_service_with_defaults() -> None:
    resources, issues = parse(APP)
    assert issues == []
    svc, dep = resources
    assert svc.key == ("Service", "default", "reviews")
    assert svc.spec.ports[0].target_port == "http"
    assert svc.spec.ports[0].protocol == "TCP"
    assert dep.spec.replicas == 1
    pod = dep.spec.template.spec
    assert pod.service_account_name == "default"
    c = pod.containers[0]
    assert c.command == ["python3", "-m", "http.server", "9080"]
    assert c.env[0].value == "/tmp/logs"
    assert c.readiness_probe.http_get.port == "http"
    assert c.readiness_probe.period_seconds == 2
    assert c.readiness_probe.failure_threshold == 3


def test_list_kind_and_cluster_scoped() -> None:
    resources, issues = parse(
        """
        apiVersion: v1
        kind: List
        items:
        - apiVersion: v1
          kind: Namespace
          metadata: {name: shop}
        - apiVersion: v1
          kind: ServiceAccount
          metadata: {name: reviews, namespace: shop}
          automountServiceAccountToken: false
        """
    )
    assert issues == []
    assert [r.key for r in resources] == [("Namespace", "", "shop"), ("ServiceAccount", "shop", "reviews")]
    assert resources[1].source_line == 7


def test_resource_from_raw_round_trip() -> None:
    (vs, _dr), _ = parse(MESH)
    again = resource_from_raw(vs.raw, "store")
    assert again.spec == vs.spec and again.key == vs.key and again.source_file == "store"
    with pytest.raises(ResourceError, match="unknown field"):
        resource_from_raw({**vs.raw, "spec": {"hosts": ["a"], "htp": []}})


def test_empty_documents_are_skipped() -> None:
    assert parse("---\n---\n# nothing\n") == ([], [])


# ---------------------------------------------------------------------------- errors with lines


def test_issue_string_format() -> None:
    issue = Issue(
        "error", "f.yaml", 12, "VirtualService", "reviews", "spec.http[0].route", "weights sum to 90, must be 100"
    )
    assert str(issue) == ("f.yaml:12: VirtualService/reviews: spec.http[0].route: weights sum to 90, must be 100")
    warning = Issue("warning", "f.yaml", 3, "Deployment", "web", "spec.x", "ignored")
    assert str(warning) == "f.yaml:3: warning: Deployment/web: spec.x: ignored"


def test_weights_not_summing_to_100() -> None:
    resources, issues = parse(
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata:
          name: reviews
        spec:
          hosts: [reviews]
          http:
          - route:
            - destination: {host: reviews, subset: v1}
              weight: 50
            - destination: {host: reviews, subset: v2}
              weight: 40
        """
    )
    assert resources == []
    assert str(only_error(issues)) == (
        "f.yaml:8: VirtualService/reviews: spec.http[0].route: weights sum to 90, must be 100"
    )


def test_unknown_field_points_at_its_line() -> None:
    _, issues = parse(
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata:
          name: reviews
        spec:
          hosts: [reviews]
          http:
          - match:
            - uri:
                prefx: /api
            route:
            - destination: {host: reviews}
        """
    )
    issue = only_error(issues)
    assert (issue.line, issue.field) == (10, "spec.http[0].match[0].uri")
    assert "unknown field 'prefx'" in issue.message and "'prefix'" in issue.message


def test_yaml_syntax_error_line() -> None:
    resources, issues = parse(
        """
        apiVersion: v1
        kind: Namespace
        metadata:
          name: a
        ---
        apiVersion: v1
        kind: Namespace
        metadata:
          name: [b
        """
    )
    assert [r.name for r in resources] == ["a"]
    issue = only_error(issues)
    assert issue.message.startswith("invalid YAML")
    assert issue.line == 10
    assert str(issue).startswith("f.yaml:10: invalid YAML")


def test_missing_name() -> None:
    _, issues = parse("apiVersion: v1\nkind: Service\nmetadata:\n  labels: {a: b}\nspec:\n  ports: [{port: 80}]\n")
    issue = only_error(issues)
    assert (issue.line, issue.field) == (3, "metadata.name")


def test_bad_kind_and_api_version() -> None:
    _, issues = parse("apiVersion: v1\nkind: virtualservice\nmetadata: {name: a}\n")
    issue = only_error(issues)
    assert issue.line == 2 and "unknown kind 'virtualservice'" in issue.message
    assert "did you mean 'VirtualService'" in issue.message
    _, issues = parse("apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: a}\n")
    assert only_error(issues).field == "apiVersion"
    _, issues = parse("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n")
    assert "cannot be applied" in only_error(issues).message


def test_wrong_type_and_bad_duration() -> None:
    _, issues = parse(
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: r}
        spec:
          hosts: reviews
          http:
          - route: [{destination: {host: reviews}}]
            timeout: 5 seconds
        """
    )
    errs = errors(issues)
    assert [(i.line, i.field) for i in errs] == [(5, "spec.hosts"), (8, "spec.http[0].timeout")]
    assert "invalid duration" in errs[1].message


@pytest.mark.parametrize(
    ("yaml_text", "line", "field", "fragment"),
    [
        (  # two of exact/prefix/regex
            "spec:\n  hosts: [a]\n  http:\n  - match:\n    - uri: {exact: /a, prefix: /b}\n"
            "    route: [{destination: {host: a}}]\n",
            8,
            "spec.http[0].match[0].uri",
            "exactly one of exact, prefix, regex",
        ),
        (  # regex must compile
            "spec:\n  hosts: [a]\n  http:\n  - match:\n    - uri: {regex: '(/a'}\n"
            "    route: [{destination: {host: a}}]\n",
            8,
            "spec.http[0].match[0].uri.regex",
            "invalid regex",
        ),
        (  # route and redirect together
            "spec:\n  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    redirect: {uri: /x}\n",
            8,
            "spec.http[0].redirect",
            "only one of route, redirect",
        ),
        (  # negative weight
            "spec:\n  hosts: [a]\n  http:\n  - route:\n    - {destination: {host: a}, weight: 110}\n"
            "    - {destination: {host: b}, weight: -10}\n",
            9,
            "spec.http[0].route[1].weight",
            "must not be negative",
        ),
        (  # fault percentage out of range
            "spec:\n  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    fault:\n"
            "      abort: {httpStatus: 503, percentage: {value: 150}}\n",
            9,
            "spec.http[0].fault.abort.percentage.value",
            "between 0 and 100",
        ),
        (  # bad gateway reference
            "spec:\n  hosts: [a]\n  gateways: [Bad_GW]\n  http:\n  - route: [{destination: {host: a}}]\n",
            6,
            "spec.gateways[0]",
            "invalid gateway",
        ),
    ],
)
def test_virtual_service_semantics(yaml_text: str, line: int, field: str, fragment: str) -> None:
    head = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\n"
    _, issues = parse_documents(head + yaml_text, "f.yaml")
    issue = only_error(issues)
    assert (issue.line, issue.field) == (line, field), str(issue)
    assert fragment in issue.message


def test_per_try_timeout_longer_than_timeout_is_a_warning() -> None:
    resources, issues = parse(
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: r}
        spec:
          hosts: [a]
          http:
          - route: [{destination: {host: a}}]
            timeout: 1s
            retries: {attempts: 2, perTryTimeout: 2s}
        """
    )
    assert len(resources) == 1
    assert [(i.level, i.line, i.field) for i in issues] == [("warning", 9, "spec.http[0].retries.perTryTimeout")]


def test_destination_rule_semantics() -> None:
    _, issues = parse(
        """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: r}
        spec:
          host: reviews
          trafficPolicy:
            loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}
          subsets:
          - {name: v1, labels: {version: v1}}
          - {name: v1, labels: {version: v2}}
        """
    )
    assert [(i.line, i.field) for i in errors(issues)] == [
        (7, "spec.trafficPolicy.loadBalancer"),
        (10, "spec.subsets[1].name"),
    ]
    _, issues = parse("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {}\n")
    assert only_error(issues).field == "spec.host"


def test_gateway_and_service_semantics() -> None:
    _, issues = parse(
        """
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: gw}
        spec:
          selector: {istio: ingressgateway}
          servers:
          - port: {number: 80, name: http, protocol: HTTP}
            hosts: []
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec:
          ports:
          - {name: http, port: 80}
          - {name: http, port: 70000}
        """
    )
    assert [(i.kind, i.line, i.field) for i in errors(issues)] == [
        ("Gateway", 8, "spec.servers[0].hosts"),
        ("Service", 16, "spec.ports[1].port"),
    ]


def test_deployment_selector_must_match_template() -> None:
    _, issues = parse(APP.replace("labels: {app: reviews, version: v1}", "labels: {app: reviews}"))
    issue = only_error(issues)
    assert (issue.kind, issue.line, issue.field) == ("Deployment", 18, "spec.selector.matchLabels")
    assert "does not match template labels" in issue.message


def test_bad_metadata_name() -> None:
    _, issues = parse("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: My_NS\n")
    issue = only_error(issues)
    assert (issue.line, issue.field) == (4, "metadata.name") and "DNS-1123" in issue.message


def test_duplicate_key_is_an_error() -> None:
    _, issues = parse("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n")
    assert only_error(issues).line == 5


# ---------------------------------------------------------------------------- kinds, files, durations


@pytest.mark.parametrize(
    ("alias", "kind"),
    [
        ("VirtualService", "VirtualService"),
        ("virtualservice", "VirtualService"),
        ("virtualservices", "VirtualService"),
        ("vs", "VirtualService"),
        ("VS", "VirtualService"),
        ("pods", "Pod"),
        ("po", "Pod"),
        ("pod", "Pod"),
        ("svc", "Service"),
        ("services", "Service"),
        ("deploy", "Deployment"),
        ("deployments", "Deployment"),
        ("dr", "DestinationRule"),
        ("gw", "Gateway"),
        ("se", "ServiceEntry"),
        ("ns", "Namespace"),
        ("sa", "ServiceAccount"),
        ("virtualservices.networking.istio.io", "VirtualService"),
        ("authorizationpolicies", "AuthorizationPolicy"),
    ],
)
def test_lookup_kind_aliases(alias: str, kind: str) -> None:
    assert lookup_kind(alias).kind == kind


def test_lookup_kind_unknown_and_table() -> None:
    with pytest.raises(KeyError, match="unknown resource type 'nope'"):
        lookup_kind("nope")
    vs = lookup_kind("vs")
    assert vs.group == "networking.istio.io" and set(vs.versions) == {"v1", "v1beta1", "v1alpha3"}
    assert vs.namespaced and vs.plural == "virtualservices" and vs.short_names == ("vs",)
    assert not lookup_kind("pods").appliable
    assert not lookup_kind("ns").namespaced
    assert len({k.kind for k in ALL_KINDS}) == len(ALL_KINDS)


def test_load_paths_folder_is_top_level_only_and_sorted(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n")
    (tmp_path / "a.yml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n")
    (tmp_path / "notes.txt").write_text("not yaml")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n")
    single = tmp_path / "sub" / "c.yaml"
    resources, issues = load_paths([tmp_path, str(single)])
    assert issues == []
    assert [r.name for r in resources] == ["a", "b", "c"]
    assert resources[0].source_file == str(tmp_path / "a.yml")
    _, issues = load_paths([tmp_path / "missing.yaml"])
    assert only_error(issues).message == "no such file or folder"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("0.5s", 0.5), ("100ms", 0.1), ("1m", 60.0), ("1h", 3600.0), ("1h30m", 5400.0), ("0s", 0.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "5x", "-1s", "s", "1.s5"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_not_enforced_fields() -> None:
    (vs, dr), _ = parse(MESH)
    # timeout, retries, loadBalancer, connectionPool and outlierDetection are enforced.
    assert not_enforced_fields(vs) == []
    assert not_enforced_fields(dr) == []


OTHER_KINDS = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external-svc-https}
spec:
  hosts: [api.dropboxapi.com, www.googleapis.com]
  location: MESH_EXTERNAL
  ports:
  - {number: 443, name: https, protocol: TLS}
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: static}
spec:
  hosts: [mymongodb.somedomain]
  addresses: [192.192.192.192/24]
  ports: [{number: 27018, name: mongodb, protocol: MONGO}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - address: 2.2.2.2
  - address: 3.3.3.3
    ports: {mongodb: 27019}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-config}
spec:
  egress:
  - hosts: ["./*", "istio-system/*"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: my-gateway, namespace: some-config-namespace}
spec:
  selector: {app: my-gateway-controller}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [uk.bookinfo.com, eu.bookinfo.com]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https-443, protocol: HTTPS}
    hosts: [uk.bookinfo.com, eu.bookinfo.com]
    tls: {mode: SIMPLE, credentialName: bookinfo-secret}
  - port: {number: 9443, name: https-9443, protocol: HTTPS}
    hosts: ["bookinfo-namespace/*.bookinfo.com"]
    tls: {mode: SIMPLE, credentialName: bookinfo-secret}
  - port: {number: 2379, name: tcp, protocol: TCP}
    hosts: ["*"]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: foo}
spec:
  selector: {matchLabels: {app: finance}}
  mtls: {mode: STRICT}
  portLevelMtls:
    8080: {mode: DISABLE}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/default/sa/sleep"]}
    - source: {namespaces: ["test"]}
    to:
    - operation: {methods: ["GET"], paths: ["/info*"]}
    when:
    - key: request.auth.claims[iss]
      values: ["https://accounts.google.com"]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: "issuer-foo"
    jwksUri: https://example.com/.well-known/jwks.json
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging:
  - providers: [{name: envoy}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo-sni}
spec:
  hosts: ["*.bookinfo.com"]
  gateways: [mygateway]
  tls:
  - match:
    - port: 443
      sniHosts: [login.bookinfo.com]
    route:
    - destination: {host: login.prod.svc.cluster.local}
  tcp:
  - match: [{port: 27017}]
    route:
    - destination: {host: mongo.backup.svc.cluster.local, port: {number: 5555}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings.prod.svc.cluster.local]
  http:
  - match: [{sourceLabels: {app: reviews}, headers: {x-foo: {}}}]
    fault:
      delay: {percentage: {value: 0.1}, fixedDelay: 5s}
      abort: {percentage: {value: 0.1}, httpStatus: 400}
    route: [{destination: {host: ratings.prod.svc.cluster.local, subset: v1}}]
    mirror: {host: ratings, subset: v2}
    mirrorPercentage: {value: 50.0}
    corsPolicy:
      allowOrigins: [{exact: https://example.com}]
      allowMethods: [POST, GET]
      allowCredentials: false
      allowHeaders: [X-Foo-Bar]
      maxAge: "24h"
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /v1/bookRatings, authority: newratings.default.svc.cluster.local}
  - match: [{uri: {prefix: /v2}}]
    directResponse: {status: 503, body: {string: "unavailable"}}
  - match: [{uri: {prefix: /ratings}}]
    rewrite: {uri: /v1/bookRatings}
    route: [{destination: {host: ratings.prod.svc.cluster.local, subset: v1}}]
  - name: reviews-delegate
    delegate: {name: reviews, namespace: nsb}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: details-svc}
spec:
  serviceAccount: details-legacy
  address: 2.2.2.2
  labels: {app: details-legacy, instance-id: vm1}
"""


def test_other_istio_kinds_parse_cleanly() -> None:
    resources, issues = parse_documents(OTHER_KINDS, "kinds.yaml")
    assert issues == []
    assert [r.kind for r in resources] == [
        "ServiceEntry",
        "ServiceEntry",
        "Sidecar",
        "Gateway",
        "PeerAuthentication",
        "AuthorizationPolicy",
        "RequestAuthentication",
        "Telemetry",
        "VirtualService",
        "VirtualService",
        "WorkloadEntry",
    ]
    se = resources[1]
    assert se.spec.resolution == "STATIC" and se.spec.endpoints[1].ports == {"mongodb": 27019}
    gw = resources[3]
    assert gw.spec.servers[1].tls.credential_name == "bookinfo-secret"
    assert resources[4].spec.port_level_mtls[8080].mode == "DISABLE"
    assert resources[5].spec.rules[0].from_[0].source.principals == ["cluster.local/ns/default/sa/sleep"]
    ratings = resources[9]
    assert ratings.spec.http[0].fault.abort.http_status == 400
    assert ratings.spec.http[0].match[0].headers["x-foo"].set_fields == []  # presence match
    assert ratings.spec.http[2].direct_response.body.string == "unavailable"
    assert not_enforced_fields(resources[8]) == []  # tcp and tls routes are enforced
    # The Sidecar's egress hosts and outbound traffic policy are enforced.
    assert not_enforced_fields(resources[2]) == []
