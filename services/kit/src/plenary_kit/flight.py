"""One read per key at a time: whoever asks while it is in flight shares its answer.

When a remembered copy runs out under load (an event during a registration surge, a door phone's
device while it scans), every request in flight would otherwise read the same document at the same
moment, queued at the document server in front of the work they are waiting for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, Generic, TypeVar

Value = TypeVar("Value")


class SingleFlight(Generic[Value]):
    """Calls `read(key)` once for every caller of `get(key)` that arrives before it answers."""

    def __init__(self, read: Callable[[str], Coroutine[Any, Any, Value]], name: str) -> None:
        self._read = read
        self._name = name
        self._flights: dict[str, asyncio.Task[Value]] = {}

    async def get(self, key: str) -> Value:
        flight = self._flights.get(key)
        if flight is None:
            # A task of its own: a caller that goes away does not take the others' read with it.
            flight = asyncio.create_task(self._read(key), name=f"{self._name}-{key}")
            self._flights[key] = flight
            flight.add_done_callback(partial(self._landed, key))
        return await asyncio.shield(flight)

    def _landed(self, key: str, flight: asyncio.Task[Value]) -> None:
        del self._flights[key]
        # Retrieved even when every caller has gone, so a failed read is not reported as lost.
        if not flight.cancelled():
            flight.exception()
