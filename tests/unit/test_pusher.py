"""The pusher: debounce and merging, the endpoint fast path, shared translation per outbound scope,
what a change re-translates, and a failing group contained to itself."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

import gossamer.controlplane.pusher as pusher_module
import gossamer.translate as translate_module
import gossamer.translate.incremental as incremental
from gossamer.controlplane.pusher import Pusher
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy
from gossamer.resources.meshconfig import DEFAULT_MESH_CONFIG
from gossamer.xds.build import build_resources
from gossamer.xds.cache import ConfigCache, pack_all
from gossamer.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.support.offline import gateway_proxy, proxy_for, snapshot_from_yaml

MESH = """
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
"""
for _name, _ns in (("a", "default"), ("b", "default"), ("c", "other")):
    MESH += f"""
apiVersion: v1
kind: Service
metadata: {{name: {_name}, namespace: {_ns}}}
spec:
  selector: {{app: {_name}}}
  ports: [{{name: http, port: 8000}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {_name}, namespace: {_ns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: {_name}}}}}
  template:
    metadata: {{labels: {{app: {_name}}}}}
    spec:
      containers: [{{name: app, command: [sleep, "1"], ports: [{{containerPort: 8000}}]}}]
---
"""

VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: [a]
  http:
  - route: [{destination: {host: a}}]
    timeout: 3s
"""

# A Sidecar narrowing the default namespace's egress to its own namespace.
SIDECAR = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress: [{hosts: ["./*"]}]
"""


class Snapshots:
    """What the control plane hands the pusher: the current snapshot, replaced on every event."""

    def __init__(self, text: str) -> None:
        self.current = snapshot_from_yaml(text)
        self.built = 0

    def __call__(self) -> MeshSnapshot:
        self.built += 1
        return self.current

    def set(self, text: str, version: int) -> None:
        self.current = replace(snapshot_from_yaml(text), version=version)


def connect(pusher: Pusher, snapshot: MeshSnapshot, deployment: str, namespace: str = "default") -> tuple[str, Proxy]:
    proxy = proxy_for(snapshot, deployment, namespace, has_sds=True)
    return asyncio.run(pusher.proxy_connected(proxy)), proxy


def test_groups_of_one_scope_share_their_outbound_config() -> None:
    snapshots = Snapshots(MESH)
    cache = ConfigCache()
    pusher = Pusher(cache, snapshots)
    a, _ = connect(pusher, snapshots.current, "a")
    b, _ = connect(pusher, snapshots.current, "b")
    c, _ = connect(pusher, snapshots.current, "c", "other")
    # a and b (one namespace) share every outbound resource object: serialized once.
    for type_url in (ROUTE, ENDPOINT):
        snap_a, snap_b = cache.snapshot(a, type_url), cache.snapshot(b, type_url)
        assert snap_a is not None and snap_b is not None
        assert snap_a.packed is snap_b.packed and snap_a.version == snap_b.version
    a_clusters, b_clusters = cache.get(a, CLUSTER)[1], cache.get(b, CLUSTER)[1]
    outbound = "outbound|8000||c.other.svc.cluster.local"
    assert a_clusters[outbound] is b_clusters[outbound]
    # Inbound is each workload's own; another namespace's route table differs (short names).
    assert "inbound|8000||" in a_clusters and "inbound|8000||" in b_clusters
    assert cache.get(a, LISTENER)[1]["virtualInbound"] is not cache.get(b, LISTENER)[1]["virtualInbound"]
    assert cache.get(c, ROUTE)[1]["8000"].value != cache.get(a, ROUTE)[1]["8000"].value


def test_a_connecting_proxy_does_not_rebuild_the_snapshot() -> None:
    snapshots = Snapshots(MESH)
    pusher = Pusher(ConfigCache(), snapshots)
    connect(pusher, snapshots.current, "a")
    connect(pusher, snapshots.current, "b")
    connect(pusher, snapshots.current, "c", "other")
    assert snapshots.built == 1


def test_requests_within_the_debounce_are_merged_into_one_push() -> None:
    async def scenario() -> Pusher:
        snapshots = Snapshots(MESH)
        pusher = Pusher(ConfigCache(), snapshots, debounce=0.05, max_delay=5.0)
        await pusher.proxy_connected(proxy_for(snapshots.current, "a", has_sds=True))
        task = asyncio.create_task(pusher.run())
        for _ in range(5):
            pusher.request_push(full=False)
            pusher.request_push(full=True)
            await asyncio.sleep(0.01)
        while pusher.pending:
            await asyncio.sleep(0.01)
        task.cancel()
        return pusher

    pusher = asyncio.run(scenario())
    # One push, and a full one: the endpoint requests merged into it.
    assert (pusher.stats.full_pushes, pusher.stats.endpoint_pushes) == (1, 0)


def test_max_delay_bounds_the_debounce() -> None:
    async def scenario() -> bool:
        snapshots = Snapshots(MESH)
        pusher = Pusher(ConfigCache(), snapshots, debounce=0.05, max_delay=0.1)
        await pusher.proxy_connected(proxy_for(snapshots.current, "a", has_sds=True))
        task = asyncio.create_task(pusher.run())
        started = False
        for _ in range(30):  # never quiet for 50 ms
            pusher.request_push(full=True)
            await asyncio.sleep(0.01)
            # A push began (it runs on a worker thread and may still be running) despite no quiet.
            started = started or pusher._pushing or pusher.stats.full_pushes > 0
        task.cancel()
        return started

    assert asyncio.run(scenario())


def test_an_endpoint_push_changes_only_endpoints() -> None:
    snapshots = Snapshots(MESH)
    cache = ConfigCache()
    pusher = Pusher(cache, snapshots)
    a, _ = connect(pusher, snapshots.current, "a")
    before = {t: cache.version(a, t) for t in (CLUSTER, ENDPOINT, LISTENER, ROUTE)}
    # One pod of c gone (as the runtime reports it): a new snapshot with one workload fewer.
    snap = snapshots.current
    snapshots.current = replace(
        snap, version=snap.version, workloads=tuple(w for w in snap.workloads if w.name != "c-1")
    )
    pusher.push_now(full=False)
    after = {t: cache.version(a, t) for t in (CLUSTER, ENDPOINT, LISTENER, ROUTE)}
    assert [t for t in before if before[t] != after[t]] == [ENDPOINT]
    c_endpoints = cache.get(a, ENDPOINT)[1]["outbound|8000||c.other.svc.cluster.local"]
    assert b"10.244.1." in c_endpoints.value  # c-0 is still there
    assert pusher.stats.endpoint_pushes == 1


def test_a_virtual_service_change_changes_route_tables_only() -> None:
    snapshots = Snapshots(MESH)
    cache = ConfigCache()
    pusher = Pusher(cache, snapshots)
    a, _ = connect(pusher, snapshots.current, "a")
    before = {t: cache.version(a, t) for t in (CLUSTER, ENDPOINT, LISTENER, ROUTE)}
    snapshots.set(MESH + VS, version=2)
    pusher.push_now(full=True)
    after = {t: cache.version(a, t) for t in (CLUSTER, ENDPOINT, LISTENER, ROUTE)}
    assert [t for t in before if before[t] != after[t]] == [ROUTE]
    assert pusher.pushed_revision == 2


def test_a_sidecar_narrowing_egress_narrows_clusters_and_endpoints() -> None:
    snapshots = Snapshots(MESH + SIDECAR)
    cache = ConfigCache()
    pusher = Pusher(cache, snapshots)
    a, _ = connect(pusher, snapshots.current, "a")
    c, _ = connect(pusher, snapshots.current, "c", "other")
    assert not any("c.other" in name for name in cache.get(a, CLUSTER)[1])
    assert not any("c.other" in name for name in cache.get(a, ENDPOINT)[1])
    assert "outbound|8000||c.other.svc.cluster.local" in cache.get(c, ENDPOINT)[1]
    # A pod of c leaving changes nothing for a (it does not see c).
    version = cache.version(a, ENDPOINT)
    snap = snapshots.current
    snapshots.current = replace(snap, workloads=tuple(w for w in snap.workloads if w.name != "c-1"))
    pusher.push_now(full=False)
    assert cache.version(a, ENDPOINT) == version
    assert cache.version(c, ENDPOINT) != version
    # Not even translated again: a's endpoint scope is carried over whole, c's is new.
    carried = {k[1]: v is snap.derived_get(k) for k, v in _derived(snapshots.current, "packed_endpoints").items()}  # type: ignore[index]
    assert sorted(carried.values()) == [False, True]
    # c's scope: its endpoints packed from the previous ones, only c's replaced (no whole translation).
    assert _derived(snapshots.current, "outbound_endpoints").keys() <= _derived(snap, "outbound_endpoints").keys()


def test_a_pod_change_replaces_only_its_services_endpoints_and_gives_what_a_full_translation_gives() -> None:
    snapshots = Snapshots(MESH)
    cache = ConfigCache()
    pusher = Pusher(cache, snapshots)
    a, _ = connect(pusher, snapshots.current, "a")
    before = cache.get(a, ENDPOINT)[1]
    b_cluster = "outbound|8000||b.default.svc.cluster.local"
    snap = snapshots.current
    snapshots.current = replace(snap, workloads=tuple(w for w in snap.workloads if w.name != "b-1"))
    pusher.push_now(full=False)
    after = cache.get(a, ENDPOINT)[1]
    assert after.keys() == before.keys()
    # The other services' endpoints are the very resources of the previous push; b's lost a pod.
    assert [n for n in after if after[n] is not before[n]] == [b_cluster]
    assert after[b_cluster].value != before[b_cluster].value
    # What a proxy gets is what translating the new snapshot from scratch gives.
    fresh_cache = ConfigCache()
    fresh, _ = connect(Pusher(fresh_cache, lambda: snapshots.current), snapshots.current, "a")
    assert {n: p.value for n, p in after.items()} == {
        n: p.value for n, p in fresh_cache.get(fresh, ENDPOINT)[1].items()
    }
    # The same for a full push's translation (gateways, EnvoyFilters): the outbound endpoint sets.
    carried = translate_module.outbound_endpoints(snapshots.current, proxy_for(snapshots.current, "a", has_sds=True))
    scratch = translate_module.outbound_endpoints(
        replace(snapshots.current, version=9), proxy_for(snapshots.current, "a", has_sds=True)
    )
    assert carried == scratch


def test_a_failing_group_keeps_its_config_and_the_others_are_pushed(monkeypatch: pytest.MonkeyPatch) -> None:
    snapshots = Snapshots(MESH)
    cache = ConfigCache()
    pusher = Pusher(cache, snapshots)
    a, _ = connect(pusher, snapshots.current, "a")
    b, _ = connect(pusher, snapshots.current, "b")
    a_routes = cache.version(a, ROUTE)
    real = translate_module.translate_inbound  # what the pusher calls (patched there below)

    def translate_inbound(snapshot: MeshSnapshot, proxy: Proxy):  # type: ignore[no-untyped-def]
        if proxy.label_map.get("app") == "a":
            raise ValueError("cannot translate a")
        return real(snapshot, proxy)

    monkeypatch.setattr(pusher_module, "translate_inbound", translate_inbound)
    snapshots.set(MESH + VS, version=2)
    pusher.push_now(full=True)
    assert pusher.stats.errors == {a: "ValueError: cannot translate a"}
    assert cache.version(a, ROUTE) == a_routes  # its last good config stays
    assert cache.version(b, ROUTE) != a_routes  # b got the change
    monkeypatch.setattr(pusher_module, "translate_inbound", real)
    pusher.push_now(full=True)
    assert pusher.stats.errors == {}
    assert cache.get(a, ROUTE)[1]["8000"].value == cache.get(b, ROUTE)[1]["8000"].value


def _derived(snapshot: MeshSnapshot, tag: str) -> dict[object, object]:
    return dict(snapshot.derived_values(tag))


def _carried(before: MeshSnapshot, after: MeshSnapshot) -> list[object]:
    """Keys whose value AFTER took over from BEFORE (values Python shares anyway - (), None - aside)."""
    return [
        k
        for tag in after.derived_tags()
        for k, v in after.derived_values(tag).items()
        if before.derived_get(k) is v and v not in ((), None) and v is not DEFAULT_MESH_CONFIG
    ]  # Istio's defaults: one object for every snapshot without a ConfigMap


def test_a_virtual_service_change_re_translates_only_its_hosts_routes() -> None:
    snapshots = Snapshots(MESH + VS)
    cache = ConfigCache()
    pusher = Pusher(cache, snapshots)
    a, _ = connect(pusher, snapshots.current, "a")
    c, _ = connect(pusher, snapshots.current, "c", "other")
    before = snapshots.current
    versions = {g: {t: cache.version(g, t) for t in (CLUSTER, ENDPOINT, LISTENER, ROUTE)} for g in (a, c)}
    snapshots.set(MESH + VS.replace("timeout: 3s", "timeout: 4s"), version=2)
    pusher.push_now(full=True, changed={("VirtualService", "default", "a")})
    after = snapshots.current
    old_vhosts, new_vhosts = _derived(before, "vhost"), _derived(after, "vhost")
    assert old_vhosts.keys() == new_vhosts.keys()
    for key, vhost in new_vhosts.items():
        host = key[2]  # type: ignore[index]
        # b's and c's virtual hosts are the very objects of the previous push; a's was translated again.
        assert (vhost is old_vhosts[key]) == (host != "a.default.svc.cluster.local"), key
    for tag in ("outbound_clusters", "packed_clusters", "packed_endpoints", "inbound"):
        assert all(after.derived_get(k) is v for k, v in _derived(before, tag).items()), tag
    for g in (a, c):  # only route tables changed, for every proxy that sees a
        changed = [t for t, v in versions[g].items() if cache.version(g, t) != v]
        assert changed == [ROUTE], (g, changed)
    # Each scope's listeners are the very objects of the previous push; its route tables are what translating
    # the new snapshot from scratch gives.
    for deployment, namespace in (("a", "default"), ("c", "other")):
        proxy = proxy_for(after, deployment, namespace, has_sds=True)
        listeners, tables = translate_module.outbound_listeners(after, proxy)
        assert listeners is translate_module.outbound_listeners(before, proxy)[0]
        assert (listeners, tables) == translate_module.outbound_listeners(replace(after, version=9), proxy)


def test_a_pod_change_re_translates_only_its_services_endpoints() -> None:
    snapshots = Snapshots(MESH)
    pusher = Pusher(ConfigCache(), snapshots)
    connect(pusher, snapshots.current, "a")
    before = snapshots.current
    snapshots.current = replace(before, workloads=tuple(w for w in before.workloads if w.name != "c-1"))
    pusher.push_now(full=False)
    after = snapshots.current
    for tag in ("service_endpoints", "endpoint_sets_for"):
        for key, value in _derived(after, tag).items():
            assert (value is _derived(before, tag).get(key)) == ("c.other" not in key[2]), key  # type: ignore[index]
    # The workloads each service selects: c's selected again (one pod fewer), the others' carried.
    selected = _derived(after, "endpoints_of")
    assert {k[1:]: v is _derived(before, "endpoints_of").get(k) for k, v in selected.items()} == {  # type: ignore[index]
        ("default", (("app", "a"),)): True,
        ("default", (("app", "b"),)): True,
        ("other", (("app", "c"),)): False,
        ("istio-system", (("istio", "ingressgateway"),)): True,
    }
    assert [w.name for w in selected[("endpoints_of", "other", (("app", "c"),))]] == ["c-0"]  # type: ignore[attr-defined]
    # The DestinationRule lookups do not depend on pods: kept.
    assert _derived(after, "destination_rule_for") and all(
        v is _derived(before, "destination_rule_for").get(k) for k, v in _derived(after, "destination_rule_for").items()
    )


def test_an_unknown_change_re_translates_everything() -> None:
    snapshots = Snapshots(MESH + VS)
    pusher = Pusher(ConfigCache(), snapshots)
    connect(pusher, snapshots.current, "a")
    before = snapshots.current
    snapshots.set(MESH + VS, version=2)
    pusher.push_now(full=True, changed=None)
    assert _carried(before, snapshots.current) == []


def test_another_kind_re_translates_everything() -> None:
    snapshots = Snapshots(MESH + VS)
    pusher = Pusher(ConfigCache(), snapshots)
    connect(pusher, snapshots.current, "a")
    before = snapshots.current
    snapshots.set(MESH + VS, version=2)
    pusher.push_now(full=True, changed={("VirtualService", "default", "a"), ("Service", "default", "b")})
    assert _carried(before, snapshots.current) == []


def test_a_destination_rule_change_looks_its_rules_up_again_and_keeps_the_endpoints_of_unchanged_subsets() -> None:
    rule = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a}
spec:
  host: a
  subsets: [{name: v1, labels: {app: a}}]
"""
    snapshots = Snapshots(MESH + rule)
    pusher = Pusher(ConfigCache(), snapshots)
    connect(pusher, snapshots.current, "a")
    before = snapshots.current
    snapshots.set(MESH + rule.replace("name: v1", "name: v2"), version=2)
    pusher.push_now(full=True, changed={("DestinationRule", "default", "a")})
    after = snapshots.current
    # Which rule applies, and the endpoint sets picked by it, are looked up again...
    carried = _carried(before, after)
    assert _derived(after, "destination_rule_for") and _derived(after, "endpoint_sets_for")
    assert not [k for k in carried if k[0] == "destination_rule_for"]  # type: ignore[index]
    a_sets = ("endpoint_sets_for", "default", "a.default.svc.cluster.local", "default")
    assert after.derived_get(a_sets) is not before.derived_get(a_sets)
    # ...while a service's endpoints per subset stay (keyed by the subsets: a's v2 sets are new).
    kept = [
        k for k, v in _derived(after, "service_endpoints").items() if v is _derived(before, "service_endpoints").get(k)
    ]
    new_subsets = [k for k in _derived(after, "service_endpoints") if "v2" in str(k[3])]  # type: ignore[index]
    assert kept and new_subsets and not any(before.derived_get(k) is not None for k in new_subsets)


def test_what_a_push_builds_is_kept_out_of_the_collectors_generations() -> None:
    # The translated config lives until the next push: a collection of the middle generation would walk all
    # of it (seconds at 1000 services, every thread stopped), so the pusher freezes it once built.
    snapshots = Snapshots(MESH)
    pusher = Pusher(ConfigCache(), snapshots)
    gc.unfreeze()
    try:
        connect(pusher, snapshots.current, "a")
        frozen = gc.get_freeze_count()
        assert frozen > 0
        snapshots.set(MESH + VS, version=2)
        pusher.push_now(full=True, changed={("VirtualService", "default", "a")})
        assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()


def test_translations_run_one_after_the_other_on_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # Proxies of three new groups connecting at once: their translations queue for the one translator thread
    # (more threads would only fight over the GIL with the API's and the streams' loops).
    snapshots = Snapshots(MESH)
    pusher = Pusher(ConfigCache(), snapshots)
    running: list[str] = []
    seen: list[tuple[str, int]] = []
    compute = pusher._compute

    def recorded(*args: Any) -> Any:
        running.append(threading.current_thread().name)
        seen.append((threading.current_thread().name, len(running)))
        try:
            return compute(*args)
        finally:
            running.pop()

    monkeypatch.setattr(pusher, "_compute", recorded)

    async def connect_all() -> None:
        await asyncio.gather(
            *(
                pusher.proxy_connected(proxy_for(snapshots.current, name, namespace, has_sds=True))
                for name, namespace in (("a", "default"), ("b", "default"), ("c", "other"))
            )
        )

    asyncio.run(connect_all())
    assert len(seen) == 3
    assert len({name for name, _ in seen}) == 1 and seen[0][0].startswith("translate")
    assert all(at_once == 1 for _, at_once in seen)


def test_a_gateway_gets_what_its_translation_builds_and_a_virtual_service_change_keeps_its_clusters() -> None:
    snapshots = Snapshots(MESH + VS)
    cache = ConfigCache()
    pusher = Pusher(cache, snapshots)
    proxy = gateway_proxy(snapshots.current)
    group = asyncio.run(pusher.proxy_connected(proxy))

    def given() -> dict[str, dict[str, bytes]]:
        return {
            t: {n: a.value for n, a in cache.get(group, t)[1].items()} for t in (LISTENER, ROUTE, CLUSTER, ENDPOINT)
        }

    def built() -> dict[str, dict[str, bytes]]:
        packed = pack_all(build_resources(translate_module.translate_proxy(snapshots.current, proxy)))
        return {t: {n: p[0].value for n, p in packed[t].items()} for t in (LISTENER, ROUTE, CLUSTER, ENDPOINT)}

    assert given() == built() and given()[CLUSTER]
    clusters = cache.snapshot(group, CLUSTER)
    snapshots.set(MESH + VS.replace("timeout: 3s", "timeout: 4s"), version=2)
    pusher.push_now(full=True, changed={("VirtualService", "default", "a")})
    assert given() == built()
    assert cache.snapshot(group, CLUSTER) is clusters  # not packed (nor compared) again


@pytest.mark.parametrize(
    "after",
    [
        VS.replace("timeout: 3s", "timeout: 4s"),  # routes only: listeners kept, a's virtual hosts replaced
        VS.replace("hosts: [a]", "hosts: [b]"),  # another host: both translated again
        VS.replace("spec:", "spec:\n  exportTo: ['.']"),  # no longer seen by other namespaces
        VS.replace("hosts: [a]", "hosts: ['*.default.svc.cluster.local']"),  # a wildcard: everything again
        VS + "  tcp:\n  - route: [{destination: {host: a}}]\n",  # TCP routes: listeners translated again
        "",  # deleted
    ],
)
def test_what_a_virtual_service_change_pushes_is_what_translating_from_scratch_gives(after: str) -> None:
    snapshots = Snapshots(MESH + VS)
    cache = ConfigCache()
    pusher = Pusher(cache, snapshots)
    groups = [connect(pusher, snapshots.current, d, ns)[0] for d, ns in (("a", "default"), ("c", "other"))]
    snapshots.set(MESH + after, version=2)
    pusher.push_now(full=True, changed={("VirtualService", "default", "a")})
    fresh_cache = ConfigCache()
    fresh = Pusher(fresh_cache, lambda: replace(snapshots.current, version=3))
    fresh_groups = [connect(fresh, snapshots.current, d, ns)[0] for d, ns in (("a", "default"), ("c", "other"))]
    for group, fresh_group in zip(groups, fresh_groups, strict=True):
        for type_url in (LISTENER, ROUTE, CLUSTER, ENDPOINT):
            given = {n: a.value for n, a in cache.get(group, type_url)[1].items()}
            assert given == {n: a.value for n, a in fresh_cache.get(fresh_group, type_url)[1].items()}, type_url


def test_an_endpoint_push_alone_waits_for_less_quiet_than_a_config_push() -> None:
    async def first_push_after(full: bool) -> float:
        snapshots = Snapshots(MESH)
        pusher = Pusher(ConfigCache(), snapshots, debounce=0.5, max_delay=5.0, endpoint_debounce=0.01)
        await pusher.proxy_connected(proxy_for(snapshots.current, "a", has_sds=True))
        task = asyncio.create_task(pusher.run())
        started = time.monotonic()
        pusher.request_push(full=full)
        while not (pusher.stats.full_pushes or pusher.stats.endpoint_pushes):
            await asyncio.sleep(0.005)
        task.cancel()
        return time.monotonic() - started

    assert asyncio.run(first_push_after(False)) < 0.5 <= asyncio.run(first_push_after(True))


def test_an_endpoint_push_works_out_each_endpoint_scope_once_and_writes_it_once_for_all_its_groups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    snapshots = Snapshots(MESH)
    cache = ConfigCache()
    pusher = Pusher(cache, snapshots)
    a, _ = connect(pusher, snapshots.current, "a")
    b, _ = connect(pusher, snapshots.current, "b")  # a's endpoint scope (its namespace, no Sidecar)
    c, _ = connect(pusher, snapshots.current, "c", "other")
    old_version = cache.version(a, ENDPOINT)
    posted: list[object] = []

    def post(callback: Callable[[], None]) -> None:
        posted.append(callback)
        callback()

    cache.notify_through(post)
    told: list[tuple[str, frozenset[str]]] = []
    cache.watch_all(lambda group, changed: told.append((group, changed)))
    computed: list[str] = []
    compute = Pusher._compute

    def counted(self: Pusher, snapshot: MeshSnapshot, group: str, proxy: Proxy, full: bool) -> object:
        computed.append(group)
        return compute(self, snapshot, group, proxy, full)

    monkeypatch.setattr(Pusher, "_compute", counted)
    snap = snapshots.current
    snapshots.current = replace(snap, workloads=tuple(w for w in snap.workloads if w.name != "b-1"))
    pusher.push_now(full=False)
    # One computation per endpoint scope (a's and b's, c's), not per group.
    assert len(computed) == 2
    # a and b got one and the same snapshot of their endpoints: only b's cluster changed, compared once.
    new_a, new_b = cache.snapshot(a, ENDPOINT), cache.snapshot(b, ENDPOINT)
    assert new_a is new_b and new_a is not None
    assert new_a.previous == old_version and new_a.changed == {"outbound|8000||b.default.svc.cluster.local"}
    assert not new_a.removed
    # Every group was told (c sees b too), in one hand-over per endpoint scope.
    assert sorted(told) == sorted((g, frozenset({ENDPOINT})) for g in (a, b, c))
    assert len(posted) == 2


def test_an_endpoint_push_with_a_sidecar_narrowing_egress_tells_only_the_groups_that_see_the_service() -> None:
    snapshots = Snapshots(MESH + SIDECAR)
    cache = ConfigCache()
    pusher = Pusher(cache, snapshots)
    a, _ = connect(pusher, snapshots.current, "a")
    b, _ = connect(pusher, snapshots.current, "b")
    c, _ = connect(pusher, snapshots.current, "c", "other")
    told: list[str] = []
    cache.watch_all(lambda group, _changed: told.append(group))
    snap = snapshots.current
    snapshots.current = replace(snap, workloads=tuple(w for w in snap.workloads if w.name != "c-1"))
    versions = {g: cache.version(g, ENDPOINT) for g in (a, b, c)}
    pusher.push_now(full=False)
    # a and b (default: sees only its own namespace) neither get new endpoints nor are told; c is.
    assert told == [c]
    assert {g: cache.version(g, ENDPOINT) == versions[g] for g in (a, b, c)} == {a: True, b: True, c: False}


def test_a_pod_change_carries_the_indices_of_the_services_and_of_the_config() -> None:
    snapshots = Snapshots(MESH + VS)
    pusher = Pusher(ConfigCache(), snapshots)
    connect(pusher, snapshots.current, "a")
    before = snapshots.current
    before.hostnames_of_several_services()
    snapshots.current = replace(before, workloads=tuple(w for w in before.workloads if w.name != "c-1"))
    pusher.push_now(full=False)
    after = snapshots.current
    indices = ("services_by_host", "hostnames_of_several_services", "mesh_config", "trust_domains", "by_namespace")
    for tag in indices:
        assert _derived(before, tag), tag
        assert all(after.derived_get(k) is v for k, v in _derived(before, tag).items()), tag
    # A VirtualService change: the config's indices are worked out again, the services' kept.
    snapshots.set(MESH + VS.replace("timeout: 3s", "timeout: 4s"), version=2)
    snapshots.current = replace(snapshots.current, services=after.services)
    pusher.push_now(full=True, changed={("VirtualService", "default", "a")})
    changed = snapshots.current
    assert changed.derived_get("services_by_host") is after.derived_get("services_by_host")
    assert changed.derived_get(("by_namespace", "VirtualService")) is not after.derived_get(
        ("by_namespace", "VirtualService")
    )


def test_the_hosts_of_a_scopes_endpoints_are_known_once_it_is_translated() -> None:
    """(Not worked out by the first pod change after it: ~0.3 ms per scope at 1000 services.)"""
    snapshots = Snapshots(MESH)
    pusher = Pusher(ConfigCache(), snapshots)
    connect(pusher, snapshots.current, "a")
    for tag in ("packed_endpoints", "outbound_endpoints"):
        values = list(_derived(snapshots.current, tag).values())
        known = [getattr(v, "endpoint_hosts", None) or incremental._HOSTS_OF.get(id(v), (v, None))[1] for v in values]
        assert values and None not in known, tag
        assert {h for hosts in known if hosts is not None for h in hosts} == {
            "a.default.svc.cluster.local",
            "b.default.svc.cluster.local",
            "c.other.svc.cluster.local",
            "istio-ingressgateway.istio-system.svc.cluster.local",
        }


def test_an_endpoint_push_works_out_a_groups_endpoint_scope_again_only_after_a_sidecar_change() -> None:
    snapshots = Snapshots(MESH)
    cache = ConfigCache()
    pusher = Pusher(cache, snapshots)
    a, _ = connect(pusher, snapshots.current, "a")
    c, _ = connect(pusher, snapshots.current, "c", "other")

    def pod_gone(name: str) -> dict[str, object]:
        """The groups' endpoint scopes as worked out (the pusher's own record) after a pod change."""
        snap = snapshots.current
        snapshots.current = replace(snap, workloads=tuple(w for w in snap.workloads if w.name != name))
        pusher.push_now(full=False)
        return dict(pusher._endpoint_scopes)

    connected = dict(pusher._endpoint_scopes)  # worked out as the groups connected (translated whole)
    first = pod_gone("c-1")
    assert sorted(first) == sorted([a, c]) and all(first[g] is connected[g] for g in (a, c))
    # Another config (a VirtualService: the same Sidecars), then a pod change: the scopes are known, not worked out.
    snapshots.set(MESH + VS, version=2)
    pusher.push_now(full=True, changed={("VirtualService", "default", "a")})
    second = pod_gone("b-1")
    assert all(second[g] is first[g] for g in (a, c))
    # A Sidecar: every group's scope is worked out again - and a no longer sees c.
    snapshots.set(MESH + VS + "---" + SIDECAR, version=3)
    pusher.push_now(full=True)
    told: list[str] = []
    cache.watch_all(lambda group, _changed: told.append(group))
    third = pod_gone("c-0")
    assert all(third[g] is not second[g] for g in (a, c)) and told == [c]


def test_a_pod_change_patches_the_index_of_workloads_by_label() -> None:
    """Only the lists of the moved pods' labels are made again (in the snapshot's order); the index is the one
    building it from scratch gives."""
    snapshots = Snapshots(MESH)
    pusher = Pusher(ConfigCache(), snapshots)
    connect(pusher, snapshots.current, "a")
    before = snapshots.current
    old = before.derived_get(incremental.LABEL_INDEX)
    assert old is not None
    b1 = next(w for w in before.workloads if w.name == "b-1")
    moved = replace(b1, name="b-9", ip="10.244.9.9", labels=(("app", "b"), ("track", "canary")))
    snapshots.current = replace(before, workloads=(*(w for w in before.workloads if w is not b1), moved))
    pusher.push_now(full=False)
    after = snapshots.current
    index = after.derived_get(incremental.LABEL_INDEX)
    assert index == replace(after, version=9)._workloads_by_label()
    assert [w.name for w in index[("default", "app", "b")]] == ["b-0", "b-9"]
    assert index[("default", "track", "canary")] == [moved]
    assert index[("default", "app", "a")] is old[("default", "app", "a")]  # untouched: the same list
