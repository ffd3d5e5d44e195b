"""RunSlots (worker/claims.py): at most `size` holders, first come first served,
and a waiter cancelled before or after it is handed a slot never loses one."""

from __future__ import annotations

import asyncio

from taskservice.worker.claims import RunSlots


async def test_at_most_size_hold_a_slot_and_waiters_go_in_order() -> None:
    slots = RunSlots(2)
    order: list[int] = []
    holding = 0
    most = 0

    async def hold(n: int) -> None:
        nonlocal holding, most
        async with slots:
            order.append(n)
            holding += 1
            most = max(most, holding)
            await asyncio.sleep(0.01)
            holding -= 1

    await asyncio.gather(*(hold(n) for n in range(8)))
    assert most == 2
    assert order == list(range(8))


async def test_a_waiter_cancelled_while_waiting_takes_no_slot() -> None:
    slots = RunSlots(1)
    await slots.acquire()
    waiting = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    slots.release()
    # The one slot is free again: taken at once, and only once.
    await asyncio.wait_for(slots.acquire(), timeout=1)
    third = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0.01)
    assert not third.done()
    third.cancel()


async def test_a_waiter_cancelled_after_it_was_handed_a_slot_passes_it_on() -> None:
    slots = RunSlots(1)
    await slots.acquire()
    first = asyncio.create_task(slots.acquire())
    second = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # handed to `first`, which is cancelled before it resumes
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, timeout=1)
