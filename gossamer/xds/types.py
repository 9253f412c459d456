"""xDS type URLs shared by the cache, the ADS server and the config builders."""

from __future__ import annotations

_PREFIX = "type.googleapis.com/"

LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

# Envoy's make-before-break order: clusters exist before the endpoints that fill
# them, and both exist before listeners/routes that point at them; secrets last
# because they are requested by name from listeners/clusters.
PUSH_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)

SHORT_NAMES: dict[str, str] = {
    CLUSTER: "cds",
    ENDPOINT: "eds",
    LISTENER: "lds",
    ROUTE: "rds",
    SECRET: "sds",
}

# In State-of-the-World xDS, LDS and CDS are "wildcard" types: a request with no
# resource names means "everything". RDS, EDS and SDS are always requested by name.
WILDCARD_TYPES: frozenset[str] = frozenset({LISTENER, CLUSTER})


def push_rank(type_url: str) -> int:
    """Sort key putting known types in PUSH_ORDER and unknown types after them."""
    try:
        return PUSH_ORDER.index(type_url)
    except ValueError:
        return len(PUSH_ORDER)
