"""Durable config store (SQLite)."""

from gossamer.store.sqlite import Change, Store, StoredObject

__all__ = ["Change", "Store", "StoredObject"]
