"""The send rate every sender of the service shares, so a large import stays inside the provider's quota.

Time is cut into fixed windows (one second, or longer for rates below one per second), and
each window has one MongoDB document counting the messages handed to SMTP in it. A sender
takes a place with one atomic increment; past the window's allowance it waits for the next
window. However many processes send, together they stay at the configured rate (fixed
windows let a burst of up to two allowances straddle the edge between two windows).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from plenary_kit.mongo import Document

# Window documents outlive their window briefly, then MongoDB's TTL monitor removes them.
KEEP_WINDOWS = timedelta(minutes=5)


class SendRate:
    def __init__(
        self,
        windows: AsyncCollection[Document],
        per_second: float,
        *,
        block: int = 8,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._windows = windows
        self.per_second = per_second
        self._clock = clock
        self._sleep = sleep
        self.window_seconds = 1.0 if per_second >= 1 else 1.0 / per_second if per_second > 0 else 1.0
        self.allowance = max(1, math.floor(per_second * self.window_seconds))
        # Places are taken a few at a time, so a busy sender asks MongoDB once per block, not per
        # message; a place taken and not used lapses with its window, so the rate is never exceeded.
        self.block = max(1, min(block, self.allowance // 4))
        self._held_window = -1
        self._held = 0
        self._lock = asyncio.Lock()

    @property
    def limited(self) -> bool:
        return self.per_second > 0

    async def acquire(self) -> None:
        """Wait for a place to send one message; at once while the current window has room."""
        if not self.limited:
            return
        async with self._lock:
            while True:
                now = self._clock()
                window = math.floor(now / self.window_seconds)
                if self._held_window == window and self._held > 0:
                    self._held -= 1
                    return
                granted = await self._take(window, self.block)
                if math.floor(self._clock() / self.window_seconds) != window:
                    # The window closed while its places were being counted: they lapse unused, so
                    # no message counted in one window is handed over in the next on top of its own.
                    continue
                if granted:
                    self._held_window, self._held = window, granted - 1
                    return
                await self._sleep((window + 1) * self.window_seconds - now)

    async def _take(self, window: int, wanted: int) -> int:
        """Ask for `wanted` places in the window; returns how many were still free."""
        expires_at = datetime.now(UTC) + KEEP_WINDOWS
        while True:
            try:
                counted = await self._windows.find_one_and_update(
                    {"_id": f"{self.window_seconds:g}:{window}"},
                    {"$inc": {"used": wanted}, "$setOnInsert": {"expires_at": expires_at}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                # Two senders opened the window at once; the other's insert won, so count in it.
                continue
            if counted is None:
                # Some MongoDB-compatible servers answer a racing upsert with nothing; count again.
                continue
            before = int(counted["used"]) - wanted
            return max(0, min(wanted, self.allowance - before))
