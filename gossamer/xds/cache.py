"""Config cache: the single owner of xDS versions.

Modelled on go-control-plane's snapshot cache: the control plane hands in the
complete desired config of a *proxy group* (every proxy in a group gets the same
config), the cache packs every resource into `Any` exactly once, and decides per
type whether anything changed. The ADS server never invents versions; it only
reads them from here and tracks what each stream has sent/ACKed.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import weakref
from collections.abc import Callable, Iterator, KeysView, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar, cast

from google.protobuf import any_pb2
from google.protobuf.message import Message

from gossamer.xds.types import ENDPOINT, PUSH_ORDER, ROUTE, vhds_key, vhds_route_config

log = logging.getLogger(__name__)

_TYPE_PREFIX = "type.googleapis.com/"

# A resource as the cache keeps it: packed once, with its per-resource version.
Packed = tuple[any_pb2.Any, str]

# (group, changed type_urls) -> None. Called synchronously inside set_group & co,
# so it must be cheap and must not block (the server just enqueues a wake-up).
ChangeCallback = Callable[[str, frozenset[str]], None]

_EMPTY: Mapping[str, any_pb2.Any] = MappingProxyType({})
_NOTHING: Mapping[str, Packed] = MappingProxyType({})


def _same(old: Mapping[str, Packed], new: Mapping[str, Packed]) -> bool:
    """The same names at the same per-resource versions."""
    if old is new:
        return True
    if isinstance(old, Layered) and isinstance(new, Layered) and old.shared is new.shared:
        return _same(old.own, new.own)  # (the shared layer is the same object: only the groups' own can differ)
    if old.keys() != new.keys():
        return False
    return all(new[name][1] == packed[1] for name, packed in old.items())


T = TypeVar("T")


class _Column(Mapping[str, T]):
    """One column - the packed resources, or their versions - of a name -> (Any, version) mapping, read
    in place: a group's resources are the very mapping the pusher built (shared by a scope's groups),
    not copies of it."""

    __slots__ = ("_packed", "_i")

    def __init__(self, packed: Mapping[str, Packed], column: int) -> None:
        self._packed = packed
        self._i = column

    def __getitem__(self, name: str) -> T:
        return cast(T, self._packed[name][self._i])

    def get(self, name: str, default: Any = None) -> Any:
        found = self._packed.get(name)
        return default if found is None else found[self._i]

    def __contains__(self, name: object) -> bool:
        return name in self._packed

    def __iter__(self) -> Iterator[str]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)

    def keys(self) -> KeysView[str]:
        return self._packed.keys()  # a dict's keys: set operations in C


class Layered(Mapping[str, Packed]):
    """A group's resources as a layer shared by many groups (a scope's clusters: the same object for all of
    them) under the group's own few (its inbound clusters), read through - not merged into a dict of its
    own per group: at 1000 services a thousand groups would hold a copy of the same 1,400 clusters each
    (~70 MB). A name in both layers is the group's own."""

    __slots__ = ("shared", "own")

    def __init__(self, shared: Mapping[str, Packed], own: Mapping[str, Packed]) -> None:
        self.shared = shared
        self.own = own

    def __getitem__(self, name: str) -> Packed:
        found = self.own.get(name)
        return self.shared[name] if found is None else found

    def get(self, name: str, default: Any = None) -> Any:
        found = self.own.get(name)
        return self.shared.get(name, default) if found is None else found

    def __contains__(self, name: object) -> bool:
        return name in self.own or name in self.shared

    def __iter__(self) -> Iterator[str]:
        own = self.own
        yield from (n for n in self.shared if n not in own)
        yield from own

    def __len__(self) -> int:
        shared = self.shared
        return len(shared) + sum(1 for n in self.own if n not in shared)


@dataclass(frozen=True)
class TypeSnapshot:
    """Immutable content of one (group, type): shared by every stream of the group."""

    version: str
    packed: Mapping[str, Packed]  # name -> (packed resource, per-resource version)
    # What changed since the group's previous snapshot of this type (version `previous`): a delta
    # stream that holds exactly `previous` only needs these, not a comparison of every resource.
    previous: str = ""
    changed: frozenset[str] = frozenset()  # added or modified names
    removed: frozenset[str] = frozenset()

    @property
    def resources(self) -> Mapping[str, any_pb2.Any]:
        """name -> packed resource"""
        return _Column(self.packed, 0)

    @property
    def hashes(self) -> Mapping[str, str]:
        """name -> per-resource version (hash of the serialized bytes), for delta xDS"""
        return _Column(self.packed, 1)


@dataclass
class _Group:
    types: dict[str, TypeSnapshot] = field(default_factory=dict)  # as delivered
    # Route configurations as given, when delivered split (VHDS): what the debugging tools read.
    given_routes: Mapping[str, Packed] | None = None


def resource_hash(data: bytes) -> str:
    """Per-resource version used by delta xDS: stable across restarts and processes."""
    return hashlib.sha256(data).hexdigest()[:16]


def pack(type_url: str, name: str, msg: Message) -> Packed:
    full_name = msg.DESCRIPTOR.full_name
    if _TYPE_PREFIX + full_name != type_url:
        raise ValueError(f"resource {name!r} is a {full_name}, but was given under type {type_url}")
    # deterministic=True: map fields (Struct metadata, typed_filter_metadata, ...) must
    # serialize identically for identical content, or every rebuild would look like a change.
    data = msg.SerializeToString(deterministic=True)
    return any_pb2.Any(type_url=type_url, value=data), resource_hash(data)


class SharedResources(dict[str, Packed]):
    """Resources handed in for many groups (one scope's): the cache splits them once and the groups
    share the result."""

    # Made from BASE by replacing (or adding) the entries NAMES and nothing else (replaced()): the cache then
    # compares only those with BASE (a pod change: one service's endpoints among a thousand). BASE weakly: each
    # pod change's mapping would otherwise keep every one before it.
    base: tuple[weakref.ref[SharedResources], frozenset[str]] | None = None

    def replaced(self, entries: Mapping[str, Packed]) -> SharedResources:
        """A copy with ENTRIES replaced or added, that knows it was made so."""
        new = SharedResources(self)
        new.update(entries)
        new.base = (weakref.ref(self), frozenset(entries))
        return new


def pack_all(resources: Mapping[str, Mapping[str, Message]]) -> dict[str, dict[str, Packed]]:
    return {t: {n: pack(t, n, m) for n, m in named.items()} for t, named in resources.items()}


# (group, its route configurations) -> None: delivered as they are; or (the route configurations as RDS
# sends them, route configuration -> its virtual hosts as VHDS sends them). See xds/vhds.py.
SplitRoutes = tuple[Mapping[str, Packed], Mapping[str, Mapping[str, Packed]]]
RouteSplit = Callable[[str, Mapping[str, Packed]], SplitRoutes | None]


class ConfigCache:
    """Per proxy group, per type: a version plus the packed resources.

    Types are keyed by type URL, and a route configuration's virtual hosts delivered over VHDS by
    `vhds_key(route configuration)` (xds/types.py): each has versions of its own."""

    def __init__(self, *, route_split: RouteSplit | None = None) -> None:
        self._route_split = route_split
        self._groups: dict[str, _Group] = {}
        # One counter for the whole cache: versions never repeat, not even after a
        # group is removed and re-added, so an old ACK can never look current. (Groups
        # given one shared mapping share its version: it names the same content.)
        self._counter = itertools.count(1)
        self._watchers: dict[str, list[ChangeCallback]] = {}
        self._global_watchers: list[ChangeCallback] = []
        # How change callbacks are run: on the writer's thread (None), or handed to this (the thread that
        # serves the streams, when that is not the one writing; see controlplane/xds_thread.py).
        self._post: Callable[[Callable[[], None]], None] | None = None
        # id(mapping) -> (mapping, resources, hashes): mappings shared by the groups of a scope
        self._versions: dict[int, tuple[Mapping[str, Packed], str]] = {}
        self._diffs: dict[
            tuple[int, int], tuple[Mapping[str, Packed], Mapping[str, Packed], frozenset[str], frozenset[str]]
        ] = {}

    # ---- writes -------------------------------------------------------------

    def set_group(self, group: str, resources: Mapping[str, Mapping[str, Message]]) -> set[str]:
        """Replace the full config of `group` (type_url -> name -> proto); see set_group_packed."""
        return self.set_group_packed(group, pack_all(resources))

    def set_group_packed(
        self, group: str, resources: Mapping[str, Mapping[str, Packed]], *, partial: bool = False
    ) -> set[str]:
        """Replace the full config of `group` (type_url -> name -> packed resource).

        Types missing from `resources` are treated as empty (the group has none of
        them), or as unchanged with PARTIAL. Returns the type_urls whose content changed;
        only those get a new version.
        A mapping handed in for several groups (a scope's shared resources) is split once
        and its dicts are shared by those groups.
        """
        g = self._groups.get(group)
        created = g is None
        if g is None:
            g = _Group()
            self._groups[group] = g
        if self._route_split is not None and (ROUTE in resources or not partial):
            resources = self._split_routes(group, g, resources)
        changed: set[str] = set()
        for type_url in set(resources) if partial else set(PUSH_ORDER) | set(resources) | set(g.types):
            if self._update_type(g, type_url, resources.get(type_url, _NOTHING)):
                changed.add(type_url)
        if changed or created:
            self._notify(group, frozenset(changed))
        return changed

    def prepare(self, group: str, resources: Mapping[str, Mapping[str, Packed]]) -> None:
        """The part of set_group_packed(GROUP, RESOURCES) that depends on RESOURCES alone (route configurations
        split for VHDS: ~1000 virtual hosts per table at 1000 services), done now on the caller's thread - the
        translator's - so that the write on the event loop finds it done (the splitter keeps what it split)."""
        if self._route_split is not None and ROUTE in resources:
            self._route_split(group, resources[ROUTE])

    def _split_routes(
        self, group: str, g: _Group, resources: Mapping[str, Mapping[str, Packed]]
    ) -> Mapping[str, Mapping[str, Packed]]:
        """RESOURCES as delivered: route configurations split for VHDS when route_split says so; the
        virtual hosts of a route configuration gone are removed."""
        routes = resources.get(ROUTE, _NOTHING)
        split = self._route_split(group, routes) if self._route_split is not None else None
        out = dict(resources)
        for key in g.types:
            if vhds_route_config(key) is not None:
                out[key] = _NOTHING
        if split is None:
            g.given_routes = None
            return out
        g.given_routes = routes
        out[ROUTE] = split[0]
        for name, vhosts in split[1].items():
            out[vhds_key(name)] = vhosts
        return out

    def set_endpoints(self, group: str, endpoints: Mapping[str, Message]) -> bool:
        return self.set_endpoints_packed(group, {n: pack(ENDPOINT, n, m) for n, m in endpoints.items()})

    def set_endpoints_packed(self, group: str, endpoints: Mapping[str, Packed]) -> bool:
        """Fast path for endpoint churn: replace only the group's EDS resources."""
        g = self._groups.get(group)
        if g is None:
            g = _Group()
            self._groups[group] = g
        changed = self._update_type(g, ENDPOINT, endpoints)
        if changed:
            self._notify(group, frozenset({ENDPOINT}))
        return changed

    def set_shared(self, groups: Sequence[str], type_url: str, new: Mapping[str, Packed]) -> list[str]:
        """set_group_packed(GROUP, {TYPE_URL: NEW}, partial=True) for each of GROUPS (existing ones), at a constant
        cost per group: groups that held the same snapshot of the type get the same new one (compared and
        versioned once), and the streams of all of them are told in one notification. Returns the groups whose
        TYPE_URL changed. (Not for route configurations: those may be split per group, see set_group_packed.)"""
        if type_url == ROUTE and self._route_split is not None:
            raise ValueError("route configurations are written per group (set_group_packed)")
        # What a group's old snapshot becomes: by its version and content (groups given one shared mapping hold
        # snapshots of the same version and content, made one per group) -> (content, new snapshot or None).
        made: dict[tuple[str, int], tuple[Mapping[str, Packed], TypeSnapshot | None]] = {}
        changed: list[str] = []
        for group in groups:
            g = self._groups.get(group)
            if g is None:
                continue
            old = g.types.get(type_url)
            key = ("", 0) if old is None else (old.version, id(old.packed))
            found = made.get(key)
            if found is None or (old is not None and found[0] is not old.packed):
                found = (_NOTHING if old is None else old.packed, None)
                if self._update_type(g, type_url, new):
                    found = (found[0], g.types[type_url])
                made[key] = found
            elif found[1] is not None:
                g.types[type_url] = found[1]
            if found[1] is not None:
                changed.append(group)
        if changed:
            self._notify_groups(changed, frozenset({type_url}))
        return changed

    def remove_group(self, group: str) -> None:
        g = self._groups.pop(group, None)
        if g is not None and g.types:
            # Streams still attached to the group see version "" and stop pushing.
            self._notify(group, frozenset(g.types))

    def _version(self, new: Mapping[str, Packed]) -> str:
        """A new version; shared mappings get one for every group they are given to: the same content,
        the same version, so the server can send every stream of those groups the same response."""
        found = self._versions.get(id(new)) if isinstance(new, SharedResources) else None
        if found is not None and found[0] is new:
            return found[1]
        version = str(next(self._counter))
        if isinstance(new, SharedResources):
            if len(self._versions) > 4096:
                self._versions.clear()
            self._versions[id(new)] = (new, version)  # holds `new`: its id cannot be reused meanwhile
        return version

    def _update_type(self, g: _Group, type_url: str, new: Mapping[str, Packed]) -> bool:
        old = g.types.get(type_url)
        shared = isinstance(new, SharedResources)
        # (Layered ones are compared by their layers in _diff: a thousand groups' shared layers compared once.)
        compared = (shared or isinstance(new, Layered)) and old is not None and old.packed
        if old is not None and (old.packed is new or (not compared and _same(old.packed, new))):
            return False
        changed, removed = self._diff(old.packed if old is not None else _NOTHING, new, remember=shared)
        if old is not None and old.packed and not changed and not removed:
            return False  # a shared mapping with the same content: compared once for all its groups
        g.types[type_url] = TypeSnapshot(
            version=self._version(new),
            packed=new,
            # "" when nothing was there: no stream takes a shortcut from it
            previous=old.version if old is not None and old.packed else "",
            changed=changed,
            removed=removed,
        )
        return True

    def _diff(
        self, old: Mapping[str, Packed], new: Mapping[str, Packed], *, remember: bool
    ) -> tuple[frozenset[str], frozenset[str]]:
        """(added or modified, removed) names; shared mappings (a scope's groups) are compared once."""
        if not old:
            return frozenset(), frozenset()  # no previous version: nobody can hold it (see `previous`)
        if isinstance(old, Layered) and isinstance(new, Layered):
            return self._layered_diff(old, new)
        key = (id(old), id(new))
        found = self._diffs.get(key) if remember else None
        if found is not None and found[0] is old and found[1] is new:
            return found[2], found[3]
        base = new.base if isinstance(new, SharedResources) else None
        if base is not None and base[0]() is old:  # OLD with some entries replaced: only those can differ
            changed = frozenset(n for n in base[1] if (o := old.get(n)) is None or o[1] != new[n][1])
            removed: frozenset[str] = frozenset()
        else:
            changed = frozenset(n for n, p in new.items() if (o := old.get(n)) is None or o[1] != p[1])
            removed = frozenset(old.keys() - new.keys())
        if not remember:
            return changed, removed
        if len(self._diffs) > 4096:
            self._diffs.clear()
        self._diffs[key] = (old, new, changed, removed)
        return changed, removed

    def _layered_diff(self, old: Layered, new: Layered) -> tuple[frozenset[str], frozenset[str]]:
        """_diff of two groups' layered resources: only names in either's own layer, or that the shared layers
        differ in (compared once for every group that shares them), can differ."""
        names = old.own.keys() | new.own.keys()
        if old.shared is not new.shared:
            changed, removed = self._diff(old.shared, new.shared, remember=True)
            names |= changed | removed
        return (
            frozenset(
                n for n in names if (p := new.get(n)) is not None and ((o := old.get(n)) is None or o[1] != p[1])
            ),
            frozenset(n for n in names if n not in new and n in old),
        )

    # ---- reads --------------------------------------------------------------

    def get(self, group: str, type_url: str) -> tuple[str, Mapping[str, any_pb2.Any]]:
        """(version, name -> packed). Version "" means the cache has nothing for it yet."""
        snap = self.snapshot(group, type_url)
        if snap is None:
            return "", _EMPTY
        return snap.version, snap.resources

    def given(self, group: str, type_url: str) -> tuple[str, Mapping[str, any_pb2.Any]]:
        """get(), except that route configurations delivered over VHDS are given whole, as translated (the
        version is RDS's: what the proxy was sent of them besides their virtual hosts)."""
        g = self._groups.get(group)
        version, resources = self.get(group, type_url)
        if type_url == ROUTE and g is not None and g.given_routes is not None:
            return version, _Column(g.given_routes, 0)
        return version, resources

    def vhds_keys(self, group: str) -> list[str]:
        """The group's route configurations' virtual host keys (vhds_key) that have virtual hosts."""
        g = self._groups.get(group)
        if g is None:
            return []
        # (list(): read by the ADS thread while the pusher may add a type)
        return [
            k for k, snap in list(g.types.items()) if snap.packed is not _NOTHING and vhds_route_config(k) is not None
        ]

    def snapshot(self, group: str, type_url: str) -> TypeSnapshot | None:
        g = self._groups.get(group)
        return g.types.get(type_url) if g is not None else None

    def version(self, group: str, type_url: str) -> str:
        snap = self.snapshot(group, type_url)
        return snap.version if snap is not None else ""

    def has_group(self, group: str) -> bool:
        return group in self._groups

    def groups(self) -> list[str]:
        return sorted(self._groups)

    # ---- change notification ------------------------------------------------

    def watch(self, group: str, callback: ChangeCallback) -> Callable[[], None]:
        """Call `callback(group, changed_types)` after every change to `group`.

        Returns a function that removes the watch. Watches survive remove_group,
        so a stream attached before its group exists is told when it appears.
        """
        self._watchers.setdefault(group, []).append(callback)

        def cancel() -> None:
            cbs = self._watchers.get(group)
            if cbs is not None and callback in cbs:
                cbs.remove(callback)
                if not cbs:
                    del self._watchers[group]

        return cancel

    def watch_all(self, callback: ChangeCallback) -> Callable[[], None]:
        """Like watch(), for every group (used for status/wait_synced bookkeeping)."""
        self._global_watchers.append(callback)

        def cancel() -> None:
            if callback in self._global_watchers:
                self._global_watchers.remove(callback)

        return cancel

    def notify_through(self, post: Callable[[Callable[[], None]], None]) -> None:
        """Run the change callbacks through POST (which runs what it is given, in order, on the thread that
        serves the streams) instead of on the writer's thread. Watches are then added and removed on that
        thread too. A stream reads the cache after watching it: a write it did not see is notified after."""
        self._post = post

    def _notify(self, group: str, changed: frozenset[str]) -> None:
        if self._post is not None:
            self._post(functools.partial(self._notify_now, group, changed))
        else:
            self._notify_now(group, changed)

    def _notify_groups(self, groups: list[str], changed: frozenset[str]) -> None:
        """_notify for each of GROUPS, as one callback (one hand-over to the streams' thread for all)."""
        if self._post is not None:
            self._post(functools.partial(self._notify_all_now, groups, changed))
        else:
            self._notify_all_now(groups, changed)

    def _notify_all_now(self, groups: list[str], changed: frozenset[str]) -> None:
        for group in groups:
            self._notify_now(group, changed)

    def _notify_now(self, group: str, changed: frozenset[str]) -> None:
        # Copy: a callback may cancel its own watch.
        for cb in [*self._watchers.get(group, ()), *self._global_watchers]:
            try:
                cb(group, changed)
            except Exception:  # a broken watcher must not break the control plane's write
                log.exception("config cache watcher failed for group %s", group)
