"""The dashboard's web app (aiohttp): one static page and the JSON it polls every 2 s.

Served by `gossamer up --dashboard-port N` on 127.0.0.1 only. Everything is read only; the
explain form runs the same (side-effect free) explanation as `gossamer explain`. Requests must
name a loopback host (no DNS rebinding) and the one POST must be JSON (no cross-site forms).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from gossamer.api.server import Api
from gossamer.dashboard.views import Dashboard

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]"}
SAMPLE_EVERY_S = 2.0
WATCHED_FOR_S = 120.0
IDLE_SAMPLE_EVERY_S = 10.0
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DASHBOARD_KEY = web.AppKey("dashboard", Dashboard)


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.split(":", 1)[0]


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _hostname(request.host or "") not in LOOPBACK_HOSTS:
        return web.json_response({"error": "the dashboard answers only to 127.0.0.1 / localhost"}, status=403)
    if request.method not in ("GET", "HEAD") and request.content_type != "application/json":
        return web.json_response({"error": "JSON only"}, status=415)
    response = await handler(request)
    response.headers.update(SECURITY_HEADERS)
    return response


def dashboard_app(api: Api) -> web.Application:
    dash = Dashboard(api.control_plane)
    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app[DASHBOARD_KEY] = dash

    async def json_of(view: Callable[[], object]) -> web.Response:
        return web.json_response(view())

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    viewed = [0.0]  # when the graph was last asked for

    async def graph(request: web.Request) -> web.Response:
        viewed[0] = time.monotonic()
        return web.json_response(await dash.graph())

    async def workloads(request: web.Request) -> web.Response:
        return await json_of(dash.workloads)

    async def config(request: web.Request) -> web.Response:
        return await json_of(dash.config)

    async def overview(request: web.Request) -> web.Response:
        return await json_of(dash.overview)

    async def explain(request: web.Request) -> web.Response:
        return await api.explain_request(request)  # the API's own handler: same body, same answer

    async def sampler(app: web.Application) -> AsyncIterator[None]:
        # Counter history for rates, whether or not a browser is polling: every SAMPLE_EVERY_S while
        # someone watches, every IDLE_SAMPLE_EVERY_S otherwise (a sample scrapes every proxy).
        async def run() -> None:
            while True:
                try:
                    await dash.sample()
                except Exception:  # never let a bad sample stop the history
                    log.exception("dashboard: sampling the request counters failed")
                watched = time.monotonic() - viewed[0] < WATCHED_FOR_S
                await asyncio.sleep(SAMPLE_EVERY_S if watched else IDLE_SAMPLE_EVERY_S)

        task = asyncio.create_task(run(), name="dashboard-sampler")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(sampler)
    app.add_routes(
        [
            web.get("/", index),
            web.get("/api/overview", overview),
            web.get("/api/graph", graph),
            web.get("/api/workloads", workloads),
            web.get("/api/config", config),
            web.post("/api/explain", explain),
            web.static("/static", STATIC),
        ]
    )
    return app
