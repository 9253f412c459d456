#!/usr/bin/env python3
"""Calls /echo.Echo/Say COUNT times over one gRPC channel and prints one line per call: the reply
(e.g. "v2 hello"), or the name of the status code the call ended with (e.g. "UNAVAILABLE").

  gossamer exec deploy/curl -- python3 /abs/path/samples/grpc-echo/src/client.py grpc-echo:7070 --count 10

``--metadata echo-k=v`` sends request metadata; keys the server echoes back (those starting with
``echo-``) are appended to the reply as " k=v". Exits 1 when any call failed.
"""

from __future__ import annotations

import argparse
import os
import sys

# The resolver of the C library reads /etc/hosts, which is where a pod's service names are.
os.environ.setdefault("GRPC_DNS_RESOLVER", "native")

import grpc  # noqa: E402 - after the resolver choice

METHOD = "/echo.Echo/Say"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("target", help="host:port, e.g. grpc-echo:7070")
    p.add_argument("--count", "-n", type=int, default=1)
    p.add_argument("--message", "-m", default="hello")
    p.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per call")
    args = p.parse_args(argv)
    for item in args.metadata:
        if "=" not in item:
            p.error(f"--metadata {item!r}: expected KEY=VALUE")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    metadata = tuple((k.strip().lower(), v) for k, v in (item.split("=", 1) for item in args.metadata))
    failed = 0
    # One channel (one HTTP/2 connection) for every call; never through an HTTP proxy from the env.
    with grpc.insecure_channel(args.target, options=[("grpc.enable_http_proxy", 0)]) as channel:
        say = channel.unary_unary(METHOD)  # no serializers: bytes in, bytes out
        for _ in range(args.count):
            try:
                reply, call = say.with_call(args.message.encode(), metadata=metadata or None, timeout=args.timeout)
            except grpc.RpcError as e:
                failed += 1
                code = e.code() if isinstance(e, grpc.Call) else None
                print(code.name if code is not None else "ERROR", flush=True)
                continue
            echoed = [f"{k}={v}" for k, v in call.initial_metadata() or () if k.startswith("echo-")]
            print(" ".join([reply.decode(errors="replace"), *echoed]), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
