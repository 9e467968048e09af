"""The batch desk: batches per key, one batch at a time, every caller answered."""

from __future__ import annotations

import asyncio

import pytest

from plenary_kit.desk import BatchDesk


async def test_arrivals_during_a_batch_wait_and_go_together_in_the_next() -> None:
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def admit(event_id: str, items: list[int]) -> list[int | Exception]:
        batches.append(items)
        if len(batches) == 1:
            await release.wait()
        return [item * 10 for item in items]

    desk: BatchDesk[int, int] = BatchDesk(admit)
    first = asyncio.create_task(desk.submit("symposium", 1))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(desk.submit("symposium", n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    release.set()
    assert await first == 10
    assert [await task for task in rest] == [20, 30, 40]
    assert batches == [[1], [2, 3, 4]]


async def test_each_caller_gets_its_own_refusal_and_a_failed_batch_fails_only_its_callers() -> None:
    async def admit(event_id: str, items: list[int]) -> list[int | Exception]:
        if event_id == "broken":
            raise RuntimeError("document server unavailable")
        return [ValueError("already registered") if item == 2 else item for item in items]

    desk: BatchDesk[int, int] = BatchDesk(admit)
    one, two = await asyncio.gather(
        desk.submit("conference", 1), desk.submit("conference", 2), return_exceptions=True
    )
    assert one == 1 and isinstance(two, ValueError)
    with pytest.raises(RuntimeError):
        await desk.submit("broken", 3)
    assert await desk.submit("conference", 4) == 4, "the desk carries on after a failed batch"


async def test_batches_are_capped_and_events_do_not_share_them() -> None:
    seen: list[tuple[str, int]] = []

    async def admit(event_id: str, items: list[int]) -> list[int | Exception]:
        seen.append((event_id, len(items)))
        await asyncio.sleep(0.01)
        return list(items)

    desk: BatchDesk[int, int] = BatchDesk(admit, max_batch=3)
    calls = [desk.submit("a", n) for n in range(7)] + [desk.submit("b", n) for n in range(2)]
    assert sorted(await asyncio.gather(*calls)) == sorted([*range(7), 0, 1])
    assert sorted(size for event, size in seen if event == "a") == [1, 3, 3]
    assert [size for event, size in seen if event == "b"] == [2]
