"""RequestAuthentication -> Envoy `envoy.filters.http.jwt_authn`, and the RBAC principals that read
what it verified (AuthorizationPolicy `requestPrincipals`, `request.auth.*` conditions).

* One provider per jwtRules entry; one rule for every path requiring any provider or no token at all
  (`allow_missing`): a request without a token passes on to authorization, one with a token no
  provider verifies gets 401 ("Jwt verification fails", "Jwt issuer is not configured"), as Istio.
* Each provider writes the verified payload to dynamic metadata `envoy.filters.http.jwt_authn`
  under `payload`: RBAC matches claims there (`request.auth.claims[a][b]`, `audiences` = `aud`,
  `presenter` = `azp`).
* Istio's request principal is "<iss>/<sub>". Envoy has no such value, so a `set_filter_state`
  filter after jwt_authn formats it from the payload into the filter state string
  `REQUEST_PRINCIPAL_KEY`; RBAC matches that (exact, prefix "abc*", suffix "*abc"), and "*" (any
  request principal) as "the payload has an issuer".
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2, http_uri_pb2, substitution_format_string_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.common.set_filter_state.v3 import value_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.http.set_filter_state.v3 import set_filter_state_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.type.matcher.v3 import filter_state_pb2, metadata_pb2, regex_pb2, string_pb2
from envoy.type.matcher.v3 import value_pb2 as matcher_value_pb2
from google.protobuf import duration_pb2, empty_pb2

from gossamer.ir.security import JwtProvider
from gossamer.xds.build.common import pack

JWT_AUTHN = "envoy.filters.http.jwt_authn"
SET_FILTER_STATE = "envoy.filters.http.set_filter_state"
PAYLOAD_KEY = "payload"  # jwt_authn payload_in_metadata: metadata[JWT_AUTHN][PAYLOAD_KEY] = claims
REQUEST_PRINCIPAL_KEY = "io.gossamer.request.auth.principal"
JWKS_CACHE_SECONDS = 300  # Istio's default for remote JWKS

# Istio's answer when it cannot get an issuer's keys: a JWKS whose private key nobody holds, so
# every token of that issuer fails verification (401) while requests without a token still pass.
FAKE_JWKS = (
    '{"keys":[{"kty":"RSA","alg":"RS256","use":"sig","kid":"gossamer-unavailable","e":"AQAB","n":"'
    "uYtZ-BzpIO_Jbau-oR1dNqIU0PsPCPOLgoPu-slk5FeD8PuoznL2c8xNK7VDyWcdKSOcCmwP_vNSqRuiEZkeQDLtEIGPTgDcwvI"
    "542lKkQgwYaDdDIJb2pBA_DsX1dHnyxfZ-KcW9E5duCCyswnPX27gBZxrb5IK1cus7aDUGbooVvC1ih67VtV4TuXlrRdCtTfiBt"
    "jOGlYvJaM2JAmeanriZ4MK6RYmrnBXp11GTmdGs7O034rQCPWTCn2CsjKX-FVNjXeJiA-MhHc6GdJhTYNuYimjZvD3pnKw3OJx"
    'WaHjgw_gyRd0J3FsO8Ynl3sk3KstI4A8SsLrKN2Wq5sEVw"}]}'
)

# `request.auth.<key>` conditions -> the claim path they read.
_AUTH_CLAIMS = {"audiences": ("aud",), "presenter": ("azp",)}


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def jwt_provider(p: JwtProvider) -> jwt_pb2.JwtProvider:
    out = jwt_pb2.JwtProvider(
        issuer=p.issuer,
        audiences=list(p.audiences),
        forward=p.forward_original_token,
        from_headers=[jwt_pb2.JwtHeader(name=h.name, value_prefix=h.prefix) for h in p.from_headers],
        from_params=list(p.from_params),
        from_cookies=list(p.from_cookies),
        forward_payload_header=p.output_payload_to_header,
        payload_in_metadata=PAYLOAD_KEY,
        claim_to_headers=[jwt_pb2.JwtClaimToHeader(header_name=h, claim_name=c) for h, c in p.claim_to_headers],
    )
    if p.jwks_cluster:
        out.remote_jwks.CopyFrom(
            jwt_pb2.RemoteJwks(
                http_uri=http_uri_pb2.HttpUri(
                    uri=p.jwks_uri, cluster=p.jwks_cluster, timeout=_duration(p.jwks_timeout_seconds)
                ),
                cache_duration=_duration(JWKS_CACHE_SECONDS),
            )
        )
    else:
        out.local_jwks.CopyFrom(base_pb2.DataSource(inline_string=p.jwks or FAKE_JWKS))
    return out


def jwt_authentication(providers: tuple[JwtProvider, ...]) -> jwt_pb2.JwtAuthentication:
    requirements = [jwt_pb2.JwtRequirement(provider_name=p.name) for p in providers]
    requirements.append(jwt_pb2.JwtRequirement(allow_missing=empty_pb2.Empty()))
    config = jwt_pb2.JwtAuthentication(
        rules=[
            jwt_pb2.RequirementRule(
                match=rc.RouteMatch(prefix="/"),
                requires=jwt_pb2.JwtRequirement(requires_any=jwt_pb2.JwtRequirementOrList(requirements=requirements)),
            )
        ],
        bypass_cors_preflight=True,
    )
    for p in providers:
        config.providers[p.name].CopyFrom(jwt_provider(p))
    return config


def _payload_format(claim: str) -> str:
    return f"%DYNAMIC_METADATA({JWT_AUTHN}:{PAYLOAD_KEY}:{claim})%"


def request_principal_state() -> set_filter_state_pb2.Config:
    """Filter state REQUEST_PRINCIPAL_KEY = "<iss>/<sub>" of the verified token ("/" without one)."""
    fmt = substitution_format_string_pb2.SubstitutionFormatString(
        text_format_source=base_pb2.DataSource(inline_string=f"{_payload_format('iss')}/{_payload_format('sub')}"),
        omit_empty_values=True,
    )
    return set_filter_state_pb2.Config(
        on_request_headers=[
            value_pb2.FilterStateValue(object_key=REQUEST_PRINCIPAL_KEY, factory_key="envoy.string", format_string=fmt)
        ]
    )


def jwt_filters(providers: tuple[JwtProvider, ...]) -> list[hcm_pb2.HttpFilter]:
    """jwt_authn and the request principal, for the HCM ahead of RBAC; nothing without providers."""
    if not providers:
        return []
    return [
        hcm_pb2.HttpFilter(name=JWT_AUTHN, typed_config=pack(jwt_authentication(providers))),
        hcm_pb2.HttpFilter(name=SET_FILTER_STATE, typed_config=pack(request_principal_state())),
    ]


# ------------------------------------------------------------------------------------ RBAC


def _istio_string(value: str) -> string_pb2.StringMatcher:
    """Istio's string values: "*" any (non-empty), "abc*" prefix, "*abc" suffix, else exact."""
    if value == "*":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=".+"))
    if value.endswith("*"):
        return string_pb2.StringMatcher(prefix=value[:-1])
    if value.startswith("*"):
        return string_pb2.StringMatcher(suffix=value[1:])
    return string_pb2.StringMatcher(exact=value)


def _payload_matcher(path: tuple[str, ...], value: matcher_value_pb2.ValueMatcher) -> rbac_pb2.Principal:
    segments = [metadata_pb2.MetadataMatcher.PathSegment(key=k) for k in (PAYLOAD_KEY, *path)]
    return rbac_pb2.Principal(metadata=metadata_pb2.MetadataMatcher(filter=JWT_AUTHN, path=segments, value=value))


def claim_path(key: str) -> tuple[str, ...] | None:
    """`request_auth:claims[a][b]` -> ("a", "b"); audiences -> ("aud",); presenter -> ("azp",)."""
    name = key[len("request_auth:") :]
    if name in _AUTH_CLAIMS:
        return _AUTH_CLAIMS[name]
    if name.startswith("claims[") and name.endswith("]"):
        parts = tuple(name[len("claims[") : -1].split("]["))
        if all(parts):
            return parts
    return None


def _claim_value(path: tuple[str, ...], value: str) -> rbac_pb2.Principal:
    """A claim equal to `value`, or a list claim holding it (as Istio matches `aud`, `groups`...)."""
    string = matcher_value_pb2.ValueMatcher(string_match=_istio_string(value))
    either = matcher_value_pb2.ValueMatcher(
        or_match=matcher_value_pb2.OrMatcher(
            value_matchers=[
                string,
                matcher_value_pb2.ValueMatcher(list_match=matcher_value_pb2.ListMatcher(one_of=string)),
            ]
        )
    )
    return _payload_matcher(path, either)


def jwt_principal(key: str, value: str) -> rbac_pb2.Principal | None:
    """RBAC principal for `request_principal` and `request_auth:*` fields; None if not supported."""
    if key == "request_principal":
        if value == "*":
            return _payload_matcher(("iss",), matcher_value_pb2.ValueMatcher(present_match=True))
        return rbac_pb2.Principal(
            filter_state=filter_state_pb2.FilterStateMatcher(
                key=REQUEST_PRINCIPAL_KEY, string_match=_istio_string(value)
            )
        )
    if key.startswith("request_auth:"):
        path = claim_path(key)
        return _claim_value(path, value) if path is not None else None
    return None
