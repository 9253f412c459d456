"""The durable config store: applied resources with resourceVersion and generation.

SQLite in WAL mode with synchronous=FULL: once `apply` returns, the change
survives a crash of the control plane. Writes are all-or-nothing per call.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

ChangeKind = Literal["created", "configured", "unchanged", "deleted"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    resource_version INTEGER NOT NULL, generation INTEGER NOT NULL, created_index INTEGER NOT NULL,
    body TEXT NOT NULL, source_file TEXT NOT NULL, source_line INTEGER NOT NULL,
    PRIMARY KEY (kind, namespace, name));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS service_vips (namespace TEXT NOT NULL, name TEXT NOT NULL, vip TEXT NOT NULL UNIQUE,
    PRIMARY KEY (namespace, name));
"""


@dataclass(frozen=True)
class AppliedObject:
    """One object as `Store.apply` takes it: its key, the body to store (as applied, without the
    store's own metadata), and where it came from (for `file:line` in later messages)."""

    kind: str
    namespace: str
    name: str
    body: dict[str, Any]
    source_file: str
    source_line: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)


@dataclass(frozen=True)
class StoredObject:
    kind: str
    namespace: str
    name: str
    resource_version: int
    generation: int
    created_index: int
    body: dict[str, Any]
    source_file: str
    source_line: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    def with_metadata(self) -> dict[str, Any]:
        """The body as `get -o yaml` shows it: with resourceVersion and generation filled in."""
        body: dict[str, Any] = json.loads(json.dumps(self.body))
        meta = body.setdefault("metadata", {})
        meta["namespace"] = self.namespace
        meta["resourceVersion"] = str(self.resource_version)
        meta["generation"] = self.generation
        return body


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    object: StoredObject


def _spec_of(body: dict[str, Any]) -> Any:
    return {k: v for k, v in body.items() if k not in ("metadata", "status")}


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[list[Change]], None]] = []

    def close(self) -> None:
        self._db.close()

    # -- reads --------------------------------------------------------------
    def revision(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key='revision'").fetchone()
        return int(row[0]) if row else 0

    def objects(self, kind: str | None = None, namespace: str | None = None) -> list[StoredObject]:
        query = "SELECT * FROM resources WHERE 1=1"
        args: list[Any] = []
        if kind is not None:
            query += " AND kind=?"
            args.append(kind)
        if namespace is not None:
            query += " AND namespace=?"
            args.append(namespace)
        query += " ORDER BY created_index"
        return [self._row(r) for r in self._db.execute(query, args)]

    def get(self, kind: str, namespace: str, name: str) -> StoredObject | None:
        row = self._db.execute(
            "SELECT * FROM resources WHERE kind=? AND namespace=? AND name=?", (kind, namespace, name)
        ).fetchone()
        return self._row(row) if row else None

    @staticmethod
    def _row(row: Sequence[Any]) -> StoredObject:
        kind, ns, name, rv, gen, created, body, source_file, source_line = row
        return StoredObject(kind, ns, name, rv, gen, created, json.loads(body), source_file, source_line)

    # -- writes -------------------------------------------------------------
    def subscribe(self, listener: Callable[[list[Change]], None]) -> None:
        self._listeners.append(listener)

    def apply(self, objects: Iterable[AppliedObject]) -> list[Change]:
        """Store OBJECTS in one transaction (all or nothing)."""
        changes: list[Change] = []
        with self._transaction():
            revision = self.revision()
            for obj in objects:
                kind, ns, name, body = obj.kind, obj.namespace, obj.name, obj.body
                source_file, source_line = obj.source_file, obj.source_line
                old = self.get(kind, ns, name)
                if old is not None and old.body == body:
                    changes.append(Change("unchanged", old))
                    continue
                revision += 1
                if old is None:
                    generation, created = 1, revision
                else:
                    generation = old.generation + (0 if _spec_of(old.body) == _spec_of(body) else 1)
                    created = old.created_index
                self._db.execute(
                    "INSERT OR REPLACE INTO resources VALUES (?,?,?,?,?,?,?,?,?)",
                    (kind, ns, name, revision, generation, created, json.dumps(body), source_file, source_line),
                )
                changes.append(
                    Change(
                        "created" if old is None else "configured",
                        StoredObject(kind, ns, name, revision, generation, created, body, source_file, source_line),
                    )
                )
            self._set_revision(revision)
        self._notify(changes)
        return changes

    def delete(self, keys: Iterable[tuple[str, str, str]]) -> list[Change]:
        changes: list[Change] = []
        with self._transaction():
            revision = self.revision()
            for kind, ns, name in keys:
                old = self.get(kind, ns, name)
                if old is None:
                    continue
                revision += 1
                self._db.execute("DELETE FROM resources WHERE kind=? AND namespace=? AND name=?", (kind, ns, name))
                changes.append(Change("deleted", old))
            self._set_revision(revision)
        self._notify(changes)
        return changes

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One all-or-nothing write: committed on success, rolled back on any error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _set_revision(self, revision: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('revision', ?)", (str(revision),))

    def _notify(self, changes: list[Change]) -> None:
        real = [c for c in changes if c.kind != "unchanged"]
        if real:
            for listener in self._listeners:
                listener(real)

    # -- service VIPs ---------------------------------------------------------
    def service_vips(self) -> dict[tuple[str, str], str]:
        return {(ns, name): vip for ns, name, vip in self._db.execute("SELECT * FROM service_vips")}

    def allocate_vip(self, namespace: str, name: str, candidates: Iterable[str]) -> str:
        """A stable virtual IP per service, kept across restarts like a Kubernetes ClusterIP."""
        with self._lock:
            existing = self.service_vips()
            if (namespace, name) in existing:
                return existing[(namespace, name)]
            used = set(existing.values())
            vip = next(c for c in candidates if c not in used)
            self._db.execute("INSERT INTO service_vips VALUES (?,?,?)", (namespace, name, vip))
            return vip

    def release_vip(self, namespace: str, name: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM service_vips WHERE namespace=? AND name=?", (namespace, name))
