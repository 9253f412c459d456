#!/usr/bin/env python3
"""grpc-echo: a gRPC echo server on grpcio's generic handlers (no generated code, no .proto).

  python3 src/grpc_echo.py

One method, ``/echo.Echo/Say``, takes and returns raw bytes: the reply is
``b"<SERVICE_VERSION> " + request``. Request metadata whose key starts with ``echo-`` comes back
as initial metadata, unchanged. Listens on ``BIND_ADDRESS``:``PORT`` (default 0.0.0.0:7070;
port 0 picks a free port) and prints "listening on HOST:PORT", then one line per call.

Failures, to show retries: ``FAIL_CODE`` (a gRPC status name, e.g. UNAVAILABLE) makes a share
``FAIL_RATE`` (0..1, default 1) of the calls end with that status and no reply. The failing calls
are spread evenly, not drawn at random: with FAIL_RATE=0.5 every second call fails, so a client
that retries once always succeeds and one that does not sees exactly half of its calls fail.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from concurrent import futures
from types import FrameType

import grpc

SERVICE = "echo.Echo"
METHOD = "Say"
ECHO_PREFIX = "echo-"


def log(message: str) -> None:
    sys.stdout.write(f"[grpc-echo] {message}\n")
    sys.stdout.flush()


class Failures:
    """Decides which calls fail: call n fails when floor(n * rate) moves on (an even spread)."""

    def __init__(self, code: grpc.StatusCode | None, rate: float) -> None:
        self.code = code
        self.rate = min(max(rate, 0.0), 1.0)
        self._calls = 0
        self._lock = threading.Lock()

    def next(self) -> grpc.StatusCode | None:
        if self.code is None or self.rate <= 0:
            return None
        with self._lock:
            self._calls += 1
            n = self._calls
        return self.code if int(n * self.rate) > int((n - 1) * self.rate) else None


def status_code(name: str) -> grpc.StatusCode:
    try:
        return grpc.StatusCode[name.strip().upper()]
    except KeyError:
        raise SystemExit(
            f"FAIL_CODE: unknown gRPC status {name!r} (one of {', '.join(c.name for c in grpc.StatusCode)})"
        ) from None


class Echo:
    def __init__(self, version: str, failures: Failures) -> None:
        self.version = version.encode()
        self.failures = failures

    def say(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        code = self.failures.next()
        peer = context.peer()
        if code is not None:
            log(f"/{SERVICE}/{METHOD} {code.name} from {peer}")
            context.abort(code, f"grpc-echo {self.version.decode()}: injected {code.name}")
        echoed = tuple((k, v) for k, v in context.invocation_metadata() if k.startswith(ECHO_PREFIX))
        if echoed:
            context.send_initial_metadata(echoed)
        log(f"/{SERVICE}/{METHOD} OK from {peer} ({len(request)} bytes)")
        return self.version + b" " + request


def serve(host: str, port: int, version: str, failures: Failures) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    echo = Echo(version, failures)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(echo.say)}),)
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise SystemExit(f"cannot listen on {host}:{port}")
    server.start()
    return server, bound


def main() -> None:
    host = os.environ.get("BIND_ADDRESS") or "0.0.0.0"
    port = int(os.environ.get("PORT") or "7070")
    version = os.environ.get("SERVICE_VERSION") or "v1"
    fail_code = os.environ.get("FAIL_CODE")
    failures = Failures(status_code(fail_code) if fail_code else None, float(os.environ.get("FAIL_RATE") or "1"))
    server, bound = serve(host, port, version, failures)
    log(
        f"listening on {host}:{bound}, version: {version}"
        + (f", failing {failures.rate:.0%} of calls with {failures.code.name}" if failures.code else "")
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait()
    server.stop(grace=1).wait()
    log("stopped")


if __name__ == "__main__":
    main()
