"""mTLS: IR security -> Envoy transport sockets (authorization's RBAC filters: `authorization.py`).

Secrets come over SDS from the agent (cluster `sds-grpc`): the workload certificate `default`
and the trust bundle `ROOTCA`, as Istio names them.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import struct_pb2, wrappers_pb2

from gossamer.ir.security import ISTIO_ALPN_SERVER, UpstreamTls
from gossamer.ir.types import Cluster, Endpoint, GatewayTlsServer, TlsSecret
from gossamer.mesh import ROOT_SECRET, SDS_CLUSTER, WORKLOAD_SECRET, spiffe_prefix
from gossamer.xds.build.common import ads_config_source, pack

TLS_SOCKET = "envoy.transport_sockets.tls"
TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match"
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


def _mesh_common_context(
    sans: tuple[str, ...], trust_domains: tuple[str, ...], alpn: tuple[str, ...]
) -> tls_pb2.CommonTlsContext:
    """The workload certificate and the mesh root over SDS; peers checked by SPIFFE id (one of SANS,
    else any in one of TRUST_DOMAINS)."""
    matchers = [
        common_pb2.SubjectAltNameMatcher(
            san_type=common_pb2.SubjectAltNameMatcher.URI, matcher=string_pb2.StringMatcher(exact=s)
        )
        for s in sans
    ]
    if not matchers:
        matchers = [
            common_pb2.SubjectAltNameMatcher(
                san_type=common_pb2.SubjectAltNameMatcher.URI,
                matcher=string_pb2.StringMatcher(prefix=spiffe_prefix(trust_domain)),
            )
            for trust_domain in trust_domains
        ]
    combined = tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
        default_validation_context=common_pb2.CertificateValidationContext(match_typed_subject_alt_names=matchers),
        validation_context_sds_secret_config=_sds(ROOT_SECRET),
    )
    return tls_pb2.CommonTlsContext(
        tls_certificate_sds_secret_configs=[_sds(WORKLOAD_SECRET)],
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
        common = _mesh_common_context(tls.subject_alt_names, (tls.trust_domain,) if tls.trust_domain else (), tls.alpn)
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


def downstream_mtls_socket(http: bool, trust_domains: tuple[str, ...]) -> base_pb2.TransportSocket:
    """Inbound mesh mTLS: a client certificate from the mesh root, with a SPIFFE id in one of TRUST_DOMAINS."""
    common = _mesh_common_context((), trust_domains, HTTP_ALPN if http else ISTIO_ALPN_SERVER[:2])
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
