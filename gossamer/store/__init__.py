"""Durable config store (SQLite)."""

from gossamer.store.sqlite import AppliedObject, Change, Store, StoredObject

__all__ = ["AppliedObject", "Change", "Store", "StoredObject"]
