"""One read per key at a time, shared by everyone who asks while it is in flight."""

from __future__ import annotations

import asyncio

import pytest

from plenary_kit.flight import SingleFlight


class Reads:
    """A read that waits until released, counting how often each key was read."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def read(self, key: str) -> str:
        self.counts[key] = self.counts.get(key, 0) + 1
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return f"{key}#{self.counts[key]}"


async def test_callers_arriving_during_a_read_share_it_and_the_next_caller_reads_again() -> None:
    reads = Reads()
    flight: SingleFlight[str] = SingleFlight(reads.read, "event-read")

    waiting = [asyncio.create_task(flight.get("symposium")) for _ in range(30)]
    other = asyncio.create_task(flight.get("conference"))
    await asyncio.sleep(0)
    reads.release.set()

    assert [await task for task in waiting] == ["symposium#1"] * 30
    assert await other == "conference#1"
    assert reads.counts == {"symposium": 1, "conference": 1}
    assert await flight.get("symposium") == "symposium#2"


async def test_a_caller_that_goes_away_leaves_the_read_to_the_others() -> None:
    reads = Reads()
    flight: SingleFlight[str] = SingleFlight(reads.read, "device-read")
    leaving = asyncio.create_task(flight.get("phone"))
    staying = asyncio.create_task(flight.get("phone"))
    await asyncio.sleep(0)

    leaving.cancel()
    await asyncio.sleep(0)
    reads.release.set()

    assert await staying == "phone#1"
    assert leaving.cancelled()
    assert reads.counts == {"phone": 1}


async def test_a_failed_read_fails_everyone_waiting_and_is_not_remembered() -> None:
    reads = Reads()
    reads.fail = ConnectionError("document server unreachable")
    flight: SingleFlight[str] = SingleFlight(reads.read, "event-read")
    waiting = [asyncio.create_task(flight.get("symposium")) for _ in range(3)]
    await asyncio.sleep(0)
    reads.release.set()

    for task in waiting:
        with pytest.raises(ConnectionError):
            await task
    reads.fail = None
    assert await flight.get("symposium") == "symposium#2"
