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
from collections.abc import Awaitable, Callable

import httpx
import pytest
from burst import (
    Delegate,
    assert_one_ticket_and_one_email_each,
    burst,
    confirmations,
    delegates,
    everything_delivered,
    tickets_by_registration,
)
from journey import create_event

from plenary_stack.stack import EmbeddedStack

pytestmark = pytest.mark.timeout(300)

DELEGATES = 150
IN_FLIGHT = 16
DOWN_SECONDS = 2

# How much of its work a service has done for an event's delegates so far.
Progress = Callable[[EmbeddedStack, str, list[Delegate]], Awaitable[int]]


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


async def burst_with_a_kill(stack: EmbeddedStack, service: str, progress: Progress) -> int:
    """A burst of registrations during which `service` is killed part-way through its share of the work.

    Checks that every delegate ends with one ticket and one confirmation email; returns how much
    work was done when the kill landed.
    """
    people = delegates(DELEGATES)
    async with httpx.AsyncClient(timeout=30.0) as http:
        event_id = await create_event(http, stack, capacity=DELEGATES)

        async def done_so_far() -> int:
            return await progress(stack, event_id, people)

        _, done = await asyncio.gather(
            burst(http, stack, event_id, people, IN_FLIGHT), kill_part_way(stack, service, done_so_far, DELEGATES)
        )
        await everything_delivered(stack, event_id, people, timeout=120)
        await assert_one_ticket_and_one_email_each(http, stack, event_id, people)
    return done


async def tickets_issued(stack: EmbeddedStack, event_id: str, people: list[Delegate]) -> int:
    return sum((await tickets_by_registration(stack, event_id)).values())


async def confirmations_received(stack: EmbeddedStack, event_id: str, people: list[Delegate]) -> int:
    received = await asyncio.to_thread(confirmations, stack)
    return sum(1 for person in people if received[person.email])


async def test_ticketing_killed_mid_batch_resumes_with_one_ticket_and_one_email_each(stack: EmbeddedStack) -> None:
    done = await burst_with_a_kill(stack, "ticketing", tickets_issued)
    print(f"ticketing killed with {done} of {DELEGATES} tickets issued")


async def test_notifications_killed_mid_sending_resumes_with_one_email_each(stack: EmbeddedStack) -> None:
    done = await burst_with_a_kill(stack, "notifications", confirmations_received)
    print(f"notifications killed with {done} of {DELEGATES} confirmations in the Maildir")
