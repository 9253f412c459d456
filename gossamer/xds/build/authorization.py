"""IR authorization -> Envoy RBAC filters: `envoy.filters.http.rbac` in HTTP connection managers,
`envoy.filters.network.rbac` before tcp_proxy, in Istio's order (AUDIT, DENY, ALLOW) and with Istio's
policy names `ns[NS]-policy[NAME]-rule[I]`."""

from __future__ import annotations

import re

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.type.matcher.v3 import path_pb2, regex_pb2, string_pb2
from google.protobuf import wrappers_pb2

from gossamer.ir.authorization import AuthzField, AuthzPolicy, AuthzRule
from gossamer.mesh import SPIFFE_SCHEME
from gossamer.xds.build.common import pack
from gossamer.xds.build.jwt import jwt_principal

HTTP_RBAC = "envoy.filters.http.rbac"
NETWORK_RBAC = "envoy.filters.network.rbac"

# Field keys decided by the request (permissions); the others are about the source (principals).
_PERMISSION_KEYS = frozenset({"host", "port", "method", "path", "destination_ip", "sni"})


def _istio_string(value: str, *, ignore_case: bool = False, prefix: str = "") -> string_pb2.StringMatcher:
    """Istio's string values: "*" any (non-empty), "abc*" prefix, "*abc" suffix, else exact."""
    if value == "*":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=".+"), ignore_case=ignore_case)
    if value.endswith("*"):
        return string_pb2.StringMatcher(prefix=prefix + value[:-1], ignore_case=ignore_case)
    if value.startswith("*"):
        return string_pb2.StringMatcher(suffix=value[1:], ignore_case=ignore_case)
    return string_pb2.StringMatcher(exact=prefix + value, ignore_case=ignore_case)


def _cidr(value: str) -> address_pb2.CidrRange:
    address, _, length = value.partition("/")
    bits = int(length) if length else (128 if ":" in address else 32)
    return address_pb2.CidrRange(address_prefix=address, prefix_len=wrappers_pb2.UInt32Value(value=bits))


def _namespace_regex(namespace: str) -> str:
    pattern = ".*".join(re.escape(part) for part in namespace.split("*"))
    return f".*/ns/{pattern}/.*"


def _header(name: str, value: str, *, ignore_case: bool = False) -> rc.HeaderMatcher:
    if value == "*":
        return rc.HeaderMatcher(name=name, present_match=True)
    return rc.HeaderMatcher(name=name, string_match=_istio_string(value, ignore_case=ignore_case))


def _never() -> rbac_pb2.Principal:
    return rbac_pb2.Principal(not_id=rbac_pb2.Principal(any=True))


def _principal_value(key: str, value: str) -> rbac_pb2.Principal:
    authenticated = rbac_pb2.Principal.Authenticated
    if key == "principal":
        return rbac_pb2.Principal(
            authenticated=authenticated(
                principal_name=_istio_string(value, prefix=SPIFFE_SCHEME)
                if value != "*" and not value.startswith("*")
                else _istio_string(value)
            )
        )
    if key == "namespace":
        return rbac_pb2.Principal(
            authenticated=authenticated(
                principal_name=string_pb2.StringMatcher(
                    safe_regex=regex_pb2.RegexMatcher(regex=_namespace_regex(value))
                )
            )
        )
    if key == "ip":
        return rbac_pb2.Principal(direct_remote_ip=_cidr(value))
    if key == "remote_ip":
        return rbac_pb2.Principal(remote_ip=_cidr(value))
    if key.startswith("header:"):
        return rbac_pb2.Principal(header=_header(key[len("header:") :], value))
    if key == "request_principal" or key.startswith("request_auth:"):
        # What jwt_authn verified (gossamer/xds/build/jwt.py); absent without a valid token.
        return jwt_principal(key, value) or _never()
    return _never()  # unsupported condition keys never hold


def _permission_value(key: str, value: str) -> rbac_pb2.Permission:
    if key == "host":
        return rbac_pb2.Permission(header=_header(":authority", value, ignore_case=True))
    if key == "method":
        return rbac_pb2.Permission(header=_header(":method", value))
    if key == "path":
        return rbac_pb2.Permission(url_path=path_pb2.PathMatcher(path=_istio_string(value)))
    if key == "port":
        return rbac_pb2.Permission(destination_port=int(value))
    if key == "destination_ip":
        return rbac_pb2.Permission(destination_ip=_cidr(value))
    return rbac_pb2.Permission(requested_server_name=_istio_string(value))  # sni


def _principal_field(f: AuthzField) -> rbac_pb2.Principal:
    values = [_principal_value(f.key, v) for v in f.values]
    out = values[0] if len(values) == 1 else rbac_pb2.Principal(or_ids=rbac_pb2.Principal.Set(ids=values))
    return rbac_pb2.Principal(not_id=out) if f.negate else out


def _permission_field(f: AuthzField) -> rbac_pb2.Permission:
    values = [_permission_value(f.key, v) for v in f.values]
    out = values[0] if len(values) == 1 else rbac_pb2.Permission(or_rules=rbac_pb2.Permission.Set(rules=values))
    return rbac_pb2.Permission(not_rule=out) if f.negate else out


def _all_principals(fields: list[AuthzField]) -> rbac_pb2.Principal:
    ids = [_principal_field(f) for f in fields]
    if not ids:
        return rbac_pb2.Principal(any=True)
    return ids[0] if len(ids) == 1 else rbac_pb2.Principal(and_ids=rbac_pb2.Principal.Set(ids=ids))


def _all_permissions(fields: list[AuthzField]) -> rbac_pb2.Permission:
    rules = [_permission_field(f) for f in fields]
    if not rules:
        return rbac_pb2.Permission(any=True)
    return rules[0] if len(rules) == 1 else rbac_pb2.Permission(and_rules=rbac_pb2.Permission.Set(rules=rules))


def _split(fields: tuple[AuthzField, ...]) -> tuple[list[AuthzField], list[AuthzField]]:
    return ([f for f in fields if f.key in _PERMISSION_KEYS], [f for f in fields if f.key not in _PERMISSION_KEYS])


def rbac_policy(rule: AuthzRule) -> rbac_pb2.Policy:
    """Permissions: any `to` operation (and the destination conditions); principals: any `from`
    source (and the source conditions). Fields of one entry are ANDed, values of a field ORed."""
    cond_perms, cond_principals = _split(rule.conditions)
    permissions = [_all_permissions([*op, *cond_perms]) for op in rule.operations]
    principals = [_all_principals([*src, *cond_principals]) for src in rule.sources]
    return rbac_pb2.Policy(
        permissions=permissions or [_all_permissions(cond_perms)],
        principals=principals or [_all_principals(cond_principals)],
    )


_ACTIONS = {"ALLOW": rbac_pb2.RBAC.ALLOW, "DENY": rbac_pb2.RBAC.DENY, "AUDIT": rbac_pb2.RBAC.LOG}
# Istio's order: audit (never denies), then DENY, then ALLOW.
_ORDER = ("AUDIT", "DENY", "ALLOW")


def rbac_configs(policies: tuple[AuthzPolicy, ...], *, tcp: bool) -> list[rbac_pb2.RBAC]:
    """One RBAC config per action present. An ALLOW config without policies denies everything."""
    out = []
    for action in _ORDER:
        selected = [p for p in policies if p.action == action]
        if not selected:
            continue
        config = rbac_pb2.RBAC(action=_ACTIONS[action])
        for p in selected:
            ns, _, name = p.name.partition("/")
            for i, rule in enumerate(p.tcp_rules if tcp else p.rules):
                config.policies[f"ns[{ns}]-policy[{name}]-rule[{i}]"].CopyFrom(rbac_policy(rule))
        out.append(config)
    return out


def http_rbac_filters(policies: tuple[AuthzPolicy, ...]) -> list[hcm_pb2.HttpFilter]:
    return [
        hcm_pb2.HttpFilter(name=HTTP_RBAC, typed_config=pack(http_rbac_pb2.RBAC(rules=c)))
        for c in rbac_configs(policies, tcp=False)
    ]


def network_rbac_filters(policies: tuple[AuthzPolicy, ...]) -> list[listener_components_pb2.Filter]:
    return [
        listener_components_pb2.Filter(
            name=NETWORK_RBAC, typed_config=pack(network_rbac_pb2.RBAC(rules=c, stat_prefix="tcp."))
        )
        for c in rbac_configs(policies, tcp=True)
    ]
