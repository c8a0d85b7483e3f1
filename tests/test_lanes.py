"""Lane admission: slots handed over in order, pauses, cancellation."""

from __future__ import annotations

import asyncio
import time

from esl_assets.lanes import Lane


async def start_waiters(
    lane: Lane, count: int, order: list[int]
) -> list[asyncio.Task[None]]:
    async def wait(number: int) -> None:
        await lane.acquire()
        order.append(number)

    tasks = [asyncio.create_task(wait(number)) for number in range(count)]
    await asyncio.sleep(0)
    return tasks


async def test_slots_go_to_waiters_in_arrival_order() -> None:
    lane = Lane("audio", 2)
    await lane.acquire()
    await lane.acquire()
    order: list[int] = []
    tasks = await start_waiters(lane, 5, order)
    assert order == []

    for expected in range(5):
        await lane.release()
        await asyncio.sleep(0)
        assert order == list(range(expected + 1))
        assert lane.in_flight == 2
    await asyncio.gather(*tasks)


async def test_one_release_wakes_one_waiter() -> None:
    lane = Lane("audio", 1)
    await lane.acquire()
    order: list[int] = []
    tasks = await start_waiters(lane, 50, order)
    await lane.release()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert order == [0]
    assert lane.in_flight == 1
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert lane.in_flight == 1


async def test_cancelled_waiter_gives_its_place_on() -> None:
    lane = Lane("audio", 1)
    await lane.acquire()
    order: list[int] = []
    tasks = await start_waiters(lane, 3, order)
    tasks[0].cancel()
    await asyncio.sleep(0)
    await lane.release()
    await asyncio.sleep(0)
    assert order == [1]
    assert lane.in_flight == 1
    await lane.release()
    await asyncio.sleep(0)
    assert order == [1, 2]
    await asyncio.gather(*tasks[1:])


async def test_release_right_after_a_cancel() -> None:
    lane = Lane("audio", 1)
    await lane.acquire()
    order: list[int] = []
    tasks = await start_waiters(lane, 2, order)
    # The release runs before the cancelled task does, so it finds the
    # cancelled waiter still queued and must pass over it.
    tasks[0].cancel()
    await lane.release()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert order == [1]
    assert lane.in_flight == 1


async def test_waiter_cancelled_after_handover_returns_the_slot() -> None:
    lane = Lane("audio", 1)
    await lane.acquire()
    order: list[int] = []
    tasks = await start_waiters(lane, 2, order)
    # The release hands the slot to task 0 and the cancel lands before it runs.
    await lane.release()
    tasks[0].cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert order == [1]
    assert lane.in_flight == 1
    await asyncio.gather(tasks[1])


async def test_pause_holds_waiters_until_it_ends() -> None:
    lane = Lane("audio", 5)
    lane.pause(0.2)
    started = time.monotonic()
    await lane.acquire()
    assert time.monotonic() - started >= 0.19
    assert lane.in_flight == 1


async def test_pause_extended_while_waiting() -> None:
    lane = Lane("audio", 5)
    lane.pause(0.1)
    started = time.monotonic()
    waiter = asyncio.create_task(lane.acquire())
    await asyncio.sleep(0.05)
    lane.pause(0.25)
    await waiter
    assert time.monotonic() - started >= 0.29


async def test_raised_cap_admits_a_waiter() -> None:
    lane = Lane("audio", 4)
    lane.record_rate_limit(0.0)
    assert lane.limit == 2
    await lane.acquire()
    await lane.acquire()
    waiter = asyncio.create_task(lane.acquire())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    # Additive increase: 2 -> 2.5 -> 2.9 -> 3.24, a cap of 3 after three.
    for _ in range(3):
        lane.record_success()
    assert lane.limit == 3
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert waiter.done()
    assert lane.in_flight == 3
