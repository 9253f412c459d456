"""EnvoyFilter, applied: the last step of the pipeline, after build.

Translation chose the patches (gossamer/translate/envoyfilter.py: which EnvoyFilters apply to the
proxy, in Istio's order, which patches are usable); they travel in its IR
(`ProxyConfig.envoy_filters`). `apply_envoy_filters` applies them to copies of the built protos
(builders share their protos between proxy groups: nothing here touches an input), one module per
kind of object patched:

* listeners.py: LISTENER, FILTER_CHAIN, NETWORK_FILTER, HTTP_FILTER;
* routes.py: ROUTE_CONFIGURATION, VIRTUAL_HOST, HTTP_ROUTE;
* clusters.py: CLUSTER;
* common.py: Istio's merge (a protobuf merge of the value, Envoy's JSON with `@type` in Any fields,
  into the object; Any fields of the same type merged unpacked) and list operations.

Contexts: GATEWAY on gateways; on sidecars SIDECAR_INBOUND is `virtualInbound`, `inbound|...`
clusters and inbound route tables, SIDECAR_OUTBOUND everything else. A patch that cannot be applied
is skipped and reported (`PatchResult.errors`), as Istio logs and skips it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from google.protobuf.message import Message

from gossamer.ir.envoyfilter import EnvoyFilterPatches
from gossamer.xds.envoyfilter.clusters import patch_clusters
from gossamer.xds.envoyfilter.common import ROUTE_CLASS, PatchSet, copy_message
from gossamer.xds.envoyfilter.listeners import patch_listeners
from gossamer.xds.envoyfilter.routes import patch_route_configuration
from gossamer.xds.types import CLUSTER, LISTENER, ROUTE

__all__ = ["PatchResult", "Resources", "apply_envoy_filters"]

log = logging.getLogger(__name__)

LISTENER_CLASS = ("LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER")

Resources = dict[str, dict[str, Message]]


@dataclass
class PatchResult:
    resources: Resources
    applied: list[str] = field(default_factory=list)  # "ns/name", the EnvoyFilters that apply
    errors: list[str] = field(default_factory=list)


def apply_envoy_filters(filters: EnvoyFilterPatches | None, resources: Resources, *, group: str = "") -> PatchResult:
    """`resources` with the proxy's EnvoyFilter patches applied. `resources` and its protos are left as
    they are: every patched type gets a new dict of copies. `group` names the proxy group in logs."""
    if filters is None:
        return PatchResult(resources)
    result = PatchResult(dict(resources), applied=list(filters.applied), errors=list(filters.errors))
    ps = PatchSet.of(filters, result.errors)
    out = result.resources
    if ps.has(*ROUTE_CLASS):
        out[ROUTE] = {
            n: patch_route_configuration(ps, m, inbound=False) for n, m in _copies(resources.get(ROUTE, {})).items()
        }
    if ps.has(*LISTENER_CLASS, *ROUTE_CLASS):
        out[LISTENER] = patch_listeners(ps, _copies(resources.get(LISTENER, {})))
    if ps.has("CLUSTER"):
        out[CLUSTER] = patch_clusters(ps, _copies(resources.get(CLUSTER, {})))
    for e in result.errors:
        log.warning("proxy group %s: %s", group, e)
    return result


def _copies(items: dict[str, Message]) -> dict[str, Message]:
    return {k: copy_message(v) for k, v in items.items()}
