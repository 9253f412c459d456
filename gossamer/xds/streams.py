"""Plumbing shared by the gRPC discovery servers (ADS here, SDS in the agent).

Each stream is served by one coroutine reading a single queue that carries the
client's requests, a `CHANGED` wake-up when the served config changes, and an
`End` when the client's side closes — so per-stream state needs no locks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any


class Changed:
    """Queue marker: what the stream serves has changed."""


class End:
    """Queue marker: the client's request stream ended (with the error, if any)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


CHANGED = Changed()


async def read_requests(request_iterator: AsyncIterator[Any], queue: asyncio.Queue[Any]) -> None:
    """Forward every request to the stream's queue, then an End."""
    try:
        async for req in request_iterator:
            queue.put_nowait(req)
    except BaseException as e:  # noqa: BLE001 - forwarded to the stream loop
        queue.put_nowait(End(e))
        if isinstance(e, asyncio.CancelledError):
            raise
    else:
        queue.put_nowait(End())
