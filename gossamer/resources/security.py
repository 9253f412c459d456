"""security.istio.io (v1, v1beta1): PeerAuthentication, AuthorizationPolicy,
RequestAuthentication."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gossamer.resources.base import Duration, Model, Resource


class Selector(Model):
    match_labels: dict[str, str] = Field(default_factory=dict)


class PolicyTargetReference(Model):
    group: str | None = None
    kind: str
    name: str
    namespace: str | None = None


MTLSMode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]


class MutualTLS(Model):
    mode: MTLSMode = "UNSET"


class PeerAuthenticationSpec(Model):
    selector: Selector | None = None
    mtls: MutualTLS | None = None
    port_level_mtls: dict[int, MutualTLS] | None = None


class Source(Model):
    principals: list[str] | None = None
    not_principals: list[str] | None = None
    request_principals: list[str] | None = None
    not_request_principals: list[str] | None = None
    namespaces: list[str] | None = None
    not_namespaces: list[str] | None = None
    ip_blocks: list[str] | None = None
    not_ip_blocks: list[str] | None = None
    remote_ip_blocks: list[str] | None = None
    not_remote_ip_blocks: list[str] | None = None
    service_accounts: list[str] | None = None
    not_service_accounts: list[str] | None = None


class Operation(Model):
    hosts: list[str] | None = None
    not_hosts: list[str] | None = None
    ports: list[str] | None = None
    not_ports: list[str] | None = None
    methods: list[str] | None = None
    not_methods: list[str] | None = None
    paths: list[str] | None = None
    not_paths: list[str] | None = None


class RuleFrom(Model):
    source: Source


class RuleTo(Model):
    operation: Operation


class Condition(Model):
    key: str
    values: list[str] | None = None
    not_values: list[str] | None = None


class Rule(Model):
    from_: list[RuleFrom] | None = None
    to: list[RuleTo] | None = None
    when: list[Condition] | None = None


class ExtensionProvider(Model):
    name: str


class AuthorizationPolicySpec(Model):
    selector: Selector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] | None = None
    rules: list[Rule] | None = None
    action: Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"] = "ALLOW"
    provider: ExtensionProvider | None = None


class JWTHeader(Model):
    name: str
    prefix: str | None = None


class ClaimToHeader(Model):
    header: str
    claim: str


class JWTRule(Model):
    issuer: str = ""
    audiences: list[str] | None = None
    jwks_uri: str | None = None
    jwks: str | None = None
    from_headers: list[JWTHeader] | None = None
    from_params: list[str] | None = None
    from_cookies: list[str] | None = None
    output_payload_to_header: str | None = None
    forward_original_token: bool | None = None
    output_claim_to_headers: list[ClaimToHeader] | None = None
    timeout: Duration | None = None


class RequestAuthenticationSpec(Model):
    selector: Selector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] | None = None
    jwt_rules: list[JWTRule] | None = None


# ---------------------------------------------------------------------------- the kinds


class PeerAuthentication(Resource[PeerAuthenticationSpec]):
    KIND = "PeerAuthentication"


class AuthorizationPolicy(Resource[AuthorizationPolicySpec]):
    KIND = "AuthorizationPolicy"


class RequestAuthentication(Resource[RequestAuthenticationSpec]):
    KIND = "RequestAuthentication"
