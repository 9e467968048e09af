"""A consuming service is killed (SIGKILL) while it works through a burst's events, then started again.

150 delegates register; while the ticketing service is part-way through issuing their tickets
(some issued, not all) its process is killed and, 2 seconds later, started again. Separately,
the notifications service is killed part-way through sending a burst's confirmations. Each
resumes from its committed offsets: every confirmed registration ends with exactly one ticket
and exactly one confirmation email, none lost and none doubled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

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
    tickets_by_registration,
)
from journey import create_event

from plenary_stack.stack import EmbeddedStack

pytestmark = pytest.mark.timeout(300)

DELEGATES = 150
IN_FLIGHT = 16
DOWN_SECONDS = 2


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    yield from fault_stack(tmp_path_factory.mktemp("consumer-killed"), "faultconsumer")


async def kill_part_way(
    stack: EmbeddedStack, service: str, progress: Callable[[], Awaitable[int]], total: int, timeout: float = 120
) -> int:
    """SIGKILL the service once `progress` shows some of the work done but not all; start it again.

    Returns how much was done when the kill landed.
    """
    deadline = time.monotonic() + timeout
    while not 0 < (done := await progress()) < total:
        assert done < total, f"{service} finished all {total} before it could be killed part-way"
        assert time.monotonic() < deadline, f"{service} did no work within {timeout:.0f} s"
        await asyncio.sleep(0.02)
    await asyncio.to_thread(stack.services[service].kill)
    await asyncio.sleep(DOWN_SECONDS)
    await asyncio.to_thread(stack.services[service].start)
    await asyncio.to_thread(stack.wait_ready, 60)
    return done


async def test_ticketing_killed_mid_batch_resumes_with_one_ticket_and_one_email_each(stack: EmbeddedStack) -> None:
    people = delegates(DELEGATES)
    addresses = {person.email for person in people}
    async with httpx.AsyncClient(timeout=30.0) as http:
        event_id = await create_event(http, stack, capacity=DELEGATES)

        async def issued() -> int:
            return sum((await tickets_by_registration(stack, event_id)).values())

        _, done = await asyncio.gather(
            burst(http, stack, event_id, people, IN_FLIGHT), kill_part_way(stack, "ticketing", issued, DELEGATES)
        )
        assert all(person.accepted for person in people), [p.answers for p in people if not p.accepted]
        ids = {str(person.registration_id) for person in people}

        await every_ticket_issued(stack, event_id, ids, timeout=120)
        await every_confirmation_sent(stack, addresses, timeout=120)
        await mail_settled(http, stack)
        tickets = await tickets_by_registration(stack, event_id)
        assert set(tickets) == ids
        assert {rid: n for rid, n in tickets.items() if n != 1} == {}
        received = confirmations(stack)
        assert {address: received[address] for address in addresses if received[address] != 1} == {}
        print(f"ticketing killed with {done} of {DELEGATES} tickets issued")


async def test_notifications_killed_mid_sending_resumes_with_one_email_each(stack: EmbeddedStack) -> None:
    people = delegates(DELEGATES)
    addresses = {person.email for person in people}
    async with httpx.AsyncClient(timeout=30.0) as http:
        event_id = await create_event(http, stack, capacity=DELEGATES)

        async def sent() -> int:
            received = await asyncio.to_thread(confirmations, stack)
            return sum(1 for address in addresses if received[address])

        _, done = await asyncio.gather(
            burst(http, stack, event_id, people, IN_FLIGHT), kill_part_way(stack, "notifications", sent, DELEGATES)
        )
        assert all(person.accepted for person in people), [p.answers for p in people if not p.accepted]
        ids = {str(person.registration_id) for person in people}

        await every_ticket_issued(stack, event_id, ids, timeout=120)
        await every_confirmation_sent(stack, addresses, timeout=120)
        await mail_settled(http, stack)
        received = confirmations(stack)
        assert {address: received[address] for address in addresses if received[address] != 1} == {}
        tickets = await tickets_by_registration(stack, event_id)
        assert {rid: n for rid, n in tickets.items() if n != 1} == {}
        print(f"notifications killed with {done} of {DELEGATES} confirmations in the Maildir")
