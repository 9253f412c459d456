"""IR for EnvoyFilter: the patches that apply to one proxy, chosen and ordered by translation
(gossamer/translate/envoyfilter.py) and applied to the built protos by gossamer/xds/envoyfilter/.

As Envoy Gateway carries its patch policies through its IR and Istio selects them in its push
context: which EnvoyFilters apply (namespace, workloadSelector, `match.proxy`), in which order
(priority, creation, name), and which of their patches are usable (an operation Istio implements
for the applyTo, a value that is the Envoy object it names) is decided here, once; the xDS side
only finds the objects a patch's match names and changes them.

Names are canonical (Istio's deprecated filter names already replaced by Envoy's). A match field
left empty ("" / 0 / None) matches everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Where a patch applies (Istio's PatchContext).
ANY = "ANY"
SIDECAR_INBOUND = "SIDECAR_INBOUND"
SIDECAR_OUTBOUND = "SIDECAR_OUTBOUND"
GATEWAY = "GATEWAY"


@dataclass(frozen=True)
class FilterChainMatch:
    name: str = ""
    sni: str = ""
    transport_protocol: str = ""
    application_protocols: tuple[str, ...] = ()  # every one must be in the chain's
    destination_port: int = 0
    filter: str = ""  # a network filter the chain has (NETWORK_FILTER: the filter patched)
    sub_filter: str = ""  # HTTP_FILTER: the HTTP filter patched


@dataclass(frozen=True)
class ListenerMatch:
    name: str = ""
    port_number: int = 0  # on virtualInbound/virtualOutbound: the filter chain's destination port
    listener_filter: str = ""
    filter_chain: FilterChainMatch | None = None


@dataclass(frozen=True)
class RouteMatch:
    name: str = ""
    action: str = "ANY"  # ANY, ROUTE, REDIRECT, DIRECT_RESPONSE


@dataclass(frozen=True)
class VirtualHostMatch:
    name: str = ""
    domain_name: str = ""
    route: RouteMatch | None = None


@dataclass(frozen=True)
class RouteConfigurationMatch:
    name: str = ""
    port_number: int = 0
    port_name: str = ""  # gateways
    gateway: str = ""  # gateways: "ns/name" or "name"
    vhost: VirtualHostMatch | None = None


@dataclass(frozen=True)
class ClusterMatch:
    name: str = ""
    service: str = ""
    subset: str = ""
    port_number: int = 0


@dataclass(frozen=True)
class EnvoyPatch:
    """One usable `configPatches` entry."""

    source: str  # "EnvoyFilter ns/name configPatches[i]", for errors
    apply_to: str  # LISTENER, FILTER_CHAIN, NETWORK_FILTER, HTTP_FILTER, ROUTE_CONFIGURATION, ...
    operation: str  # MERGE, ADD, REMOVE, INSERT_BEFORE, INSERT_AFTER, INSERT_FIRST, REPLACE
    context: str = ANY
    listener: ListenerMatch | None = None
    route_configuration: RouteConfigurationMatch | None = None
    cluster: ClusterMatch | None = None
    # Envoy's JSON of the object (`@type` in Any fields; filter names canonical); None for REMOVE.
    value: Mapping[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class EnvoyFilterPatches:
    """What the EnvoyFilters that apply to one proxy do to its config."""

    applied: tuple[str, ...]  # "ns/name" of the EnvoyFilters that apply, in Istio's order
    patches: tuple[EnvoyPatch, ...] = ()  # in that order, then configPatches order
    errors: tuple[str, ...] = ()  # patches skipped by translation, and why
    gateway: bool = False  # the proxy is a gateway (context GATEWAY), else a sidecar
