"""Which fields of a configuration this version accepts but does not act on yet.

Shrink `NOT_ENFORCED_HTTP`, `NOT_ENFORCED_TRAFFIC_POLICY` (and friends) as features land.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from gossamer.mesh import DOMAIN_SUFFIX
from gossamer.resources.base import FieldPath, Resource, format_path
from gossamer.resources.issues import Issue
from gossamer.resources.telemetry import applies_to_all

# Fields of a VirtualService http route (spec.http[i].<field>) not enforced yet.
NOT_ENFORCED_HTTP: frozenset[str] = frozenset()

# Top-level VirtualService route lists not enforced yet (spec.<field>).
NOT_ENFORCED_VS: frozenset[str] = frozenset()

# Fields of tcp/tls route matches (spec.tcp[i].match[k].<field>) not enforced yet.
NOT_ENFORCED_L4_MATCH: frozenset[str] = frozenset({"sourceSubnet"})

# Sidecar fields not enforced yet: spec.<field>, spec.egress[i].<field>,
# spec.outboundTrafficPolicy.<field>. Enforced: workloadSelector, egress[].hosts,
# outboundTrafficPolicy.mode.
NOT_ENFORCED_SIDECAR: frozenset[str] = frozenset({"ingress", "inboundConnectionPool"})
NOT_ENFORCED_SIDECAR_EGRESS: frozenset[str] = frozenset({"port", "bind", "captureMode"})
NOT_ENFORCED_OUTBOUND_POLICY: frozenset[str] = frozenset({"egressProxy"})

# Fields of a DestinationRule traffic policy (service level, subset level and port level:
# spec.trafficPolicy.<field>, spec.subsets[i].trafficPolicy.<field>,
# ...portLevelSettings[j].<field>) not enforced yet.
NOT_ENFORCED_TRAFFIC_POLICY: frozenset[str] = frozenset(
    {
        "tunnel",
        "proxyProtocol",
        "retryBudget",
    }
)

# Fields of a traffic policy's loadBalancer (...loadBalancer.<field>) not enforced yet.
NOT_ENFORCED_LOAD_BALANCER: frozenset[str] = frozenset({"localityLbSetting"})

# Fields of a traffic policy's tls (...tls.<field>) not enforced yet: mode, sni, subjectAltNames,
# caCertificates, clientCertificate, privateKey and insecureSkipVerify are.
NOT_ENFORCED_CLIENT_TLS: frozenset[str] = frozenset({"credentialName", "caCrl"})

# Whole kinds accepted but not acted on yet.
NOT_ENFORCED_KINDS: frozenset[str] = frozenset()

# Telemetry: enforced are selector, accessLogging[].disabled (provider `envoy`: the text log on stdout),
# metrics[].overrides[].disabled for every metric on both sides (no match, or ALL_METRICS in
# CLIENT_AND_SERVER mode) and tracing[] (match.mode, disableSpanReporting, randomSamplingPercentage,
# customTags, providers: mesh config extensionProviders `zipkin`/`opentelemetry`, default: the control
# plane's collector). Target refs, other access log / metrics providers,
# filters, tag overrides, useRequestIdForTraceSampling and enableIstioTags (istio.* span tags) are not.
NOT_ENFORCED_TELEMETRY_SPEC: frozenset[str] = frozenset({"targetRef", "targetRefs"})
NOT_ENFORCED_TRACING: frozenset[str] = frozenset({"useRequestIdForTraceSampling", "enableIstioTags"})
NOT_ENFORCED_ACCESS_LOGGING: frozenset[str] = frozenset({"filter"})
NOT_ENFORCED_METRICS: frozenset[str] = frozenset({"reportingInterval"})
NOT_ENFORCED_METRIC_OVERRIDE: frozenset[str] = frozenset({"tagOverrides"})
ENFORCED_PROVIDERS: frozenset[str] = frozenset({"envoy", "prometheus"})

# AuthorizationPolicy: CUSTOM (external authorizers) and targetRef(s) (gateways, waypoints) are not
# enforced. Request principals and request.auth.* come from JWTs verified per RequestAuthentication.
NOT_ENFORCED_AUTHZ_SPEC: frozenset[str] = frozenset({"targetRef", "targetRefs", "provider"})
NOT_ENFORCED_AUTHZ_SOURCE: frozenset[str] = frozenset()
ENFORCED_AUTHZ_CONDITION_PREFIXES: tuple[str, ...] = (
    "request.headers[",
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "destination.ip",
    "destination.port",
    "connection.sni",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "request.auth.claims[",
)

# RequestAuthentication: targetRef(s) are not enforced. Keys are: inline `jwks`, or a `jwksUri` a
# mesh service serves (fetched by Envoy through its outbound cluster). Keys elsewhere (an external
# jwksUri, or OpenID discovery from the issuer without either) are not fetched: tokens of that
# issuer are rejected, as Istio does when it cannot get the keys.
NOT_ENFORCED_REQUEST_AUTHN_SPEC: frozenset[str] = frozenset({"targetRef", "targetRefs"})
# EnvoyFilter: targetRefs (waypoints, Gateway API gateways) are not enforced; neither are EXTENSION_CONFIG
# and BOOTSTRAP patches (validation rejects them) nor patch.filterClass.
NOT_ENFORCED_ENVOY_FILTER_SPEC: frozenset[str] = frozenset({"targetRefs"})
MESH_HOST_SUFFIXES: tuple[str, ...] = (".svc", "." + DOMAIN_SUFFIX)


def _traffic_policy_paths(tp: Any, path: FieldPath) -> list[FieldPath]:
    out: list[FieldPath] = []
    if not isinstance(tp, dict):
        return out
    out += _policy_level_paths(tp, path)
    for j, pls in enumerate(tp.get("portLevelSettings") or []):
        if isinstance(pls, dict):
            out += _policy_level_paths(pls, path + ("portLevelSettings", j))
    return out


def _policy_level_paths(tp: dict[str, Any], path: FieldPath) -> list[FieldPath]:
    out: list[FieldPath] = [path + (key,) for key in tp if key in NOT_ENFORCED_TRAFFIC_POLICY]
    lb = tp.get("loadBalancer")
    if isinstance(lb, dict):
        out += [path + ("loadBalancer", key) for key in lb if key in NOT_ENFORCED_LOAD_BALANCER]
    tls = tp.get("tls")
    if isinstance(tls, dict):
        out += [path + ("tls", key) for key in tls if key in NOT_ENFORCED_CLIENT_TLS]
    return out


def _authorization_paths(spec: dict[str, Any]) -> list[FieldPath]:
    out: list[FieldPath] = [("spec", key) for key in spec if key in NOT_ENFORCED_AUTHZ_SPEC]
    if spec.get("action") == "CUSTOM":
        out.append(("spec", "action"))
    for i, rule in enumerate(spec.get("rules") or []):
        if not isinstance(rule, dict):
            continue
        for j, source in enumerate(rule.get("from") or []):
            fields = source.get("source") if isinstance(source, dict) else None
            if isinstance(fields, dict):
                out += [
                    ("spec", "rules", i, "from", j, "source", key) for key in fields if key in NOT_ENFORCED_AUTHZ_SOURCE
                ]
        for k, cond in enumerate(rule.get("when") or []):
            key = cond.get("key") if isinstance(cond, dict) else None
            if isinstance(key, str) and not key.startswith(ENFORCED_AUTHZ_CONDITION_PREFIXES):
                out.append(("spec", "rules", i, "when", k, "key"))
    return out


def is_mesh_jwks_uri(uri: str) -> bool:
    """A jwksUri that names a Kubernetes service ("name", "name.ns.svc", the FQDN) over HTTP(S)."""
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host) and ("." not in host or host.endswith(MESH_HOST_SUFFIXES))


def _request_authentication_paths(spec: dict[str, Any]) -> list[FieldPath]:
    out: list[FieldPath] = [("spec", key) for key in spec if key in NOT_ENFORCED_REQUEST_AUTHN_SPEC]
    for i, rule in enumerate(spec.get("jwtRules") or []):
        if not isinstance(rule, dict) or rule.get("jwks"):
            continue
        uri = rule.get("jwksUri")
        if not uri:
            out.append(("spec", "jwtRules", i, "issuer"))  # OpenID discovery
        elif not (isinstance(uri, str) and is_mesh_jwks_uri(uri)):
            out.append(("spec", "jwtRules", i, "jwksUri"))
    return out


def _telemetry_paths(spec: dict[str, Any]) -> list[FieldPath]:
    out: list[FieldPath] = [("spec", key) for key in spec if key in NOT_ENFORCED_TELEMETRY_SPEC]
    for section, fields in (
        ("accessLogging", NOT_ENFORCED_ACCESS_LOGGING),
        ("metrics", NOT_ENFORCED_METRICS),
        ("tracing", NOT_ENFORCED_TRACING),
    ):
        for i, entry in enumerate(spec.get(section) or []):
            if not isinstance(entry, dict):
                continue
            out += [("spec", section, i, key) for key in entry if key in fields]
            providers = entry.get("providers") or []
            # Tracing providers name mesh config extensionProviders (zipkin, opentelemetry), resolved per
            # proxy when translating; the others only Gossamer's own.
            if section != "tracing" and any(
                not isinstance(p, dict) or p.get("name") not in ENFORCED_PROVIDERS for p in providers
            ):
                out.append(("spec", section, i, "providers"))
            if section == "accessLogging" and not applies_to_all(entry.get("match")):
                out.append(("spec", section, i, "match"))
            for j, override in enumerate(entry.get("overrides") or [] if section == "metrics" else []):
                if not isinstance(override, dict):
                    continue
                out += [
                    ("spec", section, i, "overrides", j, key) for key in override if key in NOT_ENFORCED_METRIC_OVERRIDE
                ]
                if not applies_to_all(override.get("match")):
                    out.append(("spec", section, i, "overrides", j, "match"))
    return out


def _virtual_service_paths(spec: dict[str, Any]) -> list[FieldPath]:
    out: list[FieldPath] = []
    for i, route in enumerate(spec.get("http") or []):
        if isinstance(route, dict):
            for key in route:
                if key in NOT_ENFORCED_HTTP:
                    out.append(("spec", "http", i, key))
    for key in ("tcp", "tls"):
        if key in NOT_ENFORCED_VS and spec.get(key):
            out.append(("spec", key))
        for i, route in enumerate(spec.get(key) or []):
            matches = route.get("match") if isinstance(route, dict) else None
            for k, match in enumerate(matches or []):
                if isinstance(match, dict):
                    out += [("spec", key, i, "match", k, f) for f in match if f in NOT_ENFORCED_L4_MATCH]
    return out


def _sidecar_paths(spec: dict[str, Any]) -> list[FieldPath]:
    out: list[FieldPath] = [("spec", key) for key in spec if key in NOT_ENFORCED_SIDECAR]
    for i, egress in enumerate(spec.get("egress") or []):
        if isinstance(egress, dict):
            out += [("spec", "egress", i, key) for key in egress if key in NOT_ENFORCED_SIDECAR_EGRESS]
    policy = spec.get("outboundTrafficPolicy")
    if isinstance(policy, dict):
        out += [("spec", "outboundTrafficPolicy", key) for key in policy if key in NOT_ENFORCED_OUTBOUND_POLICY]
    return out


def _destination_rule_paths(spec: dict[str, Any]) -> list[FieldPath]:
    out = _traffic_policy_paths(spec.get("trafficPolicy"), ("spec", "trafficPolicy"))
    for i, subset in enumerate(spec.get("subsets") or []):
        if isinstance(subset, dict):
            out += _traffic_policy_paths(subset.get("trafficPolicy"), ("spec", "subsets", i, "trafficPolicy"))
    return out


def _envoy_filter_paths(spec: dict[str, Any]) -> list[FieldPath]:
    out: list[FieldPath] = [("spec", key) for key in spec if key in NOT_ENFORCED_ENVOY_FILTER_SPEC]
    for i, cp in enumerate(spec.get("configPatches") or []):
        patch = cp.get("patch") if isinstance(cp, dict) else None
        if isinstance(patch, dict) and "filterClass" in patch:
            out.append(("spec", "configPatches", i, "patch", "filterClass"))
    return out


# kind -> the not enforced fields of its spec (as applied: a dict)
_PATHS_OF_KIND: dict[str, Callable[[dict[str, Any]], list[FieldPath]]] = {
    "VirtualService": _virtual_service_paths,
    "Sidecar": _sidecar_paths,
    "DestinationRule": _destination_rule_paths,
    "AuthorizationPolicy": _authorization_paths,
    "RequestAuthentication": _request_authentication_paths,
    "Telemetry": _telemetry_paths,
    "EnvoyFilter": _envoy_filter_paths,
}


def not_enforced_paths(resource: Resource[Any]) -> list[FieldPath]:
    """Like `not_enforced_fields`, as field-path tuples."""
    raw = resource.raw
    spec = raw.get("spec") if isinstance(raw.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    paths_of = _PATHS_OF_KIND.get(resource.kind)
    if paths_of is not None:
        return paths_of(spec)
    return [("spec",)] if resource.kind in NOT_ENFORCED_KINDS else []


def not_enforced_fields(resource: Resource[Any]) -> list[str]:
    """Dotted paths of the fields present in `resource` that this version accepts but does not
    enforce, e.g. ["spec.http[0].retries", "spec.trafficPolicy.outlierDetection"]."""
    return [format_path(p) for p in not_enforced_paths(resource)]


def not_enforced_issues(resource: Resource[Any]) -> list[Issue]:
    """The same as warnings pointing at the lines of those fields."""
    return [
        Issue(
            "warning",
            resource.source_file,
            resource.line_of(p),
            resource.kind,
            resource.name,
            format_path(p),
            "accepted but not enforced by this version"
            if p != ("spec",)
            else f"{resource.kind} is accepted but not enforced by this version",
        )
        for p in not_enforced_paths(resource)
    ]
