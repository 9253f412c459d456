"""IR clusters and endpoint sets -> Envoy Cluster / ClusterLoadAssignment."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from gossamer.ir.types import Cluster, Endpoint, EndpointSet
from gossamer.xds.build.common import ads_config_source, pack, seconds, socket_address
from gossamer.xds.build.security import apply_endpoint_tls_mode, apply_upstream_tls
from gossamer.xds.build.telemetry import apply_cluster_service, apply_endpoint_peer
from gossamer.xds.build.traffic_policy import apply_cluster_policy

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
# Istio's default connect timeout.
CONNECT_TIMEOUT_S = 10.0


def build_load_assignment(name: str, endpoints: tuple[Endpoint, ...]) -> endpoint_pb2.ClusterLoadAssignment:
    lb_endpoints = []
    for e in endpoints:
        lb_endpoint = endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(address=socket_address(e.address, e.port))
        )
        apply_endpoint_tls_mode(lb_endpoint, e)
        apply_endpoint_peer(lb_endpoint, e)
        lb_endpoints.append(lb_endpoint)
    localities = [endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb_endpoints)] if lb_endpoints else []
    return endpoint_pb2.ClusterLoadAssignment(cluster_name=name, endpoints=localities)


def build_cluster(cluster: Cluster) -> cluster_pb2.Cluster:
    out = cluster_pb2.Cluster(name=cluster.name, connect_timeout=seconds(CONNECT_TIMEOUT_S))
    if cluster.kind == "eds":
        out.type = cluster_pb2.Cluster.EDS
        out.eds_cluster_config.eds_config.CopyFrom(ads_config_source())
        out.eds_cluster_config.service_name = cluster.name
    elif cluster.kind == "static":
        out.type = cluster_pb2.Cluster.STATIC
        out.load_assignment.CopyFrom(build_load_assignment(cluster.name, cluster.static_endpoints))
    elif cluster.kind in ("strict_dns", "logical_dns"):
        # ServiceEntry DNS resolution: Envoy resolves the names (IPv4, as Istio does by default).
        out.type = cluster_pb2.Cluster.STRICT_DNS if cluster.kind == "strict_dns" else cluster_pb2.Cluster.LOGICAL_DNS
        out.dns_lookup_family = cluster_pb2.Cluster.V4_ONLY
        out.load_assignment.CopyFrom(build_load_assignment(cluster.name, cluster.static_endpoints))
    elif cluster.kind == "original_dst":
        out.type = cluster_pb2.Cluster.ORIGINAL_DST
        out.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
    else:  # blackhole: a static cluster with no endpoints
        out.type = cluster_pb2.Cluster.STATIC
    if cluster.upstream_bind_address:
        out.upstream_bind_config.CopyFrom(
            address_pb2.BindConfig(
                source_address=address_pb2.SocketAddress(address=cluster.upstream_bind_address, port_value=0)
            )
        )
    apply_upstream_tls(out, cluster)
    apply_cluster_service(out, cluster)
    options = apply_cluster_policy(out, cluster.traffic_policy) if cluster.traffic_policy is not None else None
    if cluster.kind == "original_dst":
        out.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED  # the only policy ORIGINAL_DST allows
    policy = cluster.traffic_policy
    if cluster.http2 or options is not None or (policy is not None and policy.use_client_protocol):
        options = options or http_protocol_options_pb2.HttpProtocolOptions()
        explicit = http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig
        if policy is not None and policy.use_client_protocol:
            options.use_downstream_protocol_config.SetInParent()
        elif cluster.http2:
            h2 = protocol_pb2.Http2ProtocolOptions()
            if policy is not None and policy.max_concurrent_streams is not None:
                h2.max_concurrent_streams.value = policy.max_concurrent_streams
            options.explicit_http_config.CopyFrom(explicit(http2_protocol_options=h2))
        else:
            options.explicit_http_config.CopyFrom(explicit(http_protocol_options=protocol_pb2.Http1ProtocolOptions()))
        out.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))
    return out


def build_endpoints(endpoint_set: EndpointSet) -> endpoint_pb2.ClusterLoadAssignment:
    return build_load_assignment(endpoint_set.cluster, endpoint_set.endpoints)
