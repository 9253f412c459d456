"""RequestAuthentication -> jwt_authn, and AuthorizationPolicy request principals / request.auth.*
-> RBAC principals reading what jwt_authn verified (Istio's semantics)."""

from __future__ import annotations

from pathlib import Path

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from gossamer.ir.authorization import AuthzField, AuthzRule
from gossamer.ir.security import JwtHeader, JwtProvider
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.resources.enforcement import not_enforced_fields
from gossamer.resources.loader import parse_documents
from gossamer.translate import translate_proxy
from gossamer.translate.authorization import translate_rule
from gossamer.translate.jwt import request_authentication
from gossamer.xds.build import build_resources
from gossamer.xds.build.authorization import rbac_policy
from gossamer.xds.build.jwt import (
    FAKE_JWKS,
    JWT_AUTHN,
    PAYLOAD_KEY,
    REQUEST_PRINCIPAL_KEY,
    SET_FILTER_STATE,
    claim_path,
    jwt_authentication,
    jwt_principal,
)
from gossamer.xds.types import LISTENER
from tests.support.offline import gateway_proxy, proxy_for, snapshot_from_yaml

GOLDEN = Path(__file__).parent.parent / "golden"
BASE = (GOLDEN / "authz-allow-deny" / "in.yaml").read_text().split("\n---\n# Mesh")[0]
JWKS = '{"keys":[{"kty":"RSA","e":"AQAB","n":"xAE7eB6qugXyCAG3yhh7pkDkT65pHymX-P7KfIupjf59vsdo91bSP9C8H07pSAGQO1MV"}]}'


def _ra(name: str, namespace: str, body: str) -> str:
    return (
        f"apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: {name}, "
        f"namespace: {namespace}}}\nspec:\n{body}\n"
    )


def _snapshot(*docs: str, base: str = BASE) -> MeshSnapshot:
    return snapshot_from_yaml("\n---\n".join([base, *docs]))


def _providers(snap: MeshSnapshot, deployment: str = "httpbin") -> tuple[JwtProvider, ...]:
    return request_authentication(snap, proxy_for(snap, deployment, has_sds=True))


def _hcm_filters(snap: MeshSnapshot, listener_name: str, proxy_deployment: str = "httpbin") -> list[str]:
    proxy = proxy_for(snap, proxy_deployment, has_sds=True) if proxy_deployment else gateway_proxy(snap)
    listener = build_resources(translate_proxy(snap, proxy))[LISTENER][listener_name]
    assert isinstance(listener, listener_pb2.Listener)
    hcm = hcm_pb2.HttpConnectionManager()
    chain = next(c for c in listener.filter_chains if c.filters[0].name.endswith("http_connection_manager"))
    chain.filters[0].typed_config.Unpack(hcm)
    return [f.name for f in hcm.http_filters]


# ---------------------------------------------------------------------------------------- selection


def test_every_applicable_policy_counts_in_order() -> None:
    snap = _snapshot(
        _ra("mesh", "istio-system", f"  jwtRules:\n  - {{issuer: mesh, jwks: '{JWKS}'}}"),
        _ra("ns", "default", f"  jwtRules:\n  - {{issuer: ns, jwks: '{JWKS}'}}"),
        _ra(
            "wl",
            "default",
            "  selector: {matchLabels: {app: httpbin}}\n"
            f"  jwtRules:\n  - {{issuer: wl1, jwks: '{JWKS}'}}\n  - {{issuer: wl2, jwks: '{JWKS}'}}",
        ),
        _ra("sleep", "default", "  selector: {matchLabels: {app: sleep}}\n  jwtRules:\n  - {issuer: s}"),
        _ra("other", "other", "  jwtRules:\n  - {issuer: o}"),
        _ra(
            "gw",
            "default",
            "  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}\n  jwtRules:\n  - {issuer: t}",
        ),
    )
    providers = _providers(snap)
    assert [(p.name, p.issuer, p.source) for p in providers] == [
        ("origins-0", "mesh", "istio-system/mesh"),
        ("origins-1", "ns", "default/ns"),
        ("origins-2", "wl1", "default/wl"),
        ("origins-3", "wl2", "default/wl"),
    ]
    assert [p.issuer for p in _providers(snap, "sleep")] == ["mesh", "ns", "s"]


def test_rule_fields() -> None:
    snap = _snapshot(
        _ra(
            "wl",
            "default",
            f"""  jwtRules:
  - issuer: iss
    audiences: [a, b]
    jwks: '{JWKS}'
    fromHeaders: [{{name: x-jwt, prefix: "Bearer "}}]
    fromParams: [tok]
    fromCookies: [session]
    forwardOriginalToken: true
    outputPayloadToHeader: x-payload
    outputClaimToHeaders: [{{header: x-sub, claim: sub}}]""",
        )
    )
    (p,) = _providers(snap)
    assert p == JwtProvider(
        "origins-0",
        "iss",
        "default/wl",
        audiences=("a", "b"),
        jwks=JWKS,
        from_headers=(JwtHeader("x-jwt", "Bearer "),),
        from_params=("tok",),
        from_cookies=("session",),
        forward_original_token=True,
        output_payload_to_header="x-payload",
        claim_to_headers=(("x-sub", "sub"),),
    )
    built = jwt_authentication((p,)).providers["origins-0"]
    assert built.local_jwks.inline_string == JWKS and built.forward and built.payload_in_metadata == PAYLOAD_KEY
    assert [(h.name, h.value_prefix) for h in built.from_headers] == [("x-jwt", "Bearer ")]
    assert built.forward_payload_header == "x-payload"
    assert [(c.header_name, c.claim_name) for c in built.claim_to_headers] == [("x-sub", "sub")]


def test_jwks_uri_of_a_mesh_service_is_fetched_through_its_cluster() -> None:
    snap = _snapshot(
        _ra(
            "wl",
            "default",
            """  jwtRules:
  - {issuer: a, jwksUri: "http://sleep/jwks.json", timeout: 2s}
  - {issuer: b, jwksUri: "http://sleep.default.svc.cluster.local:80/k"}
  - {issuer: c, jwksUri: "http://sleep.default/k"}
  - {issuer: d, jwksUri: "https://example.com/jwks.json"}
  - {issuer: e, jwksUri: "http://sleep:1234/jwks.json"}
  - {issuer: f}""",
        )
    )
    providers = _providers(snap)
    cluster = "outbound|80||sleep.default.svc.cluster.local"
    assert [p.jwks_cluster for p in providers] == [cluster, cluster, cluster, "", "", ""]
    assert providers[0].jwks_timeout_seconds == 2.0
    config = jwt_authentication(providers)
    remote = config.providers["origins-0"].remote_jwks
    assert (remote.http_uri.uri, remote.http_uri.cluster, remote.http_uri.timeout.seconds) == (
        "http://sleep/jwks.json",
        cluster,
        2,
    )
    # Keys out of reach: a JWKS nobody can sign for, so that issuer's tokens are rejected (Istio).
    assert config.providers["origins-3"].local_jwks.inline_string == FAKE_JWKS
    assert config.providers["origins-5"].local_jwks.inline_string == FAKE_JWKS


def test_missing_token_allowed_invalid_rejected() -> None:
    config = jwt_authentication((JwtProvider("origins-0", "a", jwks=JWKS), JwtProvider("origins-1", "b", jwks=JWKS)))
    (rule,) = config.rules
    assert rule.match.prefix == "/"
    reqs = rule.requires.requires_any.requirements
    assert [r.provider_name for r in reqs[:2]] == ["origins-0", "origins-1"]
    assert reqs[2].HasField("allow_missing") and not reqs[2].HasField("allow_missing_or_failed")
    assert config.bypass_cors_preflight


# ---------------------------------------------------------------------------------------- filters


def test_filter_order_on_inbound_and_only_with_policies() -> None:
    snap = _snapshot(_ra("wl", "default", f"  jwtRules:\n  - {{issuer: i, jwks: '{JWKS}'}}"))
    # After the peer metadata filter (Istio's metrics labels), which authenticates nothing, and the removal
    # of its header (nothing after decides on it).
    assert _hcm_filters(snap, "virtualInbound")[:4] == [
        "gossamer.peer_metadata",
        "gossamer.peer_metadata_removal",
        JWT_AUTHN,
        SET_FILTER_STATE,
    ]
    assert _hcm_filters(snap, "virtualInbound")[-1] == "envoy.filters.http.router"
    # Outbound listeners never authenticate end users.
    snap_out = _snapshot(_ra("wl", "default", f"  jwtRules:\n  - {{issuer: i, jwks: '{JWKS}'}}"))
    proxy = proxy_for(snap_out, "httpbin", has_sds=True)
    for listener in translate_proxy(snap_out, proxy).listeners:
        assert bool(listener.jwt) == (listener.kind == "virtual_inbound"), listener.name
    assert JWT_AUTHN not in _hcm_filters(_snapshot(), "virtualInbound")


def test_gateway_gets_jwt_authn() -> None:
    base = (GOLDEN / "gateway-bookinfo" / "in.yaml").read_text()
    snap = _snapshot(
        _ra(
            "gw",
            "istio-system",
            f"  selector: {{matchLabels: {{istio: ingressgateway}}}}\n  jwtRules:\n  - {{issuer: i, jwks: '{JWKS}'}}",
        ),
        base=base,
    )
    assert _hcm_filters(snap, "0.0.0.0_8080", "")[:2] == [JWT_AUTHN, SET_FILTER_STATE]


# ---------------------------------------------------------------------------------------- RBAC


def test_request_principal_matchers() -> None:
    exact = jwt_principal("request_principal", "iss/sub")
    assert exact is not None and exact.filter_state.key == REQUEST_PRINCIPAL_KEY
    assert exact.filter_state.string_match.exact == "iss/sub"
    prefix = jwt_principal("request_principal", "https://iss/*")
    assert prefix is not None and prefix.filter_state.string_match.prefix == "https://iss/"
    suffix = jwt_principal("request_principal", "*/alice")
    assert suffix is not None and suffix.filter_state.string_match.suffix == "/alice"
    anyone = jwt_principal("request_principal", "*")
    assert anyone is not None and anyone.metadata.filter == JWT_AUTHN
    assert [s.key for s in anyone.metadata.path] == [PAYLOAD_KEY, "iss"] and anyone.metadata.value.present_match


def test_request_auth_claims() -> None:
    assert claim_path("request_auth:claims[groups]") == ("groups",)
    assert claim_path("request_auth:claims[realm][role]") == ("realm", "role")
    assert claim_path("request_auth:audiences") == ("aud",)
    assert claim_path("request_auth:presenter") == ("azp",)
    assert claim_path("request_auth:claims[]") is None and claim_path("request_auth:nope") is None
    p = jwt_principal("request_auth:claims[realm][role]", "ops")
    assert p is not None and [s.key for s in p.metadata.path] == [PAYLOAD_KEY, "realm", "role"]
    either = p.metadata.value.or_match.value_matchers
    assert either[0].string_match.exact == "ops" and either[1].list_match.one_of.string_match.exact == "ops"
    assert jwt_principal("request_auth:unknown", "x") is None


def test_policy_with_request_principals_and_claims() -> None:
    docs, _ = parse_documents(
        """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a}
spec:
  rules:
  - from:
    - source: {requestPrincipals: ["iss/alice"], notRequestPrincipals: ["iss/bob"]}
    when:
    - {key: "request.auth.principal", values: ["iss/alice"]}
    - {key: "request.auth.claims[groups]", values: ["dev"]}
    - {key: "request.auth.unknown", values: ["x"]}
""",
        "a.yaml",
    )
    rule = translate_rule(docs[0].spec.rules[0], "default")
    assert rule.sources == (
        (AuthzField("request_principal", ("iss/alice",)), AuthzField("request_principal", ("iss/bob",), negate=True)),
    )
    policy = rbac_policy(rule)
    ids = policy.principals[0].and_ids.ids
    assert ids[0].filter_state.string_match.exact == "iss/alice"
    assert ids[1].not_id.filter_state.string_match.exact == "iss/bob"
    assert ids[2].filter_state.string_match.exact == "iss/alice"
    assert ids[3].metadata.path[1].key == "groups"
    assert ids[4].not_id.any  # an unknown request.auth key never holds
    assert rbac_policy(AuthzRule(conditions=(AuthzField("request_auth:presenter", ("x",)),))).principals[0].metadata


# ---------------------------------------------------------------------------------------- apply reports


def test_enforcement_reports() -> None:
    resources, issues = parse_documents(
        """apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: r}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]
  jwtRules:
  - {issuer: inline, jwks: '{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}'}
  - {issuer: mesh, jwksUri: "http://jwks.default.svc.cluster.local:8000/k"}
  - {issuer: short, jwksUri: "http://jwks/k"}
  - {issuer: external, jwksUri: "https://example.com/k"}
  - {issuer: discovery}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a}
spec:
  rules:
  - from:
    - source: {requestPrincipals: ["*"], notRequestPrincipals: ["x/y"]}
    when:
    - {key: "request.auth.claims[iss]", values: ["me"]}
    - {key: "request.auth.audiences", values: ["me"]}
    - {key: "request.auth.presenter", values: ["me"]}
    - {key: "request.auth.principal", values: ["me"]}
""",
        "s.yaml",
    )
    assert not [i for i in issues if i.level == "error"]
    ra, authz = resources
    assert not_enforced_fields(ra) == ["spec.targetRefs", "spec.jwtRules[3].jwksUri", "spec.jwtRules[4].issuer"]
    assert not_enforced_fields(authz) == []


def test_issuer_is_required() -> None:
    _, issues = parse_documents(_ra("r", "default", "  jwtRules:\n  - {jwks: x}"), "r.yaml")
    assert [i.field for i in issues if i.level == "error"] == ["spec.jwtRules[0].issuer", "spec.jwtRules[0].jwks"]


def test_payload_key_is_shared_by_every_provider() -> None:
    config = jwt_authentication((JwtProvider("origins-0", "a"), JwtProvider("origins-1", "b")))
    assert {p.payload_in_metadata for p in config.providers.values()} == {PAYLOAD_KEY}
    assert isinstance(config, jwt_pb2.JwtAuthentication)
