"""One module per analyzer family (as Istio's pkg/config/analysis/analyzers); importing this package
registers them all."""

from gossamer.analyze.analyzers import destinationrule, gateway, service, serviceentry, sidecar, virtualservice

__all__ = ["destinationrule", "gateway", "service", "serviceentry", "sidecar", "virtualservice"]
