"""The durable store: versions, generations, all-or-nothing writes, survival across reopen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gossamer.store import AppliedObject, Store

VS = ("VirtualService", "default", "reviews")


def applied(body: dict[str, Any]) -> AppliedObject:
    return AppliedObject(*VS, body, "f.yaml", 3)


def body(subset: str, label: str = "a") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "default", "labels": {"team": label}},
        "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": subset}}]}]},
    }


def test_versions_and_generations(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    [created] = store.apply([applied(body("v1"))])
    assert created.kind == "created" and created.object.generation == 1
    [same] = store.apply([applied(body("v1"))])
    assert same.kind == "unchanged" and same.object.resource_version == created.object.resource_version
    [relabelled] = store.apply([applied(body("v1", "b"))])
    assert relabelled.kind == "configured" and relabelled.object.generation == 1  # metadata only
    [respec] = store.apply([applied(body("v2", "b"))])
    assert respec.object.generation == 2 and respec.object.resource_version > relabelled.object.resource_version
    stored = store.get(*VS)
    assert stored is not None
    assert stored.with_metadata()["metadata"]["resourceVersion"] == str(respec.object.resource_version)


def test_a_failed_write_changes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.apply([applied(body("v1"))])
    before = store.revision()

    def objects() -> Iterator[AppliedObject]:
        yield AppliedObject("DestinationRule", "default", "reviews", {"kind": "DestinationRule"}, "g.yaml", 1)
        raise RuntimeError("bad input half way")

    with pytest.raises(RuntimeError):
        store.apply(objects())
    assert store.revision() == before
    assert store.get("DestinationRule", "default", "reviews") is None


def test_applied_config_survives_reopening(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.apply([applied(body("v3"))])
    vip = store.allocate_vip("default", "reviews", iter(["10.96.0.10", "10.96.0.11"]))
    store.close()
    reopened = Store(tmp_path / "s.db")
    kept = reopened.get(*VS)
    assert kept is not None and kept.body == body("v3")
    assert reopened.allocate_vip("default", "reviews", iter(["10.96.0.11"])) == vip
    [deleted] = reopened.delete([VS])
    assert deleted.kind == "deleted" and reopened.objects() == []


def test_watchers_hear_only_real_changes(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    heard: list[str] = []
    store.subscribe(lambda changes: heard.extend(c.kind for c in changes))
    store.apply([applied(body("v1"))])
    store.apply([applied(body("v1"))])
    store.delete([VS])
    assert heard == ["created", "deleted"]
