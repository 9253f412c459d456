"""Validation of PeerAuthentication, AuthorizationPolicy and RequestAuthentication."""

from __future__ import annotations

from gossamer.resources import envoy_checks
from gossamer.resources.security import AuthorizationPolicy, PeerAuthentication, RequestAuthentication
from gossamer.resources.validation.common import Finding, Report, check_target


def validate_peer_authentication(res: PeerAuthentication) -> list[Finding]:
    rep = Report()
    spec = res.spec
    if spec.port_level_mtls and (spec.selector is None or not spec.selector.match_labels):
        rep.error(("spec", "portLevelMtls"), "portLevelMtls requires a workload selector")
    for port in spec.port_level_mtls or {}:
        if not 1 <= port <= 65535:
            rep.error(("spec", "portLevelMtls", port), f"port {port} must be in the range 1-65535")
    return rep.findings


def validate_authorization_policy(res: AuthorizationPolicy) -> list[Finding]:
    rep = Report()
    spec = res.spec
    check_target(rep, spec)
    if spec.action == "CUSTOM" and spec.provider is None:
        rep.error(("spec", "provider"), "action CUSTOM needs a provider")
    if spec.provider is not None and spec.action != "CUSTOM":
        rep.error(("spec", "provider"), "provider is only allowed with action CUSTOM")
    for i, rule in enumerate(spec.rules or []):
        envoy_checks.authorization_rule(rep.error, ("spec", "rules", i), rule)
        for j, cond in enumerate(rule.when or []):
            if not cond.values and not cond.not_values:
                rep.error(("spec", "rules", i, "when", j), "condition needs values or notValues")
    return rep.findings


def validate_request_authentication(res: RequestAuthentication) -> list[Finding]:
    rep = Report()
    spec = res.spec
    check_target(rep, spec)
    for i, rule in enumerate(spec.jwt_rules or []):
        if not rule.issuer:
            rep.error(("spec", "jwtRules", i, "issuer"), "issuer is required")
        envoy_checks.jwt_rule(rep.error, ("spec", "jwtRules", i), rule)
    return rep.findings
