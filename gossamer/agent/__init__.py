"""Istio's pilot-agent as a library: Envoy bootstrap generation and command line."""

from gossamer.agent.bootstrap import (
    build_bootstrap,
    proxy_metadata,
    service_cluster,
    write_bootstrap,
)
from gossamer.agent.envoy import as_proxy_user, envoy_args, envoy_binary

__all__ = [
    "as_proxy_user",
    "build_bootstrap",
    "envoy_args",
    "envoy_binary",
    "proxy_metadata",
    "service_cluster",
    "write_bootstrap",
]
