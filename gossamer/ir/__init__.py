"""Typed intermediate representation (see ir.types)."""
