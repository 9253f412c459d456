#!/usr/bin/env python3
"""A small httpbin (standard library only): httpbin.org's paths and JSON shapes.

Listens on ``BIND_ADDRESS``:``PORT`` (default 0.0.0.0:8080). Logs one line per request to stdout
with the method, path, status, Host and x-request-id (mirroring tests read it). When
``SERVICE_VERSION`` is set, every response carries ``x-httpbin-version`` and the request-echo
JSON bodies (/get, /anything, /delay, ...) carry ``"version"``.
Deliberately sends no CORS headers: the mesh's corsPolicy is what a test should observe.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

JsonObj = dict[str, Any]
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
MAX_DELAY = 10.0
MAX_BYTES = 100 * 1024
MAX_STREAM = 100
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

INDEX_HTML = """<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>httpbin</title></head>
<body>
<h1>httpbin</h1>
<p>A simple HTTP request &amp; response service (Gossamer sample, standard-library Python).</p>
<ul>
<li><a href="/get">/get</a> the request's query args, headers, origin and URL</li>
<li><a href="/anything">/anything</a> everything about the request, any method</li>
<li><a href="/headers">/headers</a> the request headers</li>
<li><a href="/ip">/ip</a> the origin IP</li>
<li><a href="/user-agent">/user-agent</a> the User-Agent</li>
<li><a href="/uuid">/uuid</a> a UUID4</li>
<li><a href="/status/418">/status/:codes</a> the given status code (or one of "200,503", "200:0.9,503:0.1")</li>
<li><a href="/delay/1">/delay/:seconds</a> respond after a delay (max 10 s)</li>
<li><a href="/response-headers?freeform=value">/response-headers?k=v</a> the given response headers</li>
<li><a href="/bytes/16">/bytes/:n</a> n random bytes</li>
<li><a href="/stream/3">/stream/:n</a> n JSON lines, chunked</li>
<li><a href="/cookies">/cookies</a>, /cookies/set?k=v, /cookies/delete?k</li>
<li><a href="/redirect/2">/redirect/:n</a>, /redirect-to?url=</li>
<li><a href="/basic-auth/user/passwd">/basic-auth/:user/:passwd</a>, /bearer</li>
<li><a href="/json">/json</a>, <a href="/html">/html</a>, <a href="/robots.txt">/robots.txt</a></li>
</ul>
</body>
</html>
"""

TEAPOT = """
    -=[ teapot ]=-

       _...._
     .'  _ _ `.
    | ."` ^ `". _,
    \\_;`"---"`|//
      |       ;/
      \\_     _/
        `\"\"\"`
"""

SLIDESHOW: JsonObj = {
    "slideshow": {
        "author": "Yours Truly",
        "date": "date of publication",
        "slides": [
            {"title": "Wake up to WonderWidgets!", "type": "all"},
            {
                "items": ["Why <em>WonderWidgets</em> are great", "Who <em>buys</em> WonderWidgets"],
                "title": "Overview",
                "type": "all",
            },
        ],
        "title": "Sample Slide Show",
    }
}


def env_str(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def title_case(name: str) -> str:
    """``x-request-id`` -> ``X-Request-Id`` (httpbin's header-name style)."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def multi_dict(pairs: list[tuple[str, str]]) -> JsonObj:
    """httpbin's args/form shape: a single value is a string, repeated keys become a list."""
    out: JsonObj = {}
    for key, value in pairs:
        if key in out:
            prev = out[key]
            out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[key] = value
    return out


def parse_status_codes(spec: str) -> list[tuple[int, float]] | None:
    """``"503"``, ``"200,503"`` or ``"200:0.8,503:0.2"`` -> [(code, weight)]; None if invalid."""
    choices: list[tuple[int, float]] = []
    for item in spec.split(","):
        code_s, _, weight_s = item.strip().partition(":")
        try:
            code = int(code_s)
            weight = float(weight_s) if weight_s else 1.0
        except ValueError:
            return None
        if not 200 <= code <= 599 or weight < 0:
            return None
        choices.append((code, weight))
    if not choices or sum(w for _, w in choices) <= 0:
        return None
    return choices


def choose_status(choices: list[tuple[int, float]]) -> int:
    if len(choices) == 1:
        return choices[0][0]
    codes = [c for c, _ in choices]
    weights = [w for _, w in choices]
    return random.choices(codes, weights=weights, k=1)[0]


class HttpbinHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: without this, Nagle + delayed ACK add 40 ms per request.
    disable_nagle_algorithm = True
    server_version = "gossamer-httpbin/1.0"
    version = os.environ.get("SERVICE_VERSION", "")

    body = b""
    url_path = "/"
    query = ""

    def version_string(self) -> str:
        return self.server_version

    # --- dispatch -----------------------------------------------------------------------
    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        self.url_path, self.query = parts.path or "/", parts.query
        try:
            self.body = self.read_body()
            self.route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:
            sys.stdout.write(f"[httpbin] error handling {self.command} {self.path}: {exc!r}\n")
            sys.stdout.flush()
            try:
                self.send_json(500, {"error": "internal error"})
            except OSError:
                self.close_connection = True

    def route(self) -> None:
        path, method = self.url_path, self.command
        if method == "OPTIONS" and not path.startswith(("/anything", "/status/")):
            self.send_bytes(200, b"", "text/html; charset=utf-8", {"Allow": ", ".join(ALL_METHODS)})
            return
        for pattern, methods, handler in ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if method not in methods:
                self.send_bytes(405, b"", "text/html; charset=utf-8", {"Allow": ", ".join(methods)})
                return
            handler(self, *match.groups())
            return
        self.send_json(404, {"error": "not found", "path": path})

    # --- request facts -------------------------------------------------------------------
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

    def header_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.headers.items():
            key = title_case(name)
            out[key] = f"{out[key]},{value}" if key in out else value
        return out

    def origin(self) -> str:
        xff = self.headers.get("X-Forwarded-For")
        return xff if xff else str(self.client_address[0])

    def full_url(self) -> str:
        scheme = self.headers.get("X-Forwarded-Proto", "http").split(",")[0].strip() or "http"
        host = self.headers.get("Host", "")
        if not host:
            local = self.connection.getsockname()
            host = f"{local[0]!s}:{local[1]}"
        return f"{scheme}://{host}{self.path}"

    def args(self) -> JsonObj:
        return multi_dict(parse_qsl(self.query, keep_blank_values=True))

    def with_version(self, obj: JsonObj) -> JsonObj:
        if self.version:
            obj["version"] = self.version
        return obj

    def basic(self) -> JsonObj:
        return {"args": self.args(), "headers": self.header_dict(), "origin": self.origin(), "url": self.full_url()}

    def body_facts(self) -> JsonObj:
        """data / files / form / json, httpbin style."""
        ctype = self.headers.get("Content-Type", "")
        mime = ctype.split(";", 1)[0].strip().lower()
        form: list[tuple[str, str]] = []
        files: list[tuple[str, str]] = []
        data = ""
        if mime == "application/x-www-form-urlencoded":
            form = parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        elif mime == "multipart/form-data":
            form, files = self._multipart(ctype)
        elif self.body:
            try:
                data = self.body.decode("utf-8")
            except UnicodeDecodeError:
                data = "data:application/octet-stream;base64," + base64.b64encode(self.body).decode()
        try:
            parsed = json.loads(self.body) if self.body and mime not in FORM_TYPES else None
        except ValueError:
            parsed = None
        return {"data": data, "files": multi_dict(files), "form": multi_dict(form), "json": parsed}

    def _multipart(self, ctype: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + self.body)
        form: list[tuple[str, str]] = []
        files: list[tuple[str, str]] = []
        if not msg.is_multipart():
            return form, files
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            payload = part.get_payload(decode=True)
            raw = payload if isinstance(payload, bytes) else b""
            text = raw.decode("utf-8", "replace")
            if part.get_filename() is not None:
                files.append((name, text))
            else:
                form.append((name, text))
        return form, files

    def cookies(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for header in self.headers.get_all("Cookie") or []:
            for item in header.split(";"):
                key, sep, value = item.strip().partition("=")
                if sep and key:
                    out[key] = value
        return out

    # --- responses -----------------------------------------------------------------------
    def send_bytes(
        self,
        status: int,
        body: bytes,
        content_type: str | None,
        extra: Mapping[str, str] | list[tuple[str, str]] | None = None,
    ) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        items = extra.items() if isinstance(extra, Mapping) else (extra or [])
        for name, value in items:
            self.send_header(name, value)
        if self.version:
            self.send_header("x-httpbin-version", self.version)
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)

    def send_json(self, status: int, obj: Any, extra: Mapping[str, str] | None = None) -> None:
        body = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")
        self.send_bytes(status, body, "application/json", extra)

    def send_text(self, status: int, text: str, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_bytes(status, text.encode("utf-8"), ctype)

    # --- endpoints -----------------------------------------------------------------------
    def ep_index(self) -> None:
        self.send_text(200, INDEX_HTML, "text/html; charset=utf-8")

    def ep_get(self) -> None:
        self.send_json(200, self.with_version(self.basic()))

    def ep_anything(self, _rest: str | None = None) -> None:
        obj = self.basic()
        obj.update(self.body_facts())
        obj["method"] = self.command
        self.send_json(200, self.with_version(obj))

    def ep_method(self) -> None:
        """/post, /put, /patch, /delete: like /anything without "method"."""
        obj = self.basic()
        obj.update(self.body_facts())
        self.send_json(200, self.with_version(obj))

    def ep_headers(self) -> None:
        self.send_json(200, {"headers": self.header_dict()})

    def ep_ip(self) -> None:
        self.send_json(200, {"origin": self.origin()})

    def ep_user_agent(self) -> None:
        self.send_json(200, {"user-agent": self.headers.get("User-Agent")})

    def ep_uuid(self) -> None:
        self.send_json(200, {"uuid": str(uuid.uuid4())})

    def ep_status(self, spec: str) -> None:
        choices = parse_status_codes(spec)
        if choices is None:
            self.send_text(400, "Invalid status code\n")
            return
        code = choose_status(choices)
        if code in (301, 302, 303, 305, 307):
            self.send_bytes(code, b"", "text/html; charset=utf-8", {"Location": "/redirect/1"})
        elif code == 401:
            self.send_bytes(code, b"", "text/html; charset=utf-8", {"WWW-Authenticate": 'Basic realm="Fake Realm"'})
        elif code == 407:
            self.send_bytes(code, b"", "text/html; charset=utf-8", {"Proxy-Authenticate": 'Basic realm="Fake Realm"'})
        elif code == 418:
            self.send_bytes(
                code,
                TEAPOT.encode(),
                "text/plain; charset=utf-8",
                {"x-more-info": "http://tools.ietf.org/html/rfc2324"},
            )
        elif code in (204, 304):
            self.send_bytes(code, b"", None)
        else:
            self.send_bytes(code, b"", "text/html; charset=utf-8")

    def ep_delay(self, seconds: str) -> None:
        try:
            delay = min(max(float(seconds), 0.0), MAX_DELAY)
        except ValueError:
            self.send_text(400, "Invalid delay\n")
            return
        time.sleep(delay)
        obj = self.basic()
        obj.update(self.body_facts())
        self.send_json(200, self.with_version(obj))

    def ep_response_headers(self) -> None:
        pairs = parse_qsl(self.query, keep_blank_values=True)
        ctype = next((v for k, v in pairs if k.lower() == "content-type"), "application/json")
        pairs = [(k, v) for k, v in pairs if k.lower() not in ("content-type", "content-length")]
        # The echoed JSON includes Content-Length, which depends on the JSON: iterate to a fixed point.
        length = 0
        for _ in range(5):
            obj = multi_dict([("Content-Type", ctype), *pairs])
            obj["Content-Length"] = str(length)
            body = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
            if len(body) == length:
                break
            length = len(body)
        self.send_bytes(200, body, ctype, pairs)

    def ep_bytes(self, n: str) -> None:
        count = min(int(n), MAX_BYTES)
        seed = self.args().get("seed")
        rng = random.Random(int(seed)) if isinstance(seed, str) and seed.isdigit() else random.Random()
        self.send_bytes(200, bytes(rng.getrandbits(8) for _ in range(count)), "application/octet-stream")

    def ep_stream(self, n: str) -> None:
        count = min(int(n), MAX_STREAM)
        base = self.basic()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        if self.version:
            self.send_header("x-httpbin-version", self.version)
        self.end_headers()
        if self.command == "HEAD":
            return
        for i in range(count):
            line = (json.dumps({"id": i, **base}) + "\n").encode()
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def ep_cookies(self) -> None:
        self.send_json(200, {"cookies": self.cookies()})

    def ep_cookies_set(self) -> None:
        headers = [("Location", "/cookies")]
        headers += [("Set-Cookie", f"{k}={v}; Path=/") for k, v in parse_qsl(self.query, keep_blank_values=True)]
        self.send_bytes(302, b"", "text/html; charset=utf-8", headers)

    def ep_cookies_delete(self) -> None:
        headers = [("Location", "/cookies")]
        headers += [
            ("Set-Cookie", f"{k}=; Expires=Thu, 01-Jan-1970 00:00:00 GMT; Max-Age=0; Path=/")
            for k, _ in parse_qsl(self.query, keep_blank_values=True)
        ]
        self.send_bytes(302, b"", "text/html; charset=utf-8", headers)

    def ep_redirect(self, n: str) -> None:
        count = int(n)
        location = "/get" if count <= 1 else f"/redirect/{count - 1}"
        self.send_bytes(302, b"", "text/html; charset=utf-8", {"Location": location})

    def ep_redirect_to(self) -> None:
        args = self.args()
        url = args.get("url")
        if not isinstance(url, str):
            self.send_text(400, "missing url\n")
            return
        code_s = args.get("status_code", "302")
        code = int(code_s) if isinstance(code_s, str) and code_s.isdigit() else 302
        if not 300 <= code < 400:
            code = 302
        self.send_bytes(code, b"", "text/html; charset=utf-8", {"Location": quote(url, safe=":/?&=%#@+,;")})

    def ep_basic_auth(self, user: str, passwd: str) -> None:
        auth = self.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{user}:{passwd}".encode()).decode()
        if auth != expected:
            self.send_bytes(401, b"", "text/html; charset=utf-8", {"WWW-Authenticate": 'Basic realm="Fake Realm"'})
            return
        self.send_json(200, {"authenticated": True, "user": user})

    def ep_bearer(self) -> None:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            self.send_bytes(401, b"", "text/html; charset=utf-8", {"WWW-Authenticate": "Bearer"})
            return
        self.send_json(200, {"authenticated": True, "token": token})

    def ep_json(self) -> None:
        self.send_json(200, SLIDESHOW)

    def ep_html(self) -> None:
        self.send_text(
            200,
            "<!DOCTYPE html>\n<html><body><h1>Herman Melville - Moby-Dick</h1></body></html>\n",
            "text/html; charset=utf-8",
        )

    def ep_robots(self) -> None:
        self.send_text(200, "User-agent: *\nDisallow: /deny\n")

    def ep_deny(self) -> None:
        self.send_text(200, "YOU SHOULDN'T BE HERE\n")

    # --- logging -------------------------------------------------------------------------
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        headers = self.headers
        rid = headers.get("x-request-id", "-") if headers is not None else "-"
        host = headers.get("Host", "-") if headers is not None else "-"
        code_s = getattr(code, "value", code)
        tag = f"httpbin {self.version}" if self.version else "httpbin"
        sys.stdout.write(
            f"[{tag}] {self.client_address[0]} {self.command} {self.path} {code_s} host={host} x-request-id={rid}\n"
        )
        sys.stdout.flush()

    def log_message(self, format: str, *args: Any) -> None:
        sys.stdout.write(f"[httpbin] {format % args}\n")
        sys.stdout.flush()


Handler = Callable[..., None]
_READ = ("GET", "HEAD")
ROUTES: list[tuple[re.Pattern[str], tuple[str, ...], Handler]] = [
    (re.compile(r"/"), _READ, HttpbinHandler.ep_index),
    (re.compile(r"/get"), _READ, HttpbinHandler.ep_get),
    (re.compile(r"/anything(/.*)?"), ALL_METHODS, HttpbinHandler.ep_anything),
    (re.compile(r"/post"), ("POST",), HttpbinHandler.ep_method),
    (re.compile(r"/put"), ("PUT",), HttpbinHandler.ep_method),
    (re.compile(r"/patch"), ("PATCH",), HttpbinHandler.ep_method),
    (re.compile(r"/delete"), ("DELETE",), HttpbinHandler.ep_method),
    (re.compile(r"/headers"), _READ, HttpbinHandler.ep_headers),
    (re.compile(r"/ip"), _READ, HttpbinHandler.ep_ip),
    (re.compile(r"/user-agent"), _READ, HttpbinHandler.ep_user_agent),
    (re.compile(r"/uuid"), _READ, HttpbinHandler.ep_uuid),
    (re.compile(r"/status/([^/]+)"), ALL_METHODS, HttpbinHandler.ep_status),
    (re.compile(r"/delay/([^/]+)"), ALL_METHODS, HttpbinHandler.ep_delay),
    (re.compile(r"/response-headers"), ("GET", "HEAD", "POST"), HttpbinHandler.ep_response_headers),
    (re.compile(r"/bytes/(\d+)"), _READ, HttpbinHandler.ep_bytes),
    (re.compile(r"/stream/(\d+)"), _READ, HttpbinHandler.ep_stream),
    (re.compile(r"/cookies"), _READ, HttpbinHandler.ep_cookies),
    (re.compile(r"/cookies/set"), _READ, HttpbinHandler.ep_cookies_set),
    (re.compile(r"/cookies/delete"), _READ, HttpbinHandler.ep_cookies_delete),
    (re.compile(r"/redirect/(\d+)"), _READ, HttpbinHandler.ep_redirect),
    (re.compile(r"/redirect-to"), ALL_METHODS, HttpbinHandler.ep_redirect_to),
    (re.compile(r"/basic-auth/([^/]+)/([^/]+)"), _READ, HttpbinHandler.ep_basic_auth),
    (re.compile(r"/bearer"), _READ, HttpbinHandler.ep_bearer),
    (re.compile(r"/json"), _READ, HttpbinHandler.ep_json),
    (re.compile(r"/html"), _READ, HttpbinHandler.ep_html),
    (re.compile(r"/robots.txt"), _READ, HttpbinHandler.ep_robots),
    (re.compile(r"/deny"), _READ, HttpbinHandler.ep_deny),
]


def serve() -> None:
    """Run on ``BIND_ADDRESS``:``PORT`` (default 0.0.0.0:8080) until SIGTERM/SIGINT."""
    host = env_str("BIND_ADDRESS", "0.0.0.0")
    port = int(env_str("PORT", "8080"))

    server_cls: type[ThreadingHTTPServer] = ThreadingHTTPServer
    if ":" in host:

        class _V6Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6

        server_cls = _V6Server

    server = server_cls((host, port), HttpbinHandler)
    server.daemon_threads = True

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    bound_host, bound_port = server.server_address[:2]
    sys.stdout.write(f"[httpbin] listening on {bound_host!s}:{bound_port}\n")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.5)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
        sys.stdout.write("[httpbin] stopped\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
