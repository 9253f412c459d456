"""Semantic checks, after the models have parsed: the rules Istio's validation webhook and
Kubernetes' API server apply (weights, one-of fields, names, ports, ...). One module per family
of kinds; `common.py` holds what they share.

Every validator takes a `Resource` and returns `Finding`s whose `path` is the field path in
the YAML document (camelCase keys, list indices), e.g. ("spec", "http", 0, "route"); the
loader turns them into `Issue`s with the line of that field.
"""

from gossamer.resources.validation.apps import validate_deployment
from gossamer.resources.validation.common import Finding, all_findings, check_metadata, validate_nothing
from gossamer.resources.validation.core import validate_secret, validate_service
from gossamer.resources.validation.envoy_filter import validate_envoy_filter
from gossamer.resources.validation.networking import (
    validate_destination_rule,
    validate_gateway,
    validate_service_entry,
    validate_sidecar,
    validate_workload_entry,
)
from gossamer.resources.validation.security import (
    validate_authorization_policy,
    validate_peer_authentication,
    validate_request_authentication,
)
from gossamer.resources.validation.telemetry import validate_telemetry
from gossamer.resources.validation.virtual_service import validate_virtual_service

__all__ = [
    "Finding",
    "all_findings",
    "check_metadata",
    "validate_authorization_policy",
    "validate_deployment",
    "validate_destination_rule",
    "validate_envoy_filter",
    "validate_gateway",
    "validate_nothing",
    "validate_peer_authentication",
    "validate_request_authentication",
    "validate_secret",
    "validate_service",
    "validate_service_entry",
    "validate_sidecar",
    "validate_telemetry",
    "validate_virtual_service",
    "validate_workload_entry",
]
