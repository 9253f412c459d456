"""IR for authorization (AuthorizationPolicy as it applies to one workload): plain frozen dataclasses
like the rest of the IR; `translate/authorization.py` makes them, `xds/build/authorization.py` turns
them into RBAC filters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class AuthzField:
    """One field of a rule: `key` matches any of `values` (negate: none of them).

    Keys: principal, namespace, ip, remote_ip, request_principal, host, port, method, path,
    header:<name>, destination_ip, sni, request_auth:<key> (audiences, presenter, claims[a][b]:
    what jwt_authn verified; request_principal likewise)."""

    key: str
    values: tuple[str, ...]
    negate: bool = False


@dataclass(frozen=True)
class AuthzRule:
    """An Istio rule: any `sources` entry (each an AND of fields; none: any source) and any
    `operations` entry (likewise), and every `conditions` field."""

    sources: tuple[tuple[AuthzField, ...], ...] = ()
    operations: tuple[tuple[AuthzField, ...], ...] = ()
    conditions: tuple[AuthzField, ...] = ()


AuthzAction = Literal["ALLOW", "DENY", "AUDIT"]


@dataclass(frozen=True)
class AuthzPolicy:
    """One AuthorizationPolicy as it applies to one workload. No rules: ALLOW denies everything,
    DENY and AUDIT match nothing."""

    name: str  # "<namespace>/<name>"
    action: AuthzAction
    rules: tuple[AuthzRule, ...] = ()  # on HTTP filter chains
    # On TCP filter chains (translate/authorization.py decides: HTTP-only fields drop an ALLOW rule
    # and are dropped from a DENY rule, as Istio does).
    tcp_rules: tuple[AuthzRule, ...] = ()
