"""Shared plumbing for the bookinfo sample services (standard library only).

Every service is a ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive, always sends
``Content-Length`` and forwards the tracing / context headers of the inbound request on every
outbound call, like Istio's bookinfo applications do.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

# Headers every bookinfo service copies from the inbound request to its outbound requests.
PROPAGATED_HEADERS: tuple[str, ...] = (
    # All applications should propagate x-request-id (access logs, trace sampling).
    "x-request-id",
    # Zipkin / B3.
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    # Lightstep.
    "x-ot-span-context",
    # W3C trace context.
    "traceparent",
    "tracestate",
    # Google Cloud trace context / gRPC binary context.
    "x-cloud-trace-context",
    "grpc-trace-bin",
    # SkyWalking.
    "sw8",
    # Application-specific and session headers.
    "end-user",
    "user-agent",
    "cookie",
    "authorization",
    "jwt",
)
PROPAGATED_PREFIXES: tuple[str, ...] = ("x-datadog-",)

JsonObj = dict[str, Any]


def env_str(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def service_host(env_name: str, default: str) -> str:
    """Hostname of a peer service, honouring ``<NAME>_HOSTNAME`` and ``SERVICES_DOMAIN``."""
    host = env_str(env_name, default)
    domain = os.environ.get("SERVICES_DOMAIN", "")
    return f"{host}.{domain}" if domain else host


def service_port(env_name: str, default: int = 9080) -> int:
    try:
        return int(env_str(env_name, str(default)))
    except ValueError:
        return default


def forward_headers(incoming: Message, *, include_end_user: bool = True) -> dict[str, str]:
    """The subset of ``incoming`` that must travel with outbound requests."""
    out: dict[str, str] = {}
    for name in PROPAGATED_HEADERS:
        if name == "end-user" and not include_end_user:
            continue
        value = incoming.get(name)
        if value is not None:
            out[name] = value
    for name, value in incoming.items():
        lname = name.lower()
        if lname.startswith(PROPAGATED_PREFIXES) and lname not in out:
            out[lname] = value
    return out


def http_get(host: str, port: int, path: str, headers: Mapping[str, str], timeout: float) -> tuple[int, bytes]:
    """One GET request; raises ``OSError``/``http.client.HTTPException`` on transport failure."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=dict(headers))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def http_get_json(host: str, port: int, path: str, headers: Mapping[str, str], timeout: float) -> tuple[int, Any]:
    """GET and decode JSON. Returns ``(status, body)``; status 0 means transport failure."""
    try:
        status, raw = http_get(host, port, path, headers, timeout)
    except (OSError, http.client.HTTPException):
        return 0, None
    try:
        body = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError):
        body = None
    return status, body


class BookinfoHandler(BaseHTTPRequestHandler):
    """Base handler: HTTP/1.1, explicit Content-Length, one access log line per request."""

    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: without this, Nagle + delayed ACK add 40 ms per request.
    disable_nagle_algorithm = True
    service_name = "bookinfo"

    # Subclasses override these.
    def handle_get(self, path: str, query: str) -> None:
        self.send_json(404, {"error": "not found"})

    def handle_post(self, path: str, query: str, body: bytes) -> None:
        self.send_json(405, {"error": "method not allowed"})

    # --- plumbing -----------------------------------------------------------------------
    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self._dispatch(lambda: self.handle_get(parts.path, parts.query))

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        body = self.read_body()
        self._dispatch(lambda: self.handle_post(parts.path, parts.query, body))

    def _dispatch(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:
            sys.stderr.write(f"[{self.service_name}] error handling {self.path}: {exc!r}\n")
            try:
                self.send_json(500, {"error": "internal error"})
            except OSError:
                self.close_connection = True

    def read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                return self._read_chunked()
            return b""
        try:
            n = int(length)
        except ValueError:
            self.close_connection = True
            return b""
        return self.rfile.read(n) if n > 0 else b""

    def _read_chunked(self) -> bytes:
        data = bytearray()
        while True:
            line = self.rfile.readline(65537)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(data)
            data += self.rfile.read(size)
            self.rfile.readline(65537)

    def send_body(
        self,
        status: int,
        body: bytes,
        content_type: str,
        extra_headers: Mapping[str, str] | None = None,
        cookies: list[str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        for cookie in cookies or []:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, obj: Any, extra_headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(obj).encode("utf-8")
        self.send_body(status, body, "application/json", extra_headers)

    def send_html(self, status: int, html: str, cookies: list[str] | None = None) -> None:
        self.send_body(status, html.encode("utf-8"), "text/html; charset=utf-8", cookies=cookies)

    def send_redirect(self, location: str, cookies: list[str] | None = None) -> None:
        body = f'<a href="{location}">Redirecting</a>\n'.encode()
        self.send_body(302, body, "text/html; charset=utf-8", {"Location": location}, cookies)

    # --- logging ------------------------------------------------------------------------
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        rid = self.headers.get("x-request-id", "-") if self.headers is not None else "-"
        sys.stderr.write(
            f"[{self.service_name}] {self.client_address[0]} {self.command} {self.path} {code} x-request-id={rid}\n"
        )

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"[{self.service_name}] {format % args}\n")


def serve(handler: type[BookinfoHandler]) -> None:
    """Run ``handler`` on ``BIND_ADDRESS``:``PORT`` (default 0.0.0.0:9080) until SIGTERM/SIGINT."""
    host = env_str("BIND_ADDRESS", "0.0.0.0")
    port = service_port("PORT", 9080)

    server_cls: type[ThreadingHTTPServer] = ThreadingHTTPServer
    if ":" in host:

        class _V6Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6

        server_cls = _V6Server

    server = server_cls((host, port), handler)
    server.daemon_threads = True

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    bound_host, bound_port = server.server_address[:2]
    sys.stderr.write(f"[{handler.service_name}] listening on {bound_host!s}:{bound_port}\n")
    sys.stderr.flush()
    started = time.monotonic()
    try:
        server.serve_forever(poll_interval=0.5)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
        uptime = time.monotonic() - started
        sys.stderr.write(f"[{handler.service_name}] stopped after {uptime:.1f}s\n")
        sys.stderr.flush()
