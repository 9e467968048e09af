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
from collections.abc import Iterator

import httpx
import pytest
from burst import (
    burst,
    confirmations,
    delegates,
    every_confirmation_sent,
    every_ticket_issued,
    fault_stack,
    mail_settled,
    organiser_list,
    tickets_by_registration,
)
from journey import create_event, replay_everything

from plenary_stack.stack import EmbeddedStack

pytestmark = pytest.mark.timeout(300)

DELEGATES = 500
IN_FLIGHT = 16
STOP_AFTER = 100
OUTAGE_SECONDS = 30


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    yield from fault_stack(tmp_path_factory.mktemp("broker-stopped"), "faultbroker")


async def test_no_registration_ticket_or_email_is_lost_or_doubled_when_the_broker_stops_for_30_seconds(
    stack: EmbeddedStack,
) -> None:
    if not stack.embedded_broker:
        pytest.skip("stops the embedded broker; an outside Kafka is in use")
    people = delegates(DELEGATES)
    addresses = {person.email for person in people}
    async with httpx.AsyncClient(timeout=30.0) as http:
        event_id = await create_event(http, stack, capacity=DELEGATES)
        enough = asyncio.Event()
        answered_while_down: list[int] = []

        def count(answered: int) -> None:
            if answered >= STOP_AFTER:
                enough.set()

        async def outage() -> None:
            await enough.wait()
            # Killed rather than asked to stop: asked, it goes on serving for seconds while it shuts down.
            await asyncio.to_thread(stack.broker.kill)
            stopped = time.monotonic()
            before = sum(1 for person in people if person.accepted)
            await asyncio.sleep(OUTAGE_SECONDS - (time.monotonic() - stopped))  # the outage itself
            answered_while_down.append(sum(1 for person in people if person.accepted) - before)
            await asyncio.to_thread(stack.start_broker)

        started = time.monotonic()
        await asyncio.gather(burst(http, stack, event_id, people, IN_FLIGHT, count), outage())
        await asyncio.to_thread(replay_everything, stack)
        recovered = time.monotonic()

        assert all(person.accepted for person in people), Counter(
            str(p.answers) for p in people if not p.accepted
        )
        assert answered_while_down[0] >= DELEGATES // 4, "too few registrations came in while the broker was down"

        listed = await organiser_list(http, stack, event_id)
        assert Counter(row["email"] for row in listed) == Counter(addresses)
        assert {str(row["id"]) for row in listed} == {str(person.registration_id) for person in people}
        ids = {str(person.registration_id) for person in people}

        await every_ticket_issued(stack, event_id, ids, timeout=150)
        await every_confirmation_sent(stack, addresses, timeout=150)
        settled = time.monotonic()
        await mail_settled(http, stack)
        tickets = await tickets_by_registration(stack, event_id)
        assert set(tickets) == ids
        assert {rid: n for rid, n in tickets.items() if n != 1} == {}
        received = confirmations(stack)
        assert {address: received[address] for address in addresses if received[address] != 1} == {}
        print(
            f"{answered_while_down[0]} registered while the broker was down; "
            f"tickets and emails settled {settled - recovered:.0f} s after the replay "
            f"({settled - started:.0f} s after the burst began)"
        )
