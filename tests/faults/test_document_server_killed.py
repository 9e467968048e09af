"""The document server is killed (SIGKILL) in the middle of a registration burst and started again.

200 delegates register, 16 in flight; after 60 have been answered 201 the document server dies
without warning and comes back on the same files 8 seconds later (longer than the services wait
to find a server, so some requests fail). Every registration answered 201 must exist exactly once
with its ticket; a delegate whose request failed during the outage sends it again with the same
Idempotency-Key and is registered once, not twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest
from burst import (
    burst_with_outage,
    delegates,
    every_ticket_issued,
    organiser_list,
    registered_so_far,
    retry_failed,
    tickets_by_registration,
)
from journey import create_event, eventually, organiser

from plenary_stack.stack import EmbeddedStack

pytestmark = pytest.mark.timeout(300)

DELEGATES = 200
IN_FLIGHT = 16
KILL_AFTER = 60
DOWN_SECONDS = 8


async def test_every_registration_answered_201_survives_a_killed_document_server_once_with_its_ticket(
    stack: EmbeddedStack,
) -> None:
    if not stack.embedded_documents:
        pytest.skip("kills the embedded document server; an outside MongoDB is in use")
    people = delegates(DELEGATES)
    async with httpx.AsyncClient(timeout=20.0) as http:
        event_id = await create_event(http, stack, capacity=DELEGATES + 50)
        answered_at_kill: list[int] = []

        async def outage() -> None:
            answered_at_kill.append(registered_so_far(people))
            await asyncio.to_thread(stack.documents.kill)
            await asyncio.sleep(DOWN_SECONDS)
            await asyncio.to_thread(stack.start_documents)

        started = time.monotonic()
        await burst_with_outage(http, stack, event_id, people, IN_FLIGHT, KILL_AFTER, outage)
        burst_seconds = time.monotonic() - started

        failed = [person for person in people if not person.accepted]
        refusals = Counter(answer for person in failed for answer in person.answers)
        # While the database is away the service says so, in the contract's shape, and asks for a retry.
        assert set(refusals) <= {503}, refusals
        accepted_first = {person.email: person.registration_id for person in people if person.accepted}
        # The kill really cut into the burst: some requests failed, and some were answered after it.
        assert failed, "no request failed, so the document server was never down while registrations came in"
        assert len(accepted_first) > answered_at_kill[0]

        async def ready() -> bool:
            reply = await http.get(f"{stack.config.url('registration')}/readyz")
            return reply.status_code == 200

        await eventually(ready, 60, "registration to see the document server again")
        await retry_failed(http, stack, event_id, failed)

        for person in people:
            # Every 201 the delegate was given, first or on a retry, names one and the same registration.
            assert {str(answer["id"]) for answer in person.accepted} == {person.registration_id}, person.answers
        for email, registration_id in accepted_first.items():
            person = next(p for p in people if p.email == email)
            assert person.registration_id == registration_id

        listed = await organiser_list(http, stack, event_id)
        by_email = Counter(row["email"] for row in listed)
        assert {email: n for email, n in by_email.items() if n != 1} == {}
        assert set(by_email) == {person.email for person in people}
        ids = {row["email"]: str(row["id"]) for row in listed}
        assert {person.email: person.registration_id for person in people} == ids
        assert Counter(row["status"] for row in listed) == {"confirmed": DELEGATES}

        for person in people[:: DELEGATES // 20] + failed:
            reply = await http.get(
                f"{stack.config.url('registration')}/api/v1/registrations/{person.registration_id}",
                headers=organiser(stack),
            )
            assert reply.status_code == 200, reply.text
            assert reply.json()["status"] == "confirmed"

        registration_ids = set(ids.values())
        await every_ticket_issued(stack, event_id, registration_ids, timeout=120)
        issued = await tickets_by_registration(stack, event_id)
        assert set(issued) == registration_ids
        assert {rid: n for rid, n in issued.items() if n != 1} == {}
        print(
            f"burst {burst_seconds:.1f} s; {answered_at_kill[0]} answered 201 before the kill, "
            f"{len(failed)} failed ({dict(Counter(person.answers[0] for person in failed))}) and were retried"
        )
