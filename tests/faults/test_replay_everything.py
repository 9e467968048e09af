"""Every topic replayed from the beginning into every consumer changes nothing a delegate or organiser sees.

40 delegates register and settle: each has a ticket and a confirmation email, and 5 of them
are scanned in at the door. Then every service's outbox is published again (each event is on
its topic twice) and each consuming service is stopped, its consumer group rewound to the first
offset of everything it had read, and started again, so it reads every event twice over. After
each group has read to the end: no second ticket, no second email, no second admission, and a
delegate already admitted is still "already admitted" at the door.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from burst import (
    CONSUMING,
    burst,
    caught_up,
    delegates,
    ends,
    everything_delivered,
    inbox,
    mail_settled,
    rewind,
    tickets_by_registration,
)
from journey import attendance, create_event, duplicates_seen, replay_everything, scan, ticket_of
from pymongo import AsyncMongoClient

from plenary_stack.stack import EmbeddedStack

pytestmark = pytest.mark.timeout(300)

DELEGATES = 40
SCANNED = 5


async def stored(stack: EmbeddedStack, event_id: str) -> dict[str, int]:
    """How many messages, admissions and scans the services hold for the event."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.config.mongo, serverSelectionTimeoutMS=10000)
    prefix = stack.config.db_prefix
    try:
        return {
            "messages": await client[f"{prefix}_notifications"]["messages"].count_documents({}),
            "admissions": await client[f"{prefix}_checkin"]["admissions"].count_documents({"event_id": event_id}),
            "scans": await client[f"{prefix}_checkin"]["scans"].count_documents({"event_id": event_id}),
        }
    finally:
        await client.close()


async def figures(http: httpx.AsyncClient, stack: EmbeddedStack, event_id: str) -> dict[str, Any]:
    """The organiser's attendance figures, without the time they were read."""
    return {name: value for name, value in (await attendance(http, stack, event_id)).items() if name != "updated_at"}


def mailbox_counts(stack: EmbeddedStack) -> Counter[str]:
    return Counter({address: len(mails) for address, mails in inbox(stack.config.maildir).items()})


async def test_replaying_every_topic_into_every_consumer_gives_no_second_ticket_email_or_admission(
    stack: EmbeddedStack,
) -> None:
    people = delegates(DELEGATES)
    async with httpx.AsyncClient(timeout=30.0) as http:
        event_id = await create_event(http, stack, capacity=DELEGATES)
        await burst(http, stack, event_id, people, in_flight=8)
        await everything_delivered(stack, event_id, people, timeout=120)

        codes = [(await ticket_of(http, stack, person.accepted[0]))["code"] for person in people[:SCANNED]]
        for code in codes:
            assert (await scan(http, stack, event_id, code, "Main entrance"))["verdict"] == "admitted"

        before_tickets = await tickets_by_registration(stack, event_id)
        before_mail = mailbox_counts(stack)
        before_stored = await stored(stack, event_id)
        before_attendance = await figures(http, stack, event_id)
        assert before_attendance["admitted"] == SCANNED

        await asyncio.to_thread(replay_everything, stack)
        for service in CONSUMING:
            await asyncio.to_thread(stack.services[service].stop)
            rewound = await rewind(stack, service)
            await asyncio.to_thread(stack.services[service].start)
            await asyncio.to_thread(stack.wait_ready, 60)
            await caught_up(stack, service, await ends(stack, rewound), timeout=120)

        # Each consumer met the replayed events and recognised them as already handled.
        assert await duplicates_seen(http, stack, "ticketing", "registration.confirmed") >= 2 * DELEGATES
        assert await duplicates_seen(http, stack, "notifications", "ticket.issued") >= 2 * DELEGATES
        assert await duplicates_seen(http, stack, "checkin", "ticket.issued") >= 2 * DELEGATES

        await mail_settled(http, stack)
        assert await tickets_by_registration(stack, event_id) == before_tickets
        assert mailbox_counts(stack) == before_mail
        assert await stored(stack, event_id) == before_stored
        assert await figures(http, stack, event_id) == before_attendance
        for code in codes:
            again = await scan(http, stack, event_id, code, "Main entrance")
            assert again["verdict"] == "already_admitted", again
