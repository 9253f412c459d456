#!/usr/bin/env python3
"""helloworld (standard library only), like Istio's samples/helloworld app.

GET /hello -> "Hello version: <SERVICE_VERSION>, instance: <HOSTNAME>\\n"; GET /health -> 200.
Listens on ``BIND_ADDRESS``:``PORT`` (default 0.0.0.0:5000); one log line per request to stdout.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import urlsplit


def env_str(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


class HelloHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: without this, Nagle + delayed ACK add 40 ms per request.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/hello":
            for i in range(100):  # "do something cpu intensive", as the original does
                math.sqrt(i)
            version = os.environ.get("SERVICE_VERSION")
            hostname = os.environ.get("HOSTNAME") or socket.gethostname()
            self.send_text(200, f"Hello version: {version}, instance: {hostname}\n")
        elif path == "/health":
            self.send_text(200, "Helloworld is healthy")
        else:
            self.send_text(404, "Not Found\n")

    def do_HEAD(self) -> None:
        self.do_GET()

    def send_text(self, status: int, text: str) -> None:
        body = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        rid = self.headers.get("x-request-id", "-") if self.headers is not None else "-"
        code_s = getattr(code, "value", code)
        sys.stdout.write(
            f"[helloworld] {self.client_address[0]} {self.command} {self.path} {code_s} x-request-id={rid}\n"
        )
        sys.stdout.flush()

    def log_message(self, format: str, *args: Any) -> None:
        sys.stdout.write(f"[helloworld] {format % args}\n")
        sys.stdout.flush()


def serve() -> None:
    host = env_str("BIND_ADDRESS", "0.0.0.0")
    port = int(env_str("PORT", "5000"))
    server_cls: type[ThreadingHTTPServer] = ThreadingHTTPServer
    if ":" in host:

        class _V6Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6

        server_cls = _V6Server
    server = server_cls((host, port), HelloHandler)
    server.daemon_threads = True

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    bound_host, bound_port = server.server_address[:2]
    sys.stdout.write(f"[helloworld] listening on {bound_host!s}:{bound_port}\n")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.5)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    serve()
