"""xDS type URLs shared by the cache, the ADS server and the config builders."""

from __future__ import annotations

_PREFIX = "type.googleapis.com/"

LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"
VIRTUAL_HOST = _PREFIX + "envoy.config.route.v3.VirtualHost"  # VHDS

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
    VIRTUAL_HOST: "vhds",
}

# In State-of-the-World xDS, LDS and CDS are "wildcard" types: a request with no
# resource names means "everything". RDS, EDS and SDS are always requested by name.
WILDCARD_TYPES: frozenset[str] = frozenset({LISTENER, CLUSTER})


# VHDS: Envoy opens one DeltaVirtualHosts stream per route configuration that has `vhds`, and nothing in
# its requests says which (they are wildcard): the cache keeps each route configuration's virtual hosts
# under a key of their own, the stream names its route configuration in its gRPC metadata.
_VHDS_KEY = VIRTUAL_HOST + "/"


def vhds_key(route_config: str) -> str:
    """The cache's (and a proxy status's) key for the virtual hosts VHDS sends for ROUTE_CONFIG."""
    return _VHDS_KEY + route_config


def vhds_route_config(key: str) -> str | None:
    """The route configuration a vhds_key() names; None for any other key."""
    return key[len(_VHDS_KEY) :] if key.startswith(_VHDS_KEY) else None


def wire_type(key: str) -> str:
    """The type URL of what is stored under KEY (a type URL, or a vhds_key)."""
    return VIRTUAL_HOST if key.startswith(_VHDS_KEY) else key


def short_name(key: str) -> str:
    """cds, eds, lds, rds, sds; `vhds ROUTE_CONFIG` for a route configuration's virtual hosts."""
    route_config = vhds_route_config(key)
    if route_config is not None:
        return f"vhds {route_config}"
    return SHORT_NAMES.get(key, key.rsplit(".", 1)[-1])


def push_rank(type_url: str) -> int:
    """Sort key putting known types in PUSH_ORDER and unknown types after them."""
    try:
        return PUSH_ORDER.index(type_url)
    except ValueError:
        # a route configuration's virtual hosts right after RDS (the route configuration asks for them)
        return PUSH_ORDER.index(ROUTE) if type_url.startswith(_VHDS_KEY) else len(PUSH_ORDER)
