"""Envoy's rate limit service protocol, as the reference service implements it (see service.py)."""
