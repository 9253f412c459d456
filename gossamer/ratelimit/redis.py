"""A small asyncio Redis client (RESP2) for the rate limit service's counters.

One connection, pipelined: every caller writes its commands at once and waits for its replies, which
Redis sends in order, so any number of requests share one connection without waiting for each other
(one round trip per request, whatever the number of descriptors). A broken connection fails every
caller waiting on it and is re-opened by the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

Reply = int | bytes | None | list["Reply"]


class RedisError(Exception):
    """Redis could not be reached, or answered with an error."""


def encode(*args: bytes | str | int) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    line = await reader.readuntil(b"\r\n")
    kind, rest = line[:1], line[1:-2]
    if kind == b":":
        return int(rest)
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RedisError(rest.decode(errors="replace"))
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = await reader.readexactly(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        if n < 0:
            return None
        return [await read_reply(reader) for _ in range(n)]
    raise ValueError(f"not a RESP reply: {line!r}")  # the stream is out of step: drop the connection


@dataclass
class _Pending:
    count: int
    future: asyncio.Future[list[Reply]]
    replies: list[Reply | RedisError] = field(default_factory=list)


class Redis:
    def __init__(self, host: str, port: int, *, timeout: float = 2.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: deque[_Pending] = deque()
        self._connecting: asyncio.Lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str) -> Redis:
        """REDIS_URL as the reference service takes it: `host:port` (`redis://` accepted)."""
        url = url.removeprefix("redis://").rstrip("/")
        host, _, port = url.rpartition(":")
        if not host:
            host, port = url, "6379"
        return cls(host.strip("[]"), int(port))

    async def _connect(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)
            except (OSError, TimeoutError) as e:
                raise RedisError(f"cannot connect to redis at {self.host}:{self.port}: {e}") from e
            self._writer = writer
            self._waiting = deque()  # this connection's callers, oldest first
            self._reader_task = asyncio.get_running_loop().create_task(self._read_loop(reader, writer, self._waiting))
            return writer

    async def _read_loop(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, waiting: deque[_Pending]
    ) -> None:
        """Hand each reply to the oldest caller still waiting (callers queue before they write)."""
        error: BaseException | None = None
        try:
            while True:
                reply: Reply | RedisError
                try:
                    reply = await read_reply(reader)
                except RedisError as e:  # an error reply: the connection stays usable
                    reply = e
                if not waiting:
                    raise RedisError("a reply nobody asked for")
                pending = waiting[0]
                pending.replies.append(reply)
                if len(pending.replies) == pending.count:
                    waiting.popleft()
                    if not pending.future.done():
                        failed = [r for r in pending.replies if isinstance(r, RedisError)]
                        if failed:
                            pending.future.set_exception(failed[0])
                        else:
                            pending.future.set_result([r for r in pending.replies if not isinstance(r, RedisError)])
        except (OSError, asyncio.IncompleteReadError, RedisError, ValueError) as e:
            error = e
        except asyncio.CancelledError:
            error = RedisError("connection closed")
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
            while waiting:
                fut = waiting.popleft().future
                if not fut.done():
                    fut.set_exception(RedisError(f"redis connection lost: {error}"))

    async def pipeline(self, commands: Sequence[Sequence[bytes | str | int]]) -> list[Reply]:
        """Send COMMANDS at once; their replies, in order (RedisError if any failed)."""
        writer = await self._connect()
        fut: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Pending(len(commands), fut))
        writer.write(b"".join(encode(*c) for c in commands))
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.timeout)
        except TimeoutError as e:
            raise RedisError("redis did not answer in time") from e

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader_task
        self._reader_task = None
