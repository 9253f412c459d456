"""Typed models of every accepted kind, parsed from YAML with file and line kept, and
validated with Istio's (and Kubernetes') rules.

    from gossamer.resources import load_paths, parse_documents, lookup_kind
"""

from gossamer.resources.base import Metadata, Resource, format_path, split_path
from gossamer.resources.duration import parse_duration
from gossamer.resources.enforcement import not_enforced_fields, not_enforced_issues
from gossamer.resources.issues import Issue, has_errors
from gossamer.resources.kinds import ALL_KINDS, KindInfo, kind_for, lookup_kind
from gossamer.resources.loader import ResourceError, load_paths, parse_documents, resource_from_raw

__all__ = [
    "ALL_KINDS",
    "Issue",
    "KindInfo",
    "Metadata",
    "Resource",
    "ResourceError",
    "format_path",
    "has_errors",
    "kind_for",
    "load_paths",
    "lookup_kind",
    "not_enforced_fields",
    "not_enforced_issues",
    "parse_duration",
    "parse_documents",
    "resource_from_raw",
    "split_path",
]
