"""`gossamer explain`: where one request from a pod goes, and why, on the config its proxy was sent.

The control plane's cache holds, per proxy group, exactly the resources the proxy was sent (or is
about to be). ``explain`` unpacks them, resolves the URL's host the way the pod would (its hosts file:
Service VIPs and ServiceEntry addresses), runs ``gossamer.debug.simulate`` and adds what a human
debugging the request wants next to the answer: the VirtualService rule behind the route that
matched and behind the ones tried before it, the endpoints currently in each destination cluster, and
whether the proxy has ACKed what was read (SYNCED / STALE / NACKED).

Everything here is pure (no I/O): the API gathers the inputs, this module returns a JSON-able dict.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from gossamer.controlplane.kubernetes import service_addresses
from gossamer.debug.simulate import Request, Result, SimulationError, route_source, simulate
from gossamer.mesh import BLACKHOLE_CLUSTER, CLUSTER_DOMAIN, DOMAIN_SUFFIX, PASSTHROUGH_CLUSTER
from gossamer.registry.types import MeshService
from gossamer.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE, SHORT_NAMES

__all__ = ["ExplainError", "Target", "explain", "parse_url", "resolve_host", "sync_states", "unpack"]

MESSAGE_TYPES: dict[str, type[Message]] = {
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
}

_DEFAULT_PORTS = {"http": 80, "https": 443}
_ROUTE_STEP = re.compile(r"^route #(\d+)(?: '.*')?: (.*) (did not match|matched)$")


class ExplainError(ValueError):
    """The question cannot be asked (bad URL, bad header): the caller's mistake, not the mesh's."""


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def unpack(packed: Mapping[str, Mapping[str, any_pb2.Any]]) -> dict[str, dict[str, Message]]:
    """type URL -> name -> packed ``Any`` (as ConfigCache holds them) -> type URL -> name -> proto."""
    out: dict[str, dict[str, Message]] = {}
    for type_url, resources in packed.items():
        cls = MESSAGE_TYPES.get(type_url)
        if cls is None:
            continue
        typed: dict[str, Message] = {}
        for name, any_msg in resources.items():
            msg = cls()
            if not any_msg.Unpack(msg):
                raise SimulationError(f"resource {name!r} under {type_url} is a {any_msg.type_url}")
            typed[name] = msg
        out[type_url] = typed
    return out


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL (no port, no brackets)
    port: int
    path: str  # path and query
    authority: str  # what curl would send as Host

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def parse_url(url: str) -> Target:
    """``http://reviews:9080/reviews/0`` (a bare ``reviews:9080/x`` means http)."""
    if "://" not in url:
        url = "http://" + url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ExplainError(f"{url}: {e}") from e
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ExplainError(f"{url}: only http:// and https:// URLs can be explained")
    host = (parts.hostname or "").lower()
    if not host:
        raise ExplainError(f"{url}: no host")
    port = port if port is not None else _DEFAULT_PORTS[scheme]
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    shown = f"[{host}]" if ":" in host else host
    authority = shown if port == _DEFAULT_PORTS[scheme] else f"{shown}:{port}"
    return Target(scheme=scheme, host=host, port=port, path=path, authority=authority)


def parse_headers(headers: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    """``['Name: value', ...]`` (curl's -H) or a mapping -> lower-cased name -> value."""
    if isinstance(headers, Mapping):
        return {str(k).strip().lower(): str(v) for k, v in headers.items()}
    out: dict[str, str] = {}
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise ExplainError(f"header {h!r}: expected 'Name: value'")
        out[name.strip().lower()] = value.strip()
    return out


def resolve_host(host: str, namespace: str, services: Iterable[MeshService]) -> tuple[str | None, str]:
    """The address a pod in ``namespace`` connects to for ``host``, as its hosts file + resolv.conf say.

    Returns (address or None, how it was resolved / why it was not).
    """
    try:
        ipaddress.ip_address(host)
        return host, f"{host} is an IP address: the app connects to it directly"
    except ValueError:
        pass
    names: dict[str, tuple[str, str]] = {}
    for addr in service_addresses(services):
        if addr.hostnames:
            for h in addr.hostnames:
                names.setdefault(h.lower(), (addr.vip, f"ServiceEntry host {h}"))
            continue
        what = f"Service {addr.namespace}/{addr.name}"
        for n in (
            f"{addr.name}.{addr.namespace}.svc.{CLUSTER_DOMAIN}",
            f"{addr.name}.{addr.namespace}.svc",
            f"{addr.name}.{addr.namespace}",
        ):
            names.setdefault(n, (addr.vip, what))
        if addr.namespace == namespace:
            names.setdefault(addr.name, (addr.vip, what))
    bare = host.rstrip(".")
    # resolv.conf: ndots:5 tries the search domains first for names with fewer dots, then the name.
    search = [f"{namespace}.{DOMAIN_SUFFIX}", DOMAIN_SUFFIX, CLUSTER_DOMAIN]
    candidates = (
        [bare]
        if host.endswith(".")
        else (
            [f"{bare}.{s}" for s in search] + [bare]
            if bare.count(".") < 5
            else [bare] + [f"{bare}.{s}" for s in search]
        )
    )
    for name in candidates:
        if name in names:
            vip, what = names[name]
            via = f" (as {name})" if name != bare else ""
            return vip, f"{host} resolves to {vip}{via}: {what}"
    return None, (
        f"{host} does not resolve inside the pod: no Service in namespace {namespace} (or "
        f"name.namespace elsewhere) and no ServiceEntry host with an address has that name, "
        "so the app fails the DNS lookup before its proxy sees the request"
    )


def sync_states(
    types: Mapping[str, Any], synced: Mapping[str, str], versions: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """Per short type name: state, the version the cache holds, what was sent / ACKed, Envoy's error.

    ``types`` are a ProxyStatus's ProxyTypeStatus by type URL, ``synced`` its ``synced`` property,
    ``versions`` the cache's current version per type URL.
    """
    out: dict[str, dict[str, Any]] = {}
    for type_url in (LISTENER, ROUTE, CLUSTER, ENDPOINT):
        ts = types.get(type_url)
        out[SHORT_NAMES[type_url]] = {
            "state": synced.get(type_url, "NOT SENT"),
            "cache": versions.get(type_url, ""),
            "sent": getattr(ts, "sent_version", ""),
            "acked": getattr(ts, "acked_version", ""),
            "error": getattr(ts, "error", None),
        }
    return out


# --------------------------------------------------------------------------------------------------
# Explanation
# --------------------------------------------------------------------------------------------------


def explain(
    resources: Mapping[str, Mapping[str, Message]],
    *,
    url: str,
    method: str = "GET",
    headers: Iterable[str] | Mapping[str, str] = (),
    inbound: bool = False,
    namespace: str = "default",
    services: Iterable[MeshService] = (),
    pod_ip: str = "",
    proxy: str = "",
    sync: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Where ``method url`` (with ``headers``) from (or, ``inbound``, to) the pod goes on ``resources``."""
    target = parse_url(url)
    hdrs = parse_headers(headers)
    authority = hdrs.pop("host", None) or hdrs.pop(":authority", None) or target.authority
    out: dict[str, Any] = {
        "proxy": proxy,
        "request": {
            "method": method.upper(),
            "url": url,
            "authority": authority,
            "path": target.path,
            "headers": hdrs,
            "inbound": inbound,
        },
        "sync": dict(sync or {}),
        "warnings": [],
    }
    if inbound:
        if not pod_ip:
            raise ExplainError("--inbound needs the pod's IP address")
        address: str | None = pod_ip
        how = f"inbound: a client connects to the pod's address {pod_ip}:{target.port}"
    else:
        address, how = resolve_host(target.host, namespace, services)
    out["destination"] = {"address": address, "port": target.port, "resolution": how}
    if address is None:
        out["status"] = None
        out["verdict"] = "the name does not resolve inside the pod"
        return out

    request = Request(
        host=authority,
        path=target.path,
        method=method.upper(),
        headers=hdrs,
        port=target.port,
        address=address,
        scheme=target.scheme,
        inbound=inbound,
    )
    try:
        result = simulate(resources, request)
    except SimulationError as e:
        out["error"] = str(e)
        out["verdict"] = f"cannot simulate: {e}"
        _sync_warnings(out, (LISTENER, ROUTE))
        return out
    out.update(_describe(resources, result, request))
    involved = (
        [LISTENER]
        + ([ROUTE] if result.route_config and _rds(resources, result) else [])
        + ([CLUSTER, ENDPOINT] if result.clusters else [])
    )
    _sync_warnings(out, involved)
    return out


def _rds(resources: Mapping[str, Mapping[str, Message]], result: Result) -> bool:
    return result.route_config is not None and result.route_config in resources.get(ROUTE, {})


def _sync_warnings(out: dict[str, Any], involved: Iterable[str]) -> None:
    sync = out.get("sync") or {}
    for type_url in involved:
        short = SHORT_NAMES[type_url]
        st = sync.get(short)
        if not st or st.get("state") == "SYNCED":
            continue
        state = st.get("state")
        if state == "NACKED":
            msg = (
                f"{short.upper()} is NACKED: Envoy rejected version {st.get('cache')} "
                f"({st.get('error')}) and still runs version {st.get('acked') or '(none)'}"
            )
        elif state == "STALE":
            msg = (
                f"{short.upper()} is STALE: the control plane holds version {st.get('cache')}, Envoy has "
                f"ACKed {st.get('acked') or 'nothing yet'} - what you read here is not yet what Envoy runs"
            )
        else:
            msg = f"{short.upper()} is {state}: this proxy has not been sent it"
        out["warnings"].append(msg)


def _describe(resources: Mapping[str, Mapping[str, Message]], result: Result, request: Request) -> dict[str, Any]:
    steps = list(result.explanation)
    out: dict[str, Any] = {
        "listener": {"name": result.listener, "why": _reason(steps, f"listener {result.listener} (")},
        "filterChain": {"name": result.filter_chain, "why": _reason(steps, f"filter chain {result.filter_chain} (")},
        "routeConfig": result.route_config,
        "virtualHost": None,
        "route": None,
        "notMatched": [],
        "clusters": [],
        "status": result.status,
        "requestHeadersToAdd": [list(h) for h in result.request_headers_to_add],
        "rateLimits": list(result.rate_limits),
        "explanation": steps,
    }
    if result.virtual_host is not None:
        prefix = f"virtual host {result.virtual_host} matched "
        out["virtualHost"] = {
            "name": result.virtual_host,
            "why": next((s[len(prefix) :] for s in steps if s.startswith(prefix)), ""),
        }
    vh = _virtual_host(resources, result)
    for step in steps:
        m = _ROUTE_STEP.match(step)
        if m is None:
            continue
        index, why, verdict = int(m.group(1)), m.group(2), m.group(3)
        route = vh.routes[index - 1] if vh is not None and index <= len(vh.routes) else None
        entry = {
            "index": index,
            "name": route.name if route is not None else None,
            "operation": route.decorator.operation if route is not None and route.HasField("decorator") else None,
            "source": route_source(route) if route is not None else None,
            "why": why,
        }
        if verdict == "matched":
            out["route"] = entry
        else:
            out["notMatched"].append(entry)
    if out["route"] is None and (result.route is not None or result.source is not None):
        out["route"] = {
            "index": None,
            "name": result.route,
            "operation": result.operation,
            "source": result.source,
            "why": "",
        }
    for name, weight in result.clusters:
        out["clusters"].append(_cluster(resources, name, weight, request))
    out["verdict"] = _verdict(result, out)
    return out


def _reason(steps: list[str], prefix: str) -> str:
    for s in steps:
        if s.startswith(prefix) and s.endswith(")"):
            return s[len(prefix) : -1]
    return ""


def _virtual_host(resources: Mapping[str, Mapping[str, Message]], result: Result) -> rc.VirtualHost | None:
    if result.virtual_host is None or result.route_config is None:
        return None
    cfg = resources.get(ROUTE, {}).get(result.route_config)
    if not isinstance(cfg, route_pb2.RouteConfiguration):
        cfg = _inline_route_config(resources, result)
    if cfg is None:
        return None
    return next((vh for vh in cfg.virtual_hosts if vh.name == result.virtual_host), None)


def _inline_route_config(
    resources: Mapping[str, Mapping[str, Message]],
    result: Result,
) -> route_pb2.RouteConfiguration | None:
    listener = resources.get(LISTENER, {}).get(result.listener)
    if not isinstance(listener, listener_pb2.Listener):
        return None
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        for flt in chain.filters:
            if flt.typed_config.Is(hcm_pb2.HttpConnectionManager.DESCRIPTOR):
                hcm = hcm_pb2.HttpConnectionManager()
                flt.typed_config.Unpack(hcm)
                if hcm.HasField("route_config") and hcm.route_config.name == result.route_config:
                    return hcm.route_config
    return None


def _socket(address: Any) -> str:
    sa = address.socket_address
    if address.WhichOneof("address") == "socket_address":
        return f"{sa.address}:{sa.port_value}"
    if address.WhichOneof("address") == "pipe":
        return f"unix:{address.pipe.path}"
    return str(address.WhichOneof("address"))


def _endpoints(cla: endpoint_pb2.ClusterLoadAssignment) -> list[dict[str, Any]]:
    out = []
    for loc in cla.endpoints:
        for lb in loc.lb_endpoints:
            if lb.WhichOneof("host_identifier") != "endpoint":
                continue
            ep: dict[str, Any] = {
                "address": _socket(lb.endpoint.address),
                "health": health_check_pb2.HealthStatus.Name(lb.health_status),
            }
            if lb.HasField("load_balancing_weight"):
                ep["weight"] = lb.load_balancing_weight.value
            out.append(ep)
    return out


def _cluster(
    resources: Mapping[str, Mapping[str, Message]], name: str, weight: int, request: Request
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "weight": weight, "type": None, "endpoints": [], "note": ""}
    cluster = resources.get(CLUSTER, {}).get(name)
    if not isinstance(cluster, cluster_pb2.Cluster):
        entry["note"] = "not in CDS: Envoy answers 503 (no cluster)"
        return entry
    if cluster.WhichOneof("cluster_discovery_type") == "type":
        kind = cluster_pb2.Cluster.DiscoveryType.Name(cluster.type)
    else:
        kind = "CUSTOM"
    entry["type"] = kind
    if kind == "EDS":
        service = cluster.eds_cluster_config.service_name or name
        cla = resources.get(ENDPOINT, {}).get(service)
        if isinstance(cla, endpoint_pb2.ClusterLoadAssignment):
            entry["endpoints"] = _endpoints(cla)
            if not entry["endpoints"]:
                entry["note"] = "no endpoints: Envoy answers 503 (no healthy upstream)"
        else:
            entry["note"] = "no EDS assignment sent: Envoy answers 503 (no healthy upstream)"
    elif kind == "ORIGINAL_DST":
        entry["endpoints"] = [{"address": f"{request.address}:{request.port}", "health": "UNKNOWN"}]
        entry["note"] = "original destination: the address the app connected to"
    elif kind in ("STATIC", "STRICT_DNS", "LOGICAL_DNS"):
        entry["endpoints"] = _endpoints(cluster.load_assignment)
        if kind != "STATIC":
            entry["note"] = "Envoy resolves these names with DNS"
    if name == BLACKHOLE_CLUSTER:
        entry["note"] = "BlackHoleCluster: the connection is dropped"
    return entry


def _verdict(result: Result, out: dict[str, Any]) -> str:
    vh = result.virtual_host or ""
    if result.status is not None:
        last = result.explanation[-1] if result.explanation else ""
        if vh == "block_all" or result.source == "REGISTRY_ONLY":
            return (
                f"{result.status}: outboundTrafficPolicy REGISTRY_ONLY - the host is not a service this "
                "proxy knows, Envoy answers 502 (block_all)"
            )
        if result.status == 404 and not result.clusters and result.route is None:
            return f"404: {last}"
        if last.startswith("redirect"):
            return f"{result.status}: redirect"
        if last.startswith("direct response"):
            return f"{result.status}: direct response from the route"
        return f"{result.status}: {last}"
    names = [c["name"] for c in out["clusters"]]
    if names == [BLACKHOLE_CLUSTER]:
        return "dropped: BlackHoleCluster"
    if names == [PASSTHROUGH_CLUSTER]:
        return "passed through to the original destination (PassthroughCluster: no service matched)"
    if len(names) == 1:
        return f"to {names[0]}"
    return "split: " + ", ".join(f"{c['name']} ({c['weight']})" for c in out["clusters"])
