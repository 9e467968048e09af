"""With the broker down a registration is still accepted; its ticket and email follow once it is back."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from journey import create_event, decode_inline_qr, eventually, messages_to, now, register, ticket_of

from plenary_stack.stack import EmbeddedStack

pytestmark = pytest.mark.timeout(300)


async def test_registration_taken_while_broker_is_down_gets_ticket_and_email_when_it_returns(
    own_stack: EmbeddedStack,
) -> None:
    stack = own_stack
    if not stack.embedded_broker:
        pytest.skip("stops the embedded broker; an outside Kafka is in use")
    address = f"ciaran.{uuid.uuid4().hex[:8]}@st-helens-college.example"
    async with httpx.AsyncClient(timeout=10.0) as http:
        event_id = await create_event(http, stack)

        await asyncio.to_thread(stack.broker.stop)
        registration = await register(http, stack, event_id, address)
        ready = await http.get(f"{stack.config.url('registration')}/readyz")
        assert ready.status_code == 503
        assert "kafka" in ready.json()["down"]

        await asyncio.to_thread(stack.start_broker)
        ticket = await ticket_of(http, stack, registration, timeout=120)
        emails = await eventually(lambda: now(messages_to(stack, address)), timeout=120, what="confirmation email")
        assert len(emails) == 1
        assert decode_inline_qr(emails[0]) == ticket["code"]
