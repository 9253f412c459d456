"""Streams take turns on the event loop (xds/streams.Turns): a wake-up of thousands of streams must not
hold the loop for all of them in one iteration."""

from __future__ import annotations

import asyncio

from gossamer.xds.streams import Turns


async def test_many_streams_are_spread_over_iterations_in_order_and_the_loop_serves_others_between() -> None:
    turns = Turns(budget=1e-9)  # nothing fits: one turn per loop iteration, once it has measured one
    ran: list[int] = []
    others_ran_after: list[int] = []

    async def stream(i: int) -> None:
        await turns.take()
        ran.append(i)

    tasks = [asyncio.create_task(stream(i)) for i in range(50)]
    await asyncio.sleep(0)  # every stream asked for its turn
    # Something else the loop has to do meanwhile (an API request): it runs before the streams are all done.
    asyncio.get_running_loop().call_soon(lambda: others_ran_after.append(len(ran)))
    await asyncio.gather(*tasks)
    assert ran == list(range(50))
    assert others_ran_after and others_ran_after[0] < 50


async def test_a_cancelled_stream_gives_its_turn_to_the_next() -> None:
    turns = Turns()
    ran: list[int] = []

    async def stream(i: int) -> None:
        await turns.take()
        ran.append(i)

    tasks = [asyncio.create_task(stream(i)) for i in range(3)]
    await asyncio.sleep(0)
    tasks[1].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert ran == [0, 2]
    assert turns.turns == 3


async def test_cheap_turns_go_through_many_per_iteration() -> None:
    turns = Turns(budget=10.0)  # everything fits
    iteration = [0]
    stop = asyncio.Event()

    def tick() -> None:  # counts loop iterations
        iteration[0] += 1
        if not stop.is_set():
            asyncio.get_running_loop().call_soon(tick)

    asyncio.get_running_loop().call_soon(tick)
    seen: list[int] = []

    async def stream() -> None:
        await turns.take()
        seen.append(iteration[0])

    for _ in range(3):  # the first rounds measure how long a turn takes
        await asyncio.gather(*(stream() for _ in range(Turns.MAX_PER_ITERATION)))
    seen.clear()
    await asyncio.gather(*(stream() for _ in range(100)))
    stop.set()
    assert len(set(seen)) == 1  # all in one iteration
