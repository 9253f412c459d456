"""`python3 -m gossamer.ratelimit`: the rate limit service, configured as Envoy's reference service is
(Istio's samples/ratelimit sets these):

* REDIS_URL (`redis:6379`): the counters' Redis (REDIS_SOCKET_TYPE tcp only).
* RUNTIME_ROOT, RUNTIME_SUBDIRECTORY (`/srv/runtime_data/current`, `ratelimit`): the configuration is
  every `*.yaml`/`*.yml` under `<root>/<subdirectory>/config/`, re-read when it changes (a ConfigMap
  volume's update); RUNTIME_IGNOREDOTFILES skips names starting with `.` (a volume's `..data`).
* GRPC_HOST, GRPC_PORT (`0.0.0.0`, 8081): `envoy.service.ratelimit.v3.RateLimitService`.
* HOST, PORT (`0.0.0.0`, 8080): `GET /healthcheck`.
* DEBUG_HOST, DEBUG_PORT (`0.0.0.0`, 6070): `GET /rlconfig` (the limits loaded), `GET /stats`.
* LIMIT_RESPONSE_HEADERS_ENABLED (false) with LIMIT_LIMIT_HEADER, LIMIT_REMAINING_HEADER,
  LIMIT_RESET_HEADER (RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset): headers to add.
* SHADOW_MODE (false): never refuse (decisions are still counted). LOG_LEVEL (`warn`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

import grpc
from aiohttp import web
from envoy.service.ratelimit.v3 import rls_pb2_grpc

from gossamer.ratelimit.config import ConfigError, parse_files
from gossamer.ratelimit.redis import Redis
from gossamer.ratelimit.service import HeaderNames, RateLimiter, RateLimitServicer

log = logging.getLogger("ratelimit")
RELOAD_PERIOD_S = 1.0


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def config_dir() -> Path:
    root = os.environ.get("RUNTIME_ROOT", "/srv/runtime_data/current")
    sub = os.environ.get("RUNTIME_SUBDIRECTORY", "ratelimit")
    return Path(root) / sub / "config"


def config_files(directory: Path, ignore_dotfiles: bool) -> list[Path]:
    if not directory.is_dir():
        return []
    out = []
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        if ignore_dotfiles:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in sorted(filenames):
            if ignore_dotfiles and name.startswith("."):
                continue
            if name.endswith((".yaml", ".yml")):
                out.append(Path(dirpath) / name)
    return sorted(out)


def _signature(files: list[Path]) -> tuple[tuple[str, int, int, int], ...]:
    out = []
    for f in files:
        try:
            st = f.stat()  # follows the symlinks of a ConfigMap volume: a swap is a new inode
        except OSError:
            continue
        out.append((str(f), st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


class ConfigWatcher:
    """Loads the configuration files and re-loads them when they change; a bad file keeps the last good
    configuration (the reference service's behaviour) and is logged."""

    def __init__(self, limiter: RateLimiter, directory: Path, ignore_dotfiles: bool) -> None:
        self.limiter = limiter
        self.directory = directory
        self.ignore_dotfiles = ignore_dotfiles
        self.signature: object = None
        self.loads = 0
        self.errors = 0

    def check(self) -> None:
        files = config_files(self.directory, self.ignore_dotfiles)
        sig = _signature(files)
        if sig == self.signature:
            return
        self.signature = sig
        try:
            config = parse_files((str(f), f.read_text()) for f in files)
        except (ConfigError, OSError) as e:
            self.errors += 1
            log.error("error loading new configuration: %s", e)
            return
        self.limiter.config = config
        self.loads += 1
        log.warning("loaded rate limit configuration from %s: %d domain(s)", self.directory, len(config.domains))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_PERIOD_S)
            self.check()


def _listen_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _add_grpc_port(server: grpc.aio.Server, host: str, port: int) -> None:
    try:
        bound = server.add_insecure_port(_listen_address(host, port))
    except RuntimeError:
        bound = 0
    if not bound and host == "::":  # no IPv6 in this network namespace
        server.add_insecure_port(f"0.0.0.0:{port}")


async def _http_site(runner: web.AppRunner, host: str, port: int) -> None:
    # "::" is every address, IPv4 too (the sidecar forwards to 127.0.0.1): asyncio would make it IPv6-only.
    await web.TCPSite(runner, None if host == "::" else host, port).start()


async def serve() -> None:
    level = os.environ.get("LOG_LEVEL", "warn").upper()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    log.setLevel(getattr(logging, "WARNING" if level == "WARN" else level, logging.WARNING))
    if os.environ.get("REDIS_SOCKET_TYPE", "tcp") != "tcp":
        raise SystemExit("ratelimit: only REDIS_SOCKET_TYPE=tcp is supported")
    redis = Redis.from_url(os.environ.get("REDIS_URL", "redis:6379"))
    headers = HeaderNames(
        enabled=_env_bool("LIMIT_RESPONSE_HEADERS_ENABLED"),
        limit=os.environ.get("LIMIT_LIMIT_HEADER", HeaderNames.limit),
        remaining=os.environ.get("LIMIT_REMAINING_HEADER", HeaderNames.remaining),
        reset=os.environ.get("LIMIT_RESET_HEADER", HeaderNames.reset),
    )
    limiter = RateLimiter(redis, headers=headers, shadow_mode=_env_bool("SHADOW_MODE"))
    watcher = ConfigWatcher(limiter, config_dir(), _env_bool("RUNTIME_IGNOREDOTFILES"))
    watcher.check()

    server = grpc.aio.server()
    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(RateLimitServicer(limiter), server)
    _add_grpc_port(server, os.environ.get("GRPC_HOST", "0.0.0.0"), int(os.environ.get("GRPC_PORT", "8081")))
    await server.start()

    async def healthcheck(_: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def rlconfig(_: web.Request) -> web.Response:
        config = limiter.config
        return web.Response(text="".join(f"{line}\n" for line in config.dump()) if config else "no configuration\n")

    async def stats(_: web.Request) -> web.Response:
        extra = {
            "ratelimit.service.config_load_success": watcher.loads,
            "ratelimit.service.config_load_error": watcher.errors,
        }
        return web.Response(text=limiter.stats.text() + "".join(f"{k}: {v}\n" for k, v in extra.items()))

    app = web.Application()
    app.router.add_get("/healthcheck", healthcheck)
    debug = web.Application()
    debug.router.add_get("/rlconfig", rlconfig)
    debug.router.add_get("/stats", stats)
    runners = [web.AppRunner(app, access_log=None), web.AppRunner(debug, access_log=None)]
    for r in runners:
        await r.setup()
    await _http_site(runners[0], os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("PORT", "8080")))
    await _http_site(runners[1], os.environ.get("DEBUG_HOST", "0.0.0.0"), int(os.environ.get("DEBUG_PORT", "6070")))
    reload_task = asyncio.get_running_loop().create_task(watcher.run())

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    reload_task.cancel()
    await server.stop(1.0)
    for r in runners:
        await r.cleanup()
    with contextlib.suppress(Exception):
        await redis.close()


def main() -> None:
    asyncio.run(serve())


if __name__ == "__main__":
    main()
