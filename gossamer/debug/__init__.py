"""Debugging aids: simulate where Envoy would send a request, given the xDS it was sent."""

from gossamer.debug.simulate import Request, Result, SimulationError, simulate

__all__ = ["Request", "Result", "SimulationError", "simulate"]
