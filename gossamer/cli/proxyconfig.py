"""istioctl-style tables for `gossamer proxy-config`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _listeners(items: list[dict[str, Any]]) -> Table:
    t = Table(title="Listeners", box=None, pad_edge=False)
    for col in ("NAME", "ADDRESS", "PORT", "BIND"):
        t.add_column(col)
    for it in items:
        sock = it.get("address", {}).get("socketAddress", {})
        t.add_row(
            it["name"],
            sock.get("address", ""),
            str(sock.get("portValue", "")),
            "no" if it.get("bindToPort") is False else "yes",
        )
    return t


def _routes(items: list[dict[str, Any]]) -> Table:
    t = Table(title="Routes", box=None, pad_edge=False)
    for col in ("NAME", "VIRTUAL HOST", "DOMAINS", "MATCH", "DESTINATION"):
        t.add_column(col)
    for rc in items:
        for vh in rc.get("virtualHosts", []):
            domains = vh.get("domains", [])
            for r in vh.get("routes", []):
                m = r.get("match", {})
                match = m.get("path") or m.get("prefix") or (m.get("safeRegex") or {}).get("regex", "")
                if m.get("headers"):
                    match += " " + ",".join(h["name"] for h in m["headers"])
                action = r.get("route", {})
                weighted = action.get("weightedClusters", {}).get("clusters", [])
                dest = action.get("cluster") or ", ".join(f"{c['name']} ({c.get('weight', '')})" for c in weighted)
                t.add_row(
                    rc["name"],
                    vh["name"],
                    domains[0] + (f" +{len(domains) - 1}" if len(domains) > 1 else ""),
                    match,
                    dest,
                )
    return t


def _clusters(items: list[dict[str, Any]]) -> Table:
    t = Table(title="Clusters", box=None, pad_edge=False)
    for col in ("NAME", "TYPE"):
        t.add_column(col)
    for it in items:
        t.add_row(it["name"], it.get("type", "STATIC"))
    return t


def _endpoints(items: list[dict[str, Any]]) -> Table:
    t = Table(title="Endpoints", box=None, pad_edge=False)
    for col in ("ENDPOINT", "CLUSTER"):
        t.add_column(col)
    for it in items:
        for loc in it.get("endpoints", []):
            for ep in loc.get("lbEndpoints", []):
                sock = ep["endpoint"]["address"]["socketAddress"]
                t.add_row(f"{sock['address']}:{sock['portValue']}", it["clusterName"])
    return t


RENDERERS = {"listeners": _listeners, "routes": _routes, "clusters": _clusters, "endpoints": _endpoints}


def print_proxy_config(console: Console, body: dict[str, Any], wanted: str) -> None:
    console.print(f"Proxy {body['nodeId']} (group {body['group']})", highlight=False)
    for key, render in RENDERERS.items():
        if wanted in (key, "all") and key in body:
            console.print(render(body[key]["items"]))
    if "stats" in body:
        # Raw: no markup, no wrapping (a stat is one `name: value` line, often over 80 columns).
        console.out(body["stats"], highlight=False)
