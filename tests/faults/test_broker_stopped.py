"""The broker is stopped for 30 seconds during a burst of 500 registrations: none is lost, none doubled.

500 delegates register, 16 in flight. After 100 have been answered 201 the broker is killed; the
rest register while it is down (their events wait in the registration outbox) and it starts
again 30 seconds after it stopped. The embedded broker keeps its topics in memory, so it comes
back empty: events it had taken but nobody had read yet are gone from it. The operator's step
for that is the outbox replay (`python -m plenary_kit.replay`), which this test runs as soon as
the broker is back; with a real Kafka cluster nothing would be gone and the replay would only
give the consumers duplicates to skip. Afterwards every delegate has exactly one registration,
one ticket and one confirmation email.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest
from burst import (
    assert_one_ticket_and_one_email_each,
    burst_with_outage,
    delegates,
    everything_delivered,
    organiser_list,
    registered_so_far,
    registration_ids,
)
from journey import create_event, replay_everything

from plenary_stack.stack import EmbeddedStack

pytestmark = pytest.mark.timeout(300)

DELEGATES = 500
IN_FLIGHT = 16
STOP_AFTER = 100
OUTAGE_SECONDS = 30


async def test_no_registration_ticket_or_email_is_lost_or_doubled_when_the_broker_stops_for_30_seconds(
    stack: EmbeddedStack,
) -> None:
    if not stack.embedded_broker:
        pytest.skip("stops the embedded broker; an outside Kafka is in use")
    people = delegates(DELEGATES)
    async with httpx.AsyncClient(timeout=30.0) as http:
        event_id = await create_event(http, stack, capacity=DELEGATES)
        answered_while_down: list[int] = []

        async def outage() -> None:
            # Killed rather than asked to stop: asked, it goes on serving for seconds while it shuts down.
            await asyncio.to_thread(stack.broker.kill)
            stopped = time.monotonic()
            before = registered_so_far(people)
            await asyncio.sleep(OUTAGE_SECONDS - (time.monotonic() - stopped))  # the outage itself
            answered_while_down.append(registered_so_far(people) - before)
            await asyncio.to_thread(stack.start_broker)

        started = time.monotonic()
        await burst_with_outage(http, stack, event_id, people, IN_FLIGHT, STOP_AFTER, outage)
        await asyncio.to_thread(replay_everything, stack)
        recovered = time.monotonic()

        ids = registration_ids(people)
        assert answered_while_down[0] >= DELEGATES // 4, "too few registrations came in while the broker was down"

        listed = await organiser_list(http, stack, event_id)
        assert Counter(row["email"] for row in listed) == Counter(person.email for person in people)
        assert {str(row["id"]) for row in listed} == ids

        await everything_delivered(stack, event_id, people, timeout=150)
        settled = time.monotonic()
        await assert_one_ticket_and_one_email_each(http, stack, event_id, people)
        print(
            f"{answered_while_down[0]} registered while the broker was down; "
            f"tickets and emails settled {settled - recovered:.0f} s after the replay "
            f"({settled - started:.0f} s after the burst began)"
        )
