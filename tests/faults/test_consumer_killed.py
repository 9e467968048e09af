"""A consuming service is killed (SIGKILL) while it works through a burst's events, then started again.

150 delegates register; while the ticketing service is part-way through issuing their tickets
(some issued, not all) its process is killed and, 2 seconds later, started again. Separately,
the notifications service is killed part-way through sending a burst's confirmations. Each
resumes from its committed offsets: every confirmed registration ends with exactly one ticket
and one confirmation email, none lost.

None doubled, but for the one window the notifications service documents: a message the SMTP
server accepted just before the kill, whose `sent` mark had not committed, is still `sending` and
goes out again with the same Message-ID. The test reads which confirmations were `sending` while
the service was down and allows a second copy of those alone, never a third, never a new
Message-ID, and never more than one sender batch of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from burst import (
    CONFIRMATION,
    Delegate,
    assert_one_ticket_and_one_email_each,
    burst,
    confirmations,
    delegates,
    everything_delivered,
    inbox,
    mail_settled,
    registration_ids,
    tickets_by_registration,
)
from journey import create_event
from pymongo import AsyncMongoClient

from plenary_stack.stack import EmbeddedStack

pytestmark = pytest.mark.timeout(300)

DELEGATES = 150
IN_FLIGHT = 16
# Ticketing turns a burst of 16 in flight into tickets faster than the progress check (a fresh
# connection and a read each time) can look: all 150 could be issued between two looks. With two
# registrations in flight its work is spread over the burst, so a look finds it part-way.
TICKETING_IN_FLIGHT = 2
DOWN_SECONDS = 2
# Messages one notifications sender holds at once (`Sender`'s batch): at most these are in the window.
SENDER_BATCH = 16

# How much of its work a service has done for an event's delegates so far.
Progress = Callable[[EmbeddedStack, str, list[Delegate]], Awaitable[int]]


async def kill_part_way(
    stack: EmbeddedStack,
    service: str,
    progress: Callable[[], Awaitable[int]],
    total: int,
    while_down: Callable[[], Awaitable[None]] | None = None,
    timeout: float = 120,
) -> int:
    """SIGKILL the service once `progress` shows some of the work done but not all; start it again.

    `while_down` runs after the kill, before the restart. Returns how much was done when the kill landed.
    """
    deadline = time.monotonic() + timeout
    while not 0 < (done := await progress()) < total:
        assert done < total, f"{service} finished all {total} before it could be killed part-way"
        assert time.monotonic() < deadline, f"{service} did no work within {timeout:.0f} s"
        await asyncio.sleep(0.02)
    await asyncio.to_thread(stack.services[service].kill)
    if while_down is not None:
        await while_down()
    await asyncio.sleep(DOWN_SECONDS)
    await asyncio.to_thread(stack.services[service].start)
    await asyncio.to_thread(stack.wait_ready, 60)
    return done


async def burst_with_a_kill(
    stack: EmbeddedStack,
    service: str,
    progress: Progress,
    check: Callable[[httpx.AsyncClient, str, list[Delegate]], Awaitable[None]],
    while_down: Callable[[], Awaitable[None]] | None = None,
    in_flight: int = IN_FLIGHT,
) -> int:
    """A burst of registrations during which `service` is killed part-way through its share of the work.

    Waits until every delegate has a ticket and a confirmation email, then runs `check`; returns
    how much work was done when the kill landed.
    """
    people = delegates(DELEGATES)
    async with httpx.AsyncClient(timeout=30.0) as http:
        event_id = await create_event(http, stack, capacity=DELEGATES)

        async def done_so_far() -> int:
            return await progress(stack, event_id, people)

        _, done = await asyncio.gather(
            burst(http, stack, event_id, people, in_flight),
            kill_part_way(stack, service, done_so_far, DELEGATES, while_down),
        )
        await everything_delivered(stack, event_id, people, timeout=120)
        await check(http, event_id, people)
    return done


async def tickets_issued(stack: EmbeddedStack, event_id: str, people: list[Delegate]) -> int:
    return sum((await tickets_by_registration(stack, event_id)).values())


async def confirmations_received(stack: EmbeddedStack, event_id: str, people: list[Delegate]) -> int:
    received = await asyncio.to_thread(confirmations, stack)
    return sum(1 for person in people if received[person.email])


async def confirmations_sending(stack: EmbeddedStack) -> set[str]:
    """Registrations whose confirmation is `sending` (held by a sender, not yet marked sent), read from the database.

    Read while the burst is still registering, so it cannot be narrowed to the burst's registrations.
    """
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.config.mongo, serverSelectionTimeoutMS=10000)
    try:
        messages = client[f"{stack.config.db_prefix}_notifications"]["messages"]
        held = await messages.find(
            {"kind": "confirmation", "status": "sending"}, {"registration_id": 1}
        ).to_list(None)
    finally:
        await client.close()
    return {str(message["registration_id"]) for message in held}


async def test_ticketing_killed_mid_batch_resumes_with_one_ticket_and_one_email_each(stack: EmbeddedStack) -> None:
    async def exactly_one_each(http: httpx.AsyncClient, event_id: str, people: list[Delegate]) -> None:
        await assert_one_ticket_and_one_email_each(http, stack, event_id, people)

    done = await burst_with_a_kill(
        stack, "ticketing", tickets_issued, exactly_one_each, in_flight=TICKETING_IN_FLIGHT
    )
    print(f"ticketing killed with {done} of {DELEGATES} tickets issued")


async def test_notifications_killed_mid_sending_resumes_with_one_email_each(stack: EmbeddedStack) -> None:
    in_the_window: set[str] = set()

    async def note_held() -> None:
        in_the_window.update(await confirmations_sending(stack))

    async def one_email_each_but_the_window(http: httpx.AsyncClient, event_id: str, people: list[Delegate]) -> None:
        await mail_settled(http, stack)
        tickets = await tickets_by_registration(stack, event_id)
        assert {rid: n for rid, n in tickets.items() if n != 1} == {}
        assert set(tickets) == registration_ids(people)
        mails = inbox(stack.config.maildir)
        doubled = {}
        for person in people:
            copies = [mail for mail in mails.get(person.email, []) if str(mail["Subject"]).strip() == CONFIRMATION]
            assert copies, f"delegate {person.number} got no confirmation"
            if len(copies) > 1:
                doubled[person.registration_id] = {str(mail["Message-ID"]) for mail in copies}
                assert len(copies) == 2, f"delegate {person.number} got {len(copies)} confirmations"
        # A second copy only of a message in the window, as the same message.
        assert set(doubled) <= in_the_window, (doubled, in_the_window)
        assert {rid: ids for rid, ids in doubled.items() if len(ids) != 1} == {}
        assert len(in_the_window) <= SENDER_BATCH
        print(f"{len(in_the_window)} confirmations in the window at the kill, {len(doubled)} sent twice")

    done = await burst_with_a_kill(
        stack, "notifications", confirmations_received, one_email_each_but_the_window, note_held
    )
    print(f"notifications killed with {done} of {DELEGATES} confirmations in the Maildir")
