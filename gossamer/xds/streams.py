"""Plumbing shared by the gRPC discovery servers (ADS here, SDS in the agent).

Each stream is served by one coroutine reading a single queue that carries the
client's requests, a `CHANGED` wake-up when the served config changes, and an
`End` when the client's side closes — so per-stream state needs no locks. Streams
take `Turns` on the event loop, so that waking thousands of them at once does not hold it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any


class Changed:
    """Queue marker: what the stream serves has changed."""


class End:
    """Queue marker: the client's request stream ended (with the error, if any)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


CHANGED = Changed()


async def read_requests(
    request_iterator: AsyncIterator[Any], queue: asyncio.Queue[Any], inline: Callable[[Any], bool] | None = None
) -> None:
    """Forward every request to the stream's queue, then an End. INLINE: handles a request here, in the reader,
    when it can (returns True): one task step less than the stream's loop taking it from the queue."""
    try:
        async for req in request_iterator:
            if inline is None or not inline(req):
                queue.put_nowait(req)
    except BaseException as e:  # noqa: BLE001 - forwarded to the stream loop
        queue.put_nowait(End(e))
        if isinstance(e, asyncio.CancelledError):
            raise
    else:
        queue.put_nowait(End())


class Turns:
    """Streams take turns on the event loop, a bounded amount of work per loop iteration.

    A cache change wakes every stream of the groups it touches at once (thousands after a change that
    reaches the whole mesh), and asyncio runs every task that became ready in one loop iteration: the
    API and new connections would wait until all of them had built and handed over their responses. A
    stream awaits `take()` before it works on a request, and is woken for a change in its turn (`later`).
    While streams wait, a callback once
    per loop iteration lets the next ones through, in the order they asked, after what the loop polled
    meanwhile (a request to the API, an ACK). How many: as many as kept the last iterations within
    `budget` seconds - measured from one release to the next, so a turn's whole cost counts (its
    response's copy into gRPC and the encryption run in gRPC's own code, on this thread) and so does
    other work on the loop (a push's slices): the loop is back within about a budget, or one turn.
    """

    MAX_PER_ITERATION = 256

    def __init__(self, budget: float = 0.01) -> None:
        self._budget = budget
        self._waiters: deque[asyncio.Future[None] | Callable[[], None]] = deque()
        self._scheduled = False
        self._per_iteration = 8.0  # turns let through per loop iteration (adapted)
        self._released = 0  # turns let through by the last release
        self._released_at = 0.0
        self.turns = 0  # turns taken (observability, tests)

    async def take(self) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._wait(loop, waiter)
        await waiter  # a stream cancelled meanwhile leaves a cancelled waiter: _release skips it

    def later(self, callback: Callable[[], None]) -> None:
        """Run CALLBACK in its turn: a stream's wake-up for a cache change, which then does its work at once, in
        the turn the wake-up had (a stream woken only to wait for a turn would take two task steps more)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # (no loop: nothing else to take turns with)
            callback()
            return
        self._wait(loop, callback)

    def _wait(self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None] | Callable[[], None]) -> None:
        self.turns += 1
        self._waiters.append(waiter)
        if not self._scheduled:
            self._scheduled = True
            self._released = 0  # (an idle loop in between: nothing to learn from this interval)
            loop.call_soon(self._release)

    def _release(self) -> None:
        now = time.perf_counter()
        if self._released:
            # The iteration that ran the last turns took `now - _released_at`: aim the next at the budget.
            took = max(now - self._released_at, 1e-6)
            aim = self._released * self._budget / took
            self._per_iteration = min(self.MAX_PER_ITERATION, max(1.0, (self._per_iteration + aim) / 2))
        self._scheduled = False
        room = int(self._per_iteration)
        released = 0
        while self._waiters and released < room:
            waiter = self._waiters.popleft()
            if not isinstance(waiter, asyncio.Future):
                waiter()
                released += 1
            elif not waiter.done():  # (a cancelled stream's)
                waiter.set_result(None)
                released += 1
        self._released = released
        self._released_at = time.perf_counter()
        if self._waiters:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._release)
