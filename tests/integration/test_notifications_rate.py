"""The shared send rate against the real document server: several senders together stay within it."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import Counter

from notifications.rate import SendRate
from notifications.store import Store
from plenary_kit import mongo
from plenary_stack.stack import EmbeddedStack


async def test_senders_in_separate_processes_share_one_rate(infrastructure: EmbeddedStack) -> None:
    client = mongo.connect(infrastructure.config.mongo)
    try:
        store = Store(client[f"plenary_test_rate_{uuid.uuid4().hex[:8]}"])
        await store.prepare()
        # Three senders as three processes would have them: one limiter each, one collection.
        senders = [SendRate(store.send_windows, 20) for _ in range(3)]
        sent_at: list[float] = []

        async def send(rate: SendRate) -> None:
            await rate.acquire()
            sent_at.append(time.time())

        started = time.time()
        await asyncio.gather(*(send(senders[n % 3]) for n in range(70)))
        elapsed = time.time() - started

        per_second = Counter(math.floor(at) for at in sent_at)
        assert max(per_second.values()) <= 20
        # 70 places at 20 a second need at least three windows after the first.
        assert elapsed > 2.0
        windows = await store.send_windows.find().to_list(None)
        assert sum(window["used"] for window in windows) >= 70
    finally:
        await client.close()


async def test_places_counted_as_their_window_closes_lapse_rather_than_spill_into_the_next(
    infrastructure: EmbeddedStack,
) -> None:
    client = mongo.connect(infrastructure.config.mongo)
    try:
        store = Store(client[f"plenary_test_rate_{uuid.uuid4().hex[:8]}"])
        await store.prepare()
        # The clock as the sender reads it: before counting in second 10, after (second 11 begun), and on.
        readings = iter([10.95, 11.01, 11.02, 11.03, 11.04])
        rate = SendRate(store.send_windows, 20, clock=lambda: next(readings))

        await rate.acquire()

        windows = {window["_id"]: window["used"] for window in await store.send_windows.find().to_list(None)}
        # Places are taken five at a time at 20 a second: second 10's lapsed, second 11's are in use.
        assert windows == {"1:10": 5, "1:11": 5}
        await rate.acquire()
        assert await store.send_windows.count_documents({}) == 2
    finally:
        await client.close()


async def test_no_rate_means_no_waiting_and_no_database(infrastructure: EmbeddedStack) -> None:
    client = mongo.connect(infrastructure.config.mongo)
    try:
        store = Store(client[f"plenary_test_rate_{uuid.uuid4().hex[:8]}"])
        unlimited = SendRate(store.send_windows, 0)
        started = time.monotonic()
        await asyncio.gather(*(unlimited.acquire() for _ in range(500)))
        assert time.monotonic() - started < 1.0
        assert await store.send_windows.count_documents({}) == 0
    finally:
        await client.close()
