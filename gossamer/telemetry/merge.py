"""A pod's merged metrics on :15020 /stats/prometheus, as Istio's agent serves them.

Per scrape (never per request): the pod's Envoy stats (its admin socket, Istio's metrics renamed
from Envoy's `envoy_istiocustom_istio_*` to `istio_*`) followed by the app's own metrics when the
pod carries Istio users' annotations `prometheus.io/scrape: "true"`, `prometheus.io/port` and
`prometheus.io/path` (default /metrics).

Envoy owns the port: its bootstrap has a static listener on 0.0.0.0:15020 that forwards to this
server's unix socket (one per pod, reachable by the pod's proxy only), and, for an annotated pod, a
listener on another unix socket forwarding to the app's 127.0.0.1:PORT inside the pod's network
namespace, which this server reads from. So the runtime needs no socket inside any pod.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from gossamer.telemetry.scrape import istio_names

log = logging.getLogger(__name__)

SCRAPE_ANNOTATION = "prometheus.io/scrape"
PORT_ANNOTATION = "prometheus.io/port"
PATH_ANNOTATION = "prometheus.io/path"
DEFAULT_APP_PATH = "/metrics"
FETCH_TIMEOUT_S = 5.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class AppScrape:
    port: int
    path: str = DEFAULT_APP_PATH


def app_scrape(annotations: Mapping[str, str]) -> AppScrape | None:
    """The app's metrics endpoint from Istio users' annotations (None: not scraped)."""
    if str(annotations.get(SCRAPE_ANNOTATION, "")).lower() != "true":
        return None
    port = str(annotations.get(PORT_ANNOTATION, ""))
    if not port.isdigit() or not 0 < int(port) < 65536:
        return None
    path = str(annotations.get(PATH_ANNOTATION) or DEFAULT_APP_PATH)
    return AppScrape(int(port), path if path.startswith("/") else "/" + path)


async def _get(socket: Path, path: str) -> str:
    connector = aiohttp.UnixConnector(path=str(socket))
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        session.get(f"http://localhost{path}") as resp,
    ):
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status}")
        return await resp.text()


class StatsMerger:
    """One pod's :15020 merge: serves on `socket_path`, reads Envoy's admin and the app."""

    def __init__(
        self,
        *,
        socket_path: Path,
        admin_socket: Path,
        app_socket: Path | None = None,
        app: AppScrape | None = None,
        socket_owner: int | None = None,
        local: Mapping[str, str] | None = None,
    ) -> None:
        """`local`: the pod's own side of Istio's labels (telemetry/peer.py `peer_values`), which its
        Envoy leaves out of the stats (the same for every request)."""
        self.socket_path = socket_path
        self.admin_socket = admin_socket
        self.app_socket = app_socket
        self.app = app
        self.socket_owner = socket_owner
        self.local = dict(local) if local is not None else None
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        query = request.query_string
        try:
            stats = await _get(self.admin_socket, "/stats/prometheus" + (f"?{query}" if query else ""))
            envoy = istio_names(stats, self.local)
        except (aiohttp.ClientError, OSError, RuntimeError, TimeoutError) as e:
            return web.Response(status=503, text=f"envoy stats unavailable: {e}\n")
        parts = [envoy]
        if self.app is not None and self.app_socket is not None and not query:
            try:
                parts.append(await _get(self.app_socket, self.app.path))
            except (aiohttp.ClientError, OSError, RuntimeError, TimeoutError) as e:
                # Istio's agent too serves Envoy's metrics when the app's are out of reach.
                log.debug("app metrics of %s unavailable: %s", self.socket_path.parent, e)
        body = "".join(p if p.endswith("\n") or not p else p + "\n" for p in parts)
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})

    async def start(self) -> None:
        app = web.Application()
        app.add_routes([web.get("/stats/prometheus", self.handle)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.socket_path.unlink(missing_ok=True)
        await web.UnixSite(self._runner, str(self.socket_path)).start()
        if self.socket_owner is not None and os.geteuid() == 0:
            os.chown(self.socket_path, self.socket_owner, self.socket_owner)
        os.chmod(self.socket_path, 0o660)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.socket_path.unlink(missing_ok=True)
