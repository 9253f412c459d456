"""A small Kiali-like dashboard served by `gossamer up` on loopback: mesh graph, workloads, config."""

from gossamer.dashboard.app import dashboard_app

__all__ = ["dashboard_app"]
