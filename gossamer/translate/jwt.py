"""RequestAuthentication -> IR JWT providers (Envoy's jwt_authn), Istio's semantics.

* Every RequestAuthentication that applies to a workload counts (unlike PeerAuthentication there is
  no precedence): those of the root namespace istio-system (narrowed by their selector) and those of
  the workload's namespace whose selector picks it. targetRef(s) (gateways, waypoints of the
  Kubernetes Gateway API) are not enforced.
* Each jwtRules entry is one provider. A request without a token passes (authorization decides); a
  request with a token that no provider verifies is rejected with 401.
* Keys: `jwks` inline; `jwksUri` fetched by Envoy through the outbound cluster when a mesh service
  serves it; otherwise (an external URI, or OpenID discovery without either) the provider has no
  keys, so tokens of its issuer are rejected, as Istio does with its fake JWKS when it cannot fetch
  the keys. `gossamer apply` reports such rules as not enforced.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from gossamer.ir.security import JwtHeader, JwtProvider
from gossamer.mesh import CLUSTER_DOMAIN, DOMAIN_SUFFIX, ROOT_NAMESPACE, outbound_cluster_name
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import MeshService, Proxy
from gossamer.resources.security import JWTRule, RequestAuthentication
from gossamer.translate.hosts import resolve_host
from gossamer.translate.visibility import visible_services


def request_authentication_applies(policy: RequestAuthentication, proxy: Proxy) -> bool:
    spec = policy.spec
    if spec.target_ref is not None or spec.target_refs:
        return False
    if policy.metadata.namespace not in (ROOT_NAMESPACE, proxy.namespace):
        return False
    wanted = (spec.selector.match_labels or {}) if spec.selector is not None else {}
    labels = proxy.label_map
    return all(labels.get(k) == v for k, v in wanted.items())


def jwks_service_host_candidates(host: str, namespace: str) -> list[str]:
    """Names a jwksUri host may give a mesh service by: short, name.ns, name.ns.svc, or the FQDN."""
    out = [resolve_host(host, namespace)]
    if host.count(".") == 1:
        out.append(f"{host}.{DOMAIN_SUFFIX}")
    if host.endswith(".svc"):
        out.append(f"{host}.{CLUSTER_DOMAIN}")
    return out


def jwks_cluster(snapshot: MeshSnapshot, proxy: Proxy, uri: str, namespace: str) -> str:
    """The outbound cluster of the mesh service serving `uri`, or "" when none of this proxy's does."""
    try:
        parts = urlsplit(uri)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    visible: dict[str, MeshService] = {s.hostname: s for s in visible_services(snapshot, proxy)}
    for candidate in jwks_service_host_candidates(parts.hostname, namespace):
        service = visible.get(candidate)
        if service is not None and service.port(port) is not None:
            return outbound_cluster_name(service.hostname, port)
    return ""


def _provider(
    snapshot: MeshSnapshot, proxy: Proxy, policy: RequestAuthentication, rule: JWTRule, name: str
) -> JwtProvider:
    ns = policy.metadata.namespace
    cluster = ""
    if not rule.jwks and rule.jwks_uri:
        cluster = jwks_cluster(snapshot, proxy, rule.jwks_uri, ns)
    return JwtProvider(
        name=name,
        issuer=rule.issuer,
        source=f"{ns}/{policy.metadata.name}",
        audiences=tuple(rule.audiences or ()),
        jwks=rule.jwks or "",
        jwks_uri=(rule.jwks_uri or "") if cluster else "",
        jwks_cluster=cluster,
        jwks_timeout_seconds=rule.timeout.seconds if rule.timeout else 5.0,
        from_headers=tuple(JwtHeader(h.name, h.prefix or "") for h in rule.from_headers or ()),
        from_params=tuple(rule.from_params or ()),
        from_cookies=tuple(rule.from_cookies or ()),
        forward_original_token=bool(rule.forward_original_token),
        output_payload_to_header=rule.output_payload_to_header or "",
        claim_to_headers=tuple((c.header, c.claim) for c in rule.output_claim_to_headers or ()),
    )


def request_authentication(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[JwtProvider, ...]:
    """The jwt_authn providers of one workload (or gateway), named origins-<i> in policy order."""
    out: list[JwtProvider] = []
    for policy in snapshot.of_kind(RequestAuthentication):
        if not request_authentication_applies(policy, proxy):
            continue
        for rule in policy.spec.jwt_rules or []:
            if rule.issuer:
                out.append(_provider(snapshot, proxy, policy, rule, f"origins-{len(out)}"))
    return tuple(out)
