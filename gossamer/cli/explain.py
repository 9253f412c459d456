"""Readable output of `gossamer explain` (the API's /v1/explain answer)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

_WIDTH = 13


def _line(console: Console, label: str, text: str, style: str | None = None) -> None:
    # console.out: no wrapping, no markup, so long cluster names stay on one line and copy-paste.
    console.out(f"{label:<{_WIDTH}}{text}", style=style, highlight=False)


def _rule(entry: dict[str, Any]) -> str:
    name = f" {entry['name']!r}" if entry.get("name") else ""
    index = f"#{entry['index']}" if entry.get("index") else ""
    source = entry.get("source")
    origin = " (built-in default route)" if source == "default" else (f" from {source}" if source else "")
    return f"{index}{name}{origin}".strip()


def print_explanation(console: Console, body: dict[str, Any]) -> None:
    req = body["request"]
    direction = "to" if req.get("inbound") else "from"
    console.out(
        f"{req['method']} {req['url']} {direction} pod {body.get('pod', '?')} (proxy {body.get('proxy', '?')})",
        style="bold",
        highlight=False,
    )
    console.out(f"{'':<{_WIDTH}}Host: {req['authority']}", highlight=False)
    for name, value in req.get("headers", {}).items():
        console.out(f"{'':<{_WIDTH}}{name}: {value}", highlight=False)
    dest = body.get("destination", {})
    if dest.get("address") is None:
        _line(console, "destination", dest.get("resolution", ""), "red")
        _sync(console, body)
        return
    _line(console, "destination", f"{dest['address']}:{dest['port']} ({dest.get('resolution', '')})")
    if body.get("error"):
        _line(console, "error", body["error"], "red")
        _sync(console, body)
        return
    _line(console, "listener", f"{body['listener']['name']} - {body['listener']['why']}")
    _line(console, "filter chain", f"{body['filterChain']['name']} - {body['filterChain']['why']}")
    if body.get("routeConfig"):
        _line(console, "route table", body["routeConfig"])
    vh = body.get("virtualHost")
    if vh:
        _line(console, "virtual host", f"{vh['name']} - matched {vh['why']}")
    for entry in body.get("notMatched", []):
        _line(console, "  no match", f"{_rule(entry)}: {entry['why']} did not match", "dim")
    route = body.get("route")
    if route:
        why = f": {route['why']} matched" if route.get("why") else ""
        _line(console, "route", f"{_rule(route)}{why}", "green")
    for c in body.get("clusters", []):
        kind = f", {c['type']}" if c.get("type") else ""
        _line(console, "cluster", f"{c['name']} (weight {c['weight']}{kind})")
        for ep in c.get("endpoints", []):
            health = ep.get("health", "UNKNOWN")  # UNKNOWN: no health status set, Envoy treats it as healthy
            _line(console, "  endpoint", ep["address"] + ("" if health == "UNKNOWN" else f" {health}"))
        if c.get("note"):
            _line(console, "", c["note"], "yellow")
    for k, v in body.get("requestHeadersToAdd", []):
        _line(console, "adds header", f"{k}: {v}")
    for line in body.get("rateLimits", []):
        _line(console, "rate limit", line.strip(), "dim" if line.startswith("  ") else None)
    status = body.get("status")
    _line(console, "result", body.get("verdict", ""), "bold red" if status and status >= 400 else "bold")
    _sync(console, body)


def _sync(console: Console, body: dict[str, Any]) -> None:
    sync = body.get("sync") or {}
    if sync:
        _line(console, "proxy sync", ", ".join(f"{t.upper()} {s['state']}" for t, s in sync.items()))
    for w in body.get("warnings", []):
        _line(console, "warning", w, "yellow")
