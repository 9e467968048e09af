"""One delegate's whole journey over HTTP, Kafka and MongoDB: register, ticket, email, scan, attendance."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from journey import (
    attendance,
    create_event,
    decode_inline_qr,
    duplicates_seen,
    eventually,
    messages_to,
    more_than,
    now,
    register,
    replay_everything,
    scan,
    ticket_of,
)

from plenary_stack.stack import EmbeddedStack

pytestmark = pytest.mark.timeout(300)


async def test_delegate_registers_gets_emailed_ticket_and_is_admitted_once(stack: EmbeddedStack) -> None:
    address = f"zoe.{uuid.uuid4().hex[:8]}@birkenhead-park.example"
    async with httpx.AsyncClient(timeout=10.0) as http:
        event_id = await create_event(http, stack)
        registration = await register(http, stack, event_id, address)

        ticket = await ticket_of(http, stack, registration)
        assert ticket["status"] == "valid"
        assert ticket["event_id"] == event_id

        emails = await eventually(lambda: now(messages_to(stack, address)), what="confirmation email")
        assert len(emails) == 1
        decoded = decode_inline_qr(emails[0])
        assert decoded == ticket["code"]

        async def admitted_once() -> dict[str, Any] | None:
            verdict = await scan(http, stack, event_id, decoded, gate="Main entrance")
            return None if verdict["verdict"] == "unknown_ticket" else verdict

        first = await eventually(admitted_once, what="check-in learning the ticket")
        assert first["verdict"] == "admitted"
        assert first["attendee"]["name"] == "Zoë Olubayo-O'Neill"

        second = await scan(http, stack, event_id, decoded, gate="Side door")
        assert second["verdict"] == "already_admitted"
        assert second["first_admitted"]["gate"] == "Main entrance"

        counts = await attendance(http, stack, event_id)
        assert counts["admitted"] == 1
        assert counts["registered"] == 1

        # Re-publish every outbox event of every service: consumers must recognise them all.
        before = {
            (service, event_type): await duplicates_seen(http, stack, service, event_type)
            for service, event_type in (
                ("ticketing", "registration.confirmed"),
                ("notifications", "ticket.issued"),
                ("checkin", "ticket.issued"),
            )
        }
        await asyncio.to_thread(replay_everything, stack)
        for (service, event_type), seen in before.items():
            await eventually(
                lambda s=service, t=event_type, n=seen: more_than(duplicates_seen(http, stack, s, t), n),
                what=f"{service} seeing replayed {event_type}",
            )

        assert (await ticket_of(http, stack, registration))["ticket_id"] == ticket["ticket_id"]
        assert len(messages_to(stack, address)) == 1
        counts = await attendance(http, stack, event_id)
        assert counts["admitted"] == 1
        assert counts["registered"] == 1
        again = await scan(http, stack, event_id, decoded, gate="Main entrance")
        assert again["verdict"] == "already_admitted"
