"""mTLS and authorization: IR security -> Envoy transport sockets and RBAC filters.

Secrets come over SDS from the agent (cluster `sds-grpc`): the workload certificate `default`
and the trust bundle `ROOTCA`, as Istio names them.
"""

from __future__ import annotations

import re

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, grpc_service_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import path_pb2, regex_pb2, string_pb2
from google.protobuf import struct_pb2, wrappers_pb2

from gossamer.ir.security import (
    ISTIO_ALPN_SERVER,
    AuthzField,
    AuthzPolicy,
    AuthzRule,
    UpstreamTls,
)
from gossamer.ir.types import Cluster, Endpoint, GatewayTlsServer, TlsSecret
from gossamer.mesh import SPIFFE_SCHEME, TRUST_DOMAIN, spiffe_prefix
from gossamer.translate.security import is_http_only
from gossamer.xds.build.common import ads_config_source, pack
from gossamer.xds.build.jwt import jwt_principal

SDS_CLUSTER = "sds-grpc"
CERT_SECRET = "default"
ROOT_SECRET = "ROOTCA"
TLS_SOCKET = "envoy.transport_sockets.tls"
TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match"
HTTP_RBAC = "envoy.filters.http.rbac"
NETWORK_RBAC = "envoy.filters.network.rbac"
# Istio's inbound mTLS ALPN for HTTP chains.
HTTP_ALPN = ("h2", "http/1.1")


# ------------------------------------------------------------------------------------ TLS


def sds_config_source() -> config_source_pb2.ConfigSource:
    grpc = grpc_service_pb2.GrpcService(envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=SDS_CLUSTER))
    return config_source_pb2.ConfigSource(
        api_config_source=config_source_pb2.ApiConfigSource(
            api_type=config_source_pb2.ApiConfigSource.GRPC,
            transport_api_version=config_source_pb2.V3,
            grpc_services=[grpc],
        ),
        resource_api_version=config_source_pb2.V3,
    )


def _sds(name: str) -> secret_pb2.SdsSecretConfig:
    return secret_pb2.SdsSecretConfig(name=name, sds_config=sds_config_source())


def _mesh_common_context(sans: tuple[str, ...], trust_domain: str, alpn: tuple[str, ...]) -> tls_pb2.CommonTlsContext:
    """The workload certificate and the mesh root over SDS; peers checked by SPIFFE id."""
    matchers = [
        common_pb2.SubjectAltNameMatcher(
            san_type=common_pb2.SubjectAltNameMatcher.URI, matcher=string_pb2.StringMatcher(exact=s)
        )
        for s in sans
    ]
    if not matchers and trust_domain:
        matchers = [
            common_pb2.SubjectAltNameMatcher(
                san_type=common_pb2.SubjectAltNameMatcher.URI,
                matcher=string_pb2.StringMatcher(prefix=spiffe_prefix(trust_domain)),
            )
        ]
    combined = tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
        default_validation_context=common_pb2.CertificateValidationContext(match_typed_subject_alt_names=matchers),
        validation_context_sds_secret_config=_sds(ROOT_SECRET),
    )
    return tls_pb2.CommonTlsContext(
        tls_certificate_sds_secret_configs=[_sds(CERT_SECRET)],
        combined_validation_context=combined,
        alpn_protocols=list(alpn),
    )


def _file(path: str) -> base_pb2.DataSource:
    return base_pb2.DataSource(filename=path)


_TLS_VERSIONS = {
    "TLS_AUTO": common_pb2.TlsParameters.TLS_AUTO,
    "TLSV1_0": common_pb2.TlsParameters.TLSv1_0,
    "TLSV1_1": common_pb2.TlsParameters.TLSv1_1,
    "TLSV1_2": common_pb2.TlsParameters.TLSv1_2,
    "TLSV1_3": common_pb2.TlsParameters.TLSv1_3,
}


def _ads_sds(name: str) -> secret_pb2.SdsSecretConfig:
    """A secret the control plane serves itself, over the ADS stream (Istio's `kubernetes://` names)."""
    return secret_pb2.SdsSecretConfig(name=name, sds_config=ads_config_source())


def gateway_tls_socket(server: GatewayTlsServer) -> base_pb2.TransportSocket:
    """A gateway server's DownstreamTlsContext: its credential over SDS (ADS), Istio's ALPN, and for
    MUTUAL / OPTIONAL_MUTUAL client certificates checked against the credential's CA."""
    common = tls_pb2.CommonTlsContext(
        tls_certificate_sds_secret_configs=[_ads_sds(server.certificate)], alpn_protocols=list(HTTP_ALPN)
    )
    params = common_pb2.TlsParameters(
        tls_minimum_protocol_version=_TLS_VERSIONS.get(server.min_protocol, common_pb2.TlsParameters.TLSv1_2)
    )
    if server.max_protocol:
        params.tls_maximum_protocol_version = _TLS_VERSIONS[server.max_protocol]
    params.cipher_suites.extend(server.cipher_suites)
    common.tls_params.CopyFrom(params)
    if server.validation:
        default = common_pb2.CertificateValidationContext()
        default.match_typed_subject_alt_names.extend(
            common_pb2.SubjectAltNameMatcher(
                san_type=common_pb2.SubjectAltNameMatcher.DNS, matcher=string_pb2.StringMatcher(exact=s)
            )
            for s in server.subject_alt_names
        )
        common.combined_validation_context.CopyFrom(
            tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
                default_validation_context=default, validation_context_sds_secret_config=_ads_sds(server.validation)
            )
        )
    context = tls_pb2.DownstreamTlsContext(common_tls_context=common)
    if server.mode == "MUTUAL":
        context.require_client_certificate.CopyFrom(wrappers_pb2.BoolValue(value=True))
    return _tls_socket(context)


def build_secret(secret: TlsSecret) -> secret_pb2.Secret:
    """An SDS Secret with inline PEM: a certificate and its key, or a validation context."""
    out = secret_pb2.Secret(name=secret.name)
    if secret.certificate_chain:
        out.tls_certificate.CopyFrom(
            common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(inline_bytes=secret.certificate_chain.encode()),
                private_key=base_pb2.DataSource(inline_bytes=secret.private_key.encode()),
            )
        )
    else:
        out.validation_context.CopyFrom(
            common_pb2.CertificateValidationContext(
                trusted_ca=base_pb2.DataSource(inline_bytes=secret.trusted_ca.encode())
            )
        )
    return out


def upstream_tls_context(tls: UpstreamTls) -> tls_pb2.UpstreamTlsContext:
    if tls.mode == "ISTIO_MUTUAL":
        common = _mesh_common_context(tls.subject_alt_names, tls.trust_domain, tls.alpn)
    else:  # SIMPLE / MUTUAL: the DestinationRule's files
        common = tls_pb2.CommonTlsContext(alpn_protocols=list(tls.alpn))
        if tls.mode == "MUTUAL" and tls.client_certificate and tls.private_key:
            common.tls_certificates.append(
                common_pb2.TlsCertificate(
                    certificate_chain=_file(tls.client_certificate), private_key=_file(tls.private_key)
                )
            )
        if tls.ca_certificates and not tls.insecure_skip_verify:
            validation = common_pb2.CertificateValidationContext(trusted_ca=_file(tls.ca_certificates))
            validation.match_typed_subject_alt_names.extend(
                common_pb2.SubjectAltNameMatcher(
                    san_type=common_pb2.SubjectAltNameMatcher.DNS, matcher=string_pb2.StringMatcher(exact=s)
                )
                for s in tls.subject_alt_names
            )
            common.validation_context.CopyFrom(validation)
    return tls_pb2.UpstreamTlsContext(common_tls_context=common, sni=tls.sni)


def _tls_socket(message: tls_pb2.UpstreamTlsContext | tls_pb2.DownstreamTlsContext) -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=pack(message))


def apply_upstream_tls(out: cluster_pb2.Cluster, cluster: Cluster) -> None:
    """DestinationRule tls: one transport socket. Auto mTLS: Istio's transport_socket_matches, mTLS to
    endpoints whose metadata says tlsMode istio, plaintext to the rest."""
    if cluster.tls is not None:
        out.transport_socket.CopyFrom(_tls_socket(upstream_tls_context(cluster.tls)))
    elif cluster.auto_mtls is not None:
        match = struct_pb2.Struct()
        match.update({"tlsMode": "istio"})
        out.transport_socket_matches.append(
            cluster_pb2.Cluster.TransportSocketMatch(
                name="tlsMode-istio", match=match, transport_socket=_tls_socket(upstream_tls_context(cluster.auto_mtls))
            )
        )
        out.transport_socket_matches.append(
            cluster_pb2.Cluster.TransportSocketMatch(
                name="tlsMode-disabled",
                match=struct_pb2.Struct(),
                transport_socket=base_pb2.TransportSocket(
                    name="envoy.transport_sockets.raw_buffer", typed_config=pack(raw_buffer_pb2.RawBuffer())
                ),
            )
        )


def apply_endpoint_tls_mode(lb_endpoint: endpoint_components_pb2.LbEndpoint, endpoint: Endpoint) -> None:
    if endpoint.tls_mode:
        lb_endpoint.metadata.filter_metadata[TRANSPORT_SOCKET_MATCH].update({"tlsMode": endpoint.tls_mode})


def downstream_mtls_socket(http: bool) -> base_pb2.TransportSocket:
    """Inbound mesh mTLS: a client certificate from the mesh root is required."""
    common = _mesh_common_context((), TRUST_DOMAIN, HTTP_ALPN if http else ISTIO_ALPN_SERVER[:2])
    context = tls_pb2.DownstreamTlsContext(
        common_tls_context=common, require_client_certificate=wrappers_pb2.BoolValue(value=True)
    )
    return _tls_socket(context)


def mtls_chain_match(port: int | None) -> listener_components_pb2.FilterChainMatch:
    """PERMISSIVE: mesh mTLS is TLS offering Istio's ALPN."""
    match = listener_components_pb2.FilterChainMatch(
        transport_protocol="tls", application_protocols=list(ISTIO_ALPN_SERVER)
    )
    if port is not None:
        match.destination_port.value = port
    return match


# ------------------------------------------------------------------------------------ RBAC

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


def tcp_rules(policy: AuthzPolicy) -> tuple[AuthzRule, ...]:
    """Istio on TCP: an ALLOW (or AUDIT) rule with HTTP-only fields never matches, so it is dropped;
    a DENY rule is applied without them."""

    def has_http(rule: AuthzRule) -> bool:
        return any(is_http_only(f.key) for group in (*rule.sources, *rule.operations, rule.conditions) for f in group)

    def strip(fields: tuple[AuthzField, ...]) -> tuple[AuthzField, ...]:
        return tuple(f for f in fields if not is_http_only(f.key))

    if policy.action != "DENY":
        return tuple(r for r in policy.rules if not has_http(r))
    return tuple(
        AuthzRule(tuple(strip(s) for s in r.sources), tuple(strip(o) for o in r.operations), strip(r.conditions))
        for r in policy.rules
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
            for i, rule in enumerate(tcp_rules(p) if tcp else p.rules):
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
