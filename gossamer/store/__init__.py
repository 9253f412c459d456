"""Durable config store (SQLite)."""

from gossamer.store.sqlite import Change, StoredObject, Store

__all__ = ["Change", "Store", "StoredObject"]
