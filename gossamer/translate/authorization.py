"""Istio's AuthorizationPolicy -> IR (`ir/authorization.py`; RBAC filters in `xds/build/authorization.py`).

Policies in the root namespace apply mesh-wide (narrowed by their selector), others to the workloads of
their namespace their selector picks. CUSTOM is not enforced; targetRef binds gateways and waypoints of
the Kubernetes Gateway API, not here.
"""

from __future__ import annotations

from gossamer.ir.authorization import AuthzField, AuthzPolicy, AuthzRule
from gossamer.mesh import DEFAULT_TRUST_DOMAINS, ROOT_NAMESPACE, TrustDomains, principal
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy
from gossamer.resources.security import AuthorizationPolicy, Operation, Rule, Source
from gossamer.translate.security import trust_domains, workload_selected

# Fields only HTTP has: on TCP chains an ALLOW rule using them never matches, and a DENY rule
# is applied without them (so it denies more), as Istio does.
HTTP_ONLY_KEYS = ("host", "method", "path", "header:", "request_principal", "request_auth:")


def is_http_only(key: str) -> bool:
    return any(key == k or (k.endswith(":") and key.startswith(k)) for k in HTTP_ONLY_KEYS)


def tcp_rules(action: str, rules: tuple[AuthzRule, ...]) -> tuple[AuthzRule, ...]:
    """Istio on TCP: an ALLOW (or AUDIT) rule with HTTP-only fields never matches, so it is dropped;
    a DENY rule is applied without them."""

    def has_http(rule: AuthzRule) -> bool:
        return any(is_http_only(f.key) for group in (*rule.sources, *rule.operations, rule.conditions) for f in group)

    def strip(fields: tuple[AuthzField, ...]) -> tuple[AuthzField, ...]:
        return tuple(f for f in fields if not is_http_only(f.key))

    if action != "DENY":
        return tuple(r for r in rules if not has_http(r))
    return tuple(
        AuthzRule(tuple(strip(s) for s in r.sources), tuple(strip(o) for o in r.operations), strip(r.conditions))
        for r in rules
    )


def _field(key: str, values: list[str] | None, not_values: list[str] | None) -> list[AuthzField]:
    out = []
    if values:
        out.append(AuthzField(key, tuple(values)))
    if not_values:
        out.append(AuthzField(key, tuple(not_values), negate=True))
    return out


def _service_account_principals(values: list[str] | None, namespace: str, td: TrustDomains) -> list[str] | None:
    """serviceAccounts are identities of the local trust domain (and so of its aliases)."""
    if not values:
        return None
    out = []
    for v in values:
        ns, _, sa = v.rpartition("/")
        out.append(principal(ns or namespace, sa, td.domain))
    return td.principals(out)


def _principals(values: list[str] | None, td: TrustDomains) -> list[str] | None:
    """Principals as Istio's trust domain bundle rewrites them (gossamer/mesh.py TrustDomains)."""
    return td.principals(values) if values else None


def _source_fields(src: Source, namespace: str, td: TrustDomains) -> tuple[AuthzField, ...]:
    fields = [
        *_field("principal", _principals(src.principals, td), _principals(src.not_principals, td)),
        *_field(
            "principal",
            _service_account_principals(src.service_accounts, namespace, td),
            _service_account_principals(src.not_service_accounts, namespace, td),
        ),
        *_field("request_principal", src.request_principals, src.not_request_principals),
        *_field("namespace", src.namespaces, src.not_namespaces),
        *_field("ip", src.ip_blocks, src.not_ip_blocks),
        *_field("remote_ip", src.remote_ip_blocks, src.not_remote_ip_blocks),
    ]
    return tuple(fields)


def _operation_fields(op: Operation) -> tuple[AuthzField, ...]:
    return tuple(
        [
            *_field("host", op.hosts, op.not_hosts),
            *_field("port", op.ports, op.not_ports),
            *_field("method", op.methods, op.not_methods),
            *_field("path", op.paths, op.not_paths),
        ]
    )


_CONDITION_KEYS = {
    "source.ip": "ip",
    "remote.ip": "remote_ip",
    "source.namespace": "namespace",
    "source.principal": "principal",
    "destination.ip": "destination_ip",
    "destination.port": "port",
    "connection.sni": "sni",
    "request.auth.principal": "request_principal",
}


def condition_key(key: str) -> str:
    """An Istio `when` key -> an AuthzField key ("" if not supported)."""
    if key.startswith("request.headers[") and key.endswith("]"):
        return "header:" + key[len("request.headers[") : -1]
    if key in _CONDITION_KEYS:
        return _CONDITION_KEYS[key]
    if key.startswith("request.auth."):
        return "request_auth:" + key[len("request.auth.") :]
    return ""


def translate_rule(rule: Rule, namespace: str, td: TrustDomains = DEFAULT_TRUST_DOMAINS) -> AuthzRule:
    conditions: list[AuthzField] = []
    for cond in rule.when or []:
        key = condition_key(cond.key)
        values, not_values = cond.values, cond.not_values
        if key == "principal":
            values, not_values = _principals(values, td), _principals(not_values, td)
        # Unknown keys cannot be told apart: such a condition never holds (a rule fails closed).
        conditions.extend(_field(key or f"unsupported:{cond.key}", values, not_values))
    return AuthzRule(
        sources=tuple(_source_fields(f.source, namespace, td) for f in rule.from_ or []),
        operations=tuple(_operation_fields(t.operation) for t in rule.to or []),
        conditions=tuple(conditions),
    )


def authz_applies(policy: AuthorizationPolicy, proxy: Proxy) -> bool:
    spec = policy.spec
    if spec.target_ref is not None or spec.target_refs:
        return False  # targetRef binds gateways and waypoints (Kubernetes Gateway API): not here
    if policy.metadata.namespace not in (ROOT_NAMESPACE, proxy.namespace):
        return False
    return workload_selected(spec.selector, proxy.label_map)


def authorization_policies(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[AuthzPolicy, ...]:
    td = trust_domains(snapshot)
    out = []
    for policy in snapshot.of_kind(AuthorizationPolicy):
        if policy.spec.action == "CUSTOM" or not authz_applies(policy, proxy):
            continue
        ns = policy.metadata.namespace
        rules = tuple(translate_rule(r, ns, td) for r in policy.spec.rules or [])
        out.append(
            AuthzPolicy(
                f"{ns}/{policy.metadata.name}",
                policy.spec.action,
                rules,
                tcp_rules=tcp_rules(policy.spec.action, rules),
            )
        )
    return tuple(out)
