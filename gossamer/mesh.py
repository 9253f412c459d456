"""Istio's mesh-wide names and numbers, in one place: namespaces, domains, SPIFFE ids, the proxy's
uid and ports, Envoy cluster names, and how host names match.

Every layer may import this module (it imports nothing of Gossamer's), so a constant written here
once is never retyped elsewhere: `istio-system`, `cluster.local`, `spiffe://...`, `15006` and
`outbound|PORT|SUBSET|HOST` appear in code only through these names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# -- namespaces and domains ---------------------------------------------------------------------

# Istio's root namespace (meshConfig.rootNamespace): mesh-wide Sidecar, PeerAuthentication,
# AuthorizationPolicy, Telemetry, EnvoyFilter; the mesh ConfigMap `istio`; the built-in gateways.
ROOT_NAMESPACE = "istio-system"
# The Kubernetes cluster domain and Istio's default trust domain (meshConfig.trustDomain).
CLUSTER_DOMAIN = "cluster.local"
TRUST_DOMAIN = CLUSTER_DOMAIN
# Services' names: NAME.NAMESPACE.svc.cluster.local.
DOMAIN_SUFFIX = f"svc.{CLUSTER_DOMAIN}"
# The control plane's name: the DNS SAN of its serving certificate and the SNI proxies send.
CONTROL_PLANE_NAME = f"istiod.{ROOT_NAMESPACE}.svc"


def service_fqdn(name: str, namespace: str) -> str:
    """A Kubernetes Service's host name: `reviews.default.svc.cluster.local`."""
    return f"{name}.{namespace}.{DOMAIN_SUFFIX}"


# -- the proxy: uid and well-known ports ----------------------------------------------------------

# Istio's proxy uid and gid (Gossamer gives every pod one of its own: runtime/sandbox.py).
PROXY_UID = 1337
ADMIN_PORT = 15000  # Envoy's admin (a unix socket per pod here; the number names it in checks)
OUTBOUND_CAPTURE_PORT = 15001  # iptables redirects a pod's outbound connections here
INBOUND_CAPTURE_PORT = 15006  # ... and its inbound ones here (`virtualInbound`)
TUNNEL_PORT = 15008  # Istio's HBONE port: never captured
MERGED_METRICS_PORT = 15020  # the pod's merged metrics (Envoy's and the app's), /stats/prometheus
HEALTH_PORT = 15021  # the proxy's readiness, /healthz/ready
PROMETHEUS_PORT = 15090  # Envoy's own metrics, /stats/prometheus
# The ports the proxy itself listens on: a Service, Gateway or ServiceEntry port among them would
# collide with the proxy's own listener.
PROXY_PORTS: dict[int, str] = {
    ADMIN_PORT: "Envoy's admin port",
    OUTBOUND_CAPTURE_PORT: "the sidecar's outbound capture port",
    INBOUND_CAPTURE_PORT: "the sidecar's inbound capture port",
    MERGED_METRICS_PORT: "the proxy's merged metrics port",
    HEALTH_PORT: "the proxy's health check port",
    PROMETHEUS_PORT: "Envoy's Prometheus port",
}

# Istio's one proxy uid is one per pod here: every pod gets a proxy uid and an app uid of its own
# (runtime/sandbox.py derives them from its IP), all in [POD_ID_BASE, POD_ID_BASE + POD_ID_RANGE),
# which manifests may not use. Every Envoy also carries the supplementary group PROXY_GROUP, which
# may reach the control plane's xDS socket.
POD_ID_BASE = 1_337_000_000
POD_ID_RANGE = 200_000
PROXY_GROUP = POD_ID_BASE  # (pod index 0 is the network address: no pod has this uid)
# apply's checker process (controlplane/apply_check.py) runs as this uid/gid: the app half's index 0,
# which no pod has either.
APPLY_CHECK_UID = POD_ID_BASE + POD_ID_RANGE // 2


def is_reserved_id(value: int) -> bool:
    """Is `value` a uid/gid the runtime hands out to pods (and a manifest may not ask for)?"""
    return POD_ID_BASE <= value < POD_ID_BASE + POD_ID_RANGE


# -- Envoy node ids ------------------------------------------------------------------------------


def node_id(proxy_type: str, ip: str, pod: str, namespace: str) -> str:
    """Istio's node id: `sidecar~10.244.0.5~reviews-v1-xxx.default~default.svc.cluster.local`."""
    return f"{proxy_type}~{ip}~{pod}.{namespace}~{namespace}.{DOMAIN_SUFFIX}"


@dataclass(frozen=True)
class NodeId:
    proxy_type: str  # "sidecar", "router"
    ip: str
    pod: str
    namespace: str


def parse_node_id(value: str) -> NodeId:
    """`TYPE~IP~POD.NAMESPACE~DOMAIN` -> its parts ("" for those a shorter id lacks)."""
    parts = value.split("~")
    if len(parts) < 4:
        return NodeId(parts[0], parts[1] if len(parts) > 1 else "", "", "")
    pod, _, namespace = parts[2].rpartition(".")
    return NodeId(parts[0], parts[1], pod, namespace)


# -- SPIFFE identities --------------------------------------------------------------------------


SPIFFE_SCHEME = "spiffe://"


def spiffe_prefix(trust_domain: str = TRUST_DOMAIN) -> str:
    """What every identity of a trust domain starts with: `spiffe://cluster.local/`."""
    return f"{SPIFFE_SCHEME}{trust_domain}/"


def principal(namespace: str, service_account: str, trust_domain: str = TRUST_DOMAIN) -> str:
    """An identity as AuthorizationPolicy writes it (no scheme): `cluster.local/ns/NS/sa/SA`."""
    return f"{trust_domain}/ns/{namespace}/sa/{service_account}"


def spiffe_id(namespace: str, service_account: str, trust_domain: str = TRUST_DOMAIN) -> str:
    """A workload's identity: `spiffe://cluster.local/ns/NAMESPACE/sa/SERVICE_ACCOUNT`."""
    return SPIFFE_SCHEME + principal(namespace, service_account, trust_domain)


@dataclass(frozen=True)
class SpiffeId:
    trust_domain: str
    namespace: str
    service_account: str


def parse_spiffe_id(uri: str) -> SpiffeId | None:
    """`spiffe://TD/ns/NS/sa/SA` -> its parts; anything else (another path, empty parts) -> None."""
    if not uri.startswith(SPIFFE_SCHEME):
        return None
    trust_domain, _, path = uri[len(SPIFFE_SCHEME) :].partition("/")
    parts = path.split("/")
    if not trust_domain or len(parts) != 4 or parts[0] != "ns" or parts[2] != "sa" or not parts[1] or not parts[3]:
        return None
    return SpiffeId(trust_domain, parts[1], parts[3])


# -- the trust domain and its aliases (meshConfig.trustDomain, trustDomainAliases) ---------------------
#
# * Workload identities are `spiffe://<trustDomain>/ns/<namespace>/sa/<service account>`: the CA signs
#   only those, the agents ask for them, the ADS server accepts a proxy whose certificate names its own
#   namespace and service account in the trust domain or one of its aliases.
# * Authorization principals are rewritten as Istio's trust domain bundle does
#   (pilot/pkg/security/trustdomain): a principal `<td>/ns/<ns>/sa/<sa>` whose trust domain is the mesh's,
#   one of its aliases, or `cluster.local` (which in a policy always means "the local trust domain")
#   matches that namespace and service account in the trust domain and in every alias; a principal in
#   another trust domain matches only itself; `*/...` and principals of another shape are kept as written.
# * Peers' certificates are checked against the trust domain and its aliases (SANs of ISTIO_MUTUAL
#   clusters expanded to the aliases, inbound mTLS accepting any of them).


def _matches(pattern: str, domain: str) -> bool:
    """A principal's trust domain against one of the mesh's: exact, or with Istio's `*` prefix/suffix."""
    if pattern == domain:
        return True
    if pattern.startswith("*"):
        return domain.endswith(pattern[1:])
    if pattern.endswith("*"):
        return domain.startswith(pattern[:-1])
    return False


@dataclass(frozen=True)
class TrustDomains:
    """The mesh's trust domain and its aliases (the identities treated as the same workloads)."""

    domain: str = TRUST_DOMAIN
    aliases: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        """The trust domain first, then its aliases, without repeats."""
        return tuple(dict.fromkeys((self.domain, *self.aliases)))

    def spiffe_id(self, namespace: str, service_account: str) -> str:
        """The identity a workload gets: in the trust domain (never an alias)."""
        return spiffe_id(namespace, service_account, self.domain)

    def identities(self, namespace: str, service_account: str) -> tuple[str, ...]:
        """That workload's identity in the trust domain and in each alias."""
        return tuple(spiffe_id(namespace, service_account, td) for td in self.all)

    def accepts(self, identity: str) -> bool:
        """A SPIFFE id in the trust domain or one of its aliases."""
        return any(identity.startswith(spiffe_prefix(td)) for td in self.all)

    def expand_identities(self, identities: Iterable[str]) -> tuple[str, ...]:
        """SPIFFE ids in the trust domain, with the same path in every alias (Istio expands the SANs a
        client accepts this way); ids of other domains are kept as they are."""
        out: dict[str, None] = {}
        for identity in identities:
            out[identity] = None
            for td in self.all:
                prefix = spiffe_prefix(td)
                if identity.startswith(prefix):
                    path = identity[len(prefix) :]
                    out.update((spiffe_prefix(other) + path, None) for other in self.all)
        return tuple(out)

    def principals(self, principals: Iterable[str]) -> list[str]:
        """An AuthorizationPolicy's principals (without `spiffe://`) as Istio applies them (see above)."""
        out: list[str] = []
        for value in principals:
            parts = value.split("/")
            if len(parts) != 5 or parts[0] == "*":  # the trust domain is not what the policy checks
                out.append(value)
                continue
            domain = parts[0]
            if domain != TRUST_DOMAIN and not any(_matches(domain, td) for td in self.all):
                out.append(value)  # another trust domain: matches only itself
                continue
            rest = "/".join(parts[1:])
            for td in self.all:
                rewritten = value if _matches(domain, td) else f"{td}/{rest}"
                if rewritten not in out:
                    out.append(rewritten)
        return out


DEFAULT_TRUST_DOMAINS = TrustDomains()


# -- the ingress gateway on the host's loopback (`up --ingress-port-map HOST:GATEWAY`) ----------------------

# Gateway ports whose host port has a flag of its own (`--ingress-port`, `--ingress-tls-port`).
INGRESS_FLAG_PORTS = (80, 8080, 443, 8443)
# (gateway port, host port) pairs: a Gateway server's port number and where it is on 127.0.0.1.
IngressPortMap = tuple[tuple[int, int], ...]


def parse_ingress_port_map(values: Iterable[str]) -> IngressPortMap:
    """`HOST:GATEWAY` items (kubectl port-forward's LOCAL:REMOTE order, also comma-separated) ->
    (gateway port, host port) pairs; ValueError naming the item that is wrong."""
    pairs: list[tuple[int, int]] = []
    for value in (v.strip() for item in values for v in item.split(",")):
        host, sep, gateway = value.partition(":")
        if not sep or not host.isdigit() or not gateway.isdigit():
            raise ValueError(f"{value!r}: expected HOST:GATEWAY, two port numbers (e.g. 31401:31400)")
        h, g = int(host), int(gateway)
        if not (0 < h < 65536 and 0 < g < 65536):
            raise ValueError(f"{value!r}: ports are 1-65535")
        if g in INGRESS_FLAG_PORTS:
            raise ValueError(f"{value!r}: gateway port {g} is on the host at --ingress-port / --ingress-tls-port")
        if any(g == other for other, _ in pairs):
            raise ValueError(f"{value!r}: gateway port {g} is mapped twice")
        if any(h == other for _, other in pairs):
            raise ValueError(f"{value!r}: host port {h} is mapped twice")
        pairs.append((g, h))
    return tuple(pairs)


def format_ingress_port_map(pairs: IngressPortMap) -> str:
    """The flag's form again, comma-separated: `31401:31400,15444:15443`."""
    return ",".join(f"{host}:{gateway}" for gateway, host in pairs)


# The gateways' Services map 80->8080 and 443->8443 as Istio's do: a Gateway server on either number of a
# pair is served by the same container port (the gateway's Envoy runs unprivileged).
GATEWAY_CONTAINER_PORTS = {80: 8080, 443: 8443}


def gateway_container_port(server_port: int) -> int:
    """The gateway container port serving a Gateway server's port number."""
    return GATEWAY_CONTAINER_PORTS.get(server_port, server_port)


def ingress_host_port(
    container_port: int, *, ingress_port: int, ingress_tls_port: int, port_map: IngressPortMap
) -> int:
    """Where an ingress gateway container port is on the host's 127.0.0.1: 8080 (servers on 80) at
    `up --ingress-port`, 8443 (443) at `--ingress-tls-port`, a port `--ingress-port-map HOST:GATEWAY` names
    at HOST, any other port at its own number, as Istio's ingress Service exposes 31400 and 15443 on the
    same numbers. 0: not on the host (off, or its number is taken by one of the others)."""
    if container_port == gateway_container_port(80):
        return ingress_port
    if container_port == gateway_container_port(443):
        return ingress_tls_port
    for gateway, host in port_map:
        if gateway_container_port(gateway) == container_port:
            return host
    taken = {ingress_port, ingress_tls_port, *(host for _, host in port_map)}
    return 0 if container_port in taken else container_port


# -- Envoy cluster names ------------------------------------------------------------------------


def outbound_cluster_name(host: str, port: int, subset: str = "") -> str:
    """Istio's outbound cluster name: `outbound|9080|v2|reviews.default.svc.cluster.local`."""
    return f"outbound|{port}|{subset}|{host}"


def inbound_vhost_name(port: int) -> str:
    """The virtual host of a sidecar's inbound HTTP route table: `inbound|http|9080`."""
    return f"inbound|http|{port}"


def inbound_cluster_name(port: int) -> str:
    """A sidecar's cluster to its own app's port: `inbound|9080||`."""
    return f"inbound|{port}||"


@dataclass(frozen=True)
class ClusterName:
    direction: str  # "outbound", "inbound"
    port: int  # 0 when the port part is not a number
    subset: str
    host: str


def parse_cluster_name(name: str) -> ClusterName | None:
    """`DIRECTION|PORT|SUBSET|HOST` (Istio's ParseSubsetKey) -> its parts; other names -> None."""
    parts = name.split("|")
    if len(parts) != 4:
        return None
    return ClusterName(parts[0], int(parts[1]) if parts[1].isdigit() else 0, parts[2], parts[3])


def is_inbound_cluster(name: str) -> bool:
    return name.startswith("inbound|")


# Istio's well-known listener, cluster and secret names.
VIRTUAL_OUTBOUND_LISTENER = "virtualOutbound"  # on OUTBOUND_CAPTURE_PORT
VIRTUAL_INBOUND_LISTENER = "virtualInbound"  # on INBOUND_CAPTURE_PORT
BLACKHOLE_CLUSTER = "BlackHoleCluster"  # REGISTRY_ONLY: unknown destinations go nowhere
PASSTHROUGH_CLUSTER = "PassthroughCluster"  # ALLOW_ANY: unknown destinations as addressed
INBOUND_PASSTHROUGH_CLUSTER = "InboundPassthroughCluster"  # inbound ports no Service names
XDS_CLUSTER = "xds-grpc"  # the bootstrap's cluster to the control plane
# Back-off of every xDS stream to the control plane (ADS and each route configuration's VHDS stream): a restarted
# control plane is reconnected to within half a second. Envoy's default (0.5 s doubling up to 30 s, jittered)
# left VHDS streams closed for up to ~20 s after a restart, and with them the proxy's route updates.
XDS_RETRY_BASE_SECONDS = 0.1
XDS_RETRY_MAX_SECONDS = 0.5
SDS_CLUSTER = "sds-grpc"  # the bootstrap's cluster to the pod's agent: SDS secrets come through it
WORKLOAD_SECRET = "default"  # SDS: the workload certificate and key
ROOT_SECRET = "ROOTCA"  # SDS: the mesh's trust bundle

# -- host names ---------------------------------------------------------------------------------


def host_matches(pattern: str, host: str) -> bool:
    """Does `pattern` cover `host`? Istio's host.Name.SubsetOf with DNS's case-insensitivity:
    `*` covers everything; `*.foo.com` covers `a.foo.com` and `*.b.foo.com` (not `foo.com`);
    other names match exactly, whatever their case."""
    if pattern == "*":
        return True
    if pattern == host:
        return True
    pattern, host = pattern.lower(), host.lower()
    if pattern.startswith("*"):
        return host.endswith(pattern[1:])
    return pattern == host


def hosts_intersect(a: str, b: str) -> bool:
    """Istio's host.Name.Matches: either covers the other."""
    return host_matches(a, b) or host_matches(b, a)
