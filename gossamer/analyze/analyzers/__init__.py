"""One module per analyzer family (as Istio's pkg/config/analysis/analyzers); importing this package
registers them all."""

from gossamer.analyze.analyzers import (
    annotations,
    authz,
    deployment,
    deprecation,
    destinationrule,
    envoyaccept,
    envoyfilter,
    gateway,
    injection,
    k8sgateway,
    ratelimit,
    service,
    serviceentry,
    sidecar,
    status,
    virtualservice,
    vsrules,
    webhook,
)

__all__ = [
    "annotations",
    "authz",
    "deployment",
    "deprecation",
    "destinationrule",
    "envoyaccept",
    "envoyfilter",
    "gateway",
    "injection",
    "k8sgateway",
    "ratelimit",
    "service",
    "serviceentry",
    "sidecar",
    "status",
    "virtualservice",
    "vsrules",
    "webhook",
]
