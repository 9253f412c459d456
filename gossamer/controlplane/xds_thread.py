"""The thread that serves the proxies' ADS streams, with an event loop of its own.

Sending config is most of a large push's work on the loop that does it (gRPC copies and encrypts every
response on the thread that hands it over): on the loop that answers the API, `apply`, `status` and the
runtime's reports would wait for thousands of streams. On a thread of its own the API's loop only waits
for the GIL, which Python hands over every `sys.getswitchinterval()` seconds.

What crosses between the two loops goes through this class, never by touching the other loop's objects:
`post` (a callback run on the xDS loop: the config cache's change notifications), `call` (a coroutine run on
the xDS loop, its result awaited from the caller's loop) and `run_on` (the same, towards any loop).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


async def run_on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Run CORO on LOOP (another thread's) and await its result here; cancelling the caller cancels it."""
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


class XdsThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="xds", daemon=True)
        self._lock = threading.Lock()
        self._posted: list[Callable[[], None]] = []
        self._drain_scheduled = False

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
            # Stopped: what still runs here (streams gRPC has not ended) ends with the loop.
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()

    def stop(self) -> None:
        """Stop the loop and wait for the thread (from another thread)."""
        if self._thread.ident is None:  # never started
            self.loop.close()
        elif self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run CORO on the xDS loop; its result, awaited on the caller's loop."""
        return await run_on(self.loop, coro)

    def post(self, callback: Callable[[], None]) -> None:
        """Run CALLBACK on the xDS loop, after those posted before it (from any thread). A push posts one per
        proxy group: they are run in batches, one wake-up of the loop for all that arrived meanwhile."""
        with self._lock:
            self._posted.append(callback)
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed (stopping): nobody is left to tell
            pass

    def _drain(self) -> None:
        with self._lock:
            callbacks, self._posted = self._posted, []
            self._drain_scheduled = False
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("callback posted to the xDS thread failed")
