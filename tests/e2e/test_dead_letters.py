"""A malformed event on a topic lands in its dead-letter topic, and every consumer carries on."""

from __future__ import annotations

import uuid

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from journey import create_event, eventually, register, ticket_of

from plenary_kit import topics
from plenary_stack.stack import EmbeddedStack

pytestmark = pytest.mark.timeout(180)


async def test_malformed_event_is_dead_lettered_by_each_consumer_and_the_next_registration_flows(
    stack: EmbeddedStack,
) -> None:
    poison = b'{"specversion": "1.0", "type": "registration.confirmed", "poison": "' + uuid.uuid4().hex.encode() + b'"}'
    producer = AIOKafkaProducer(bootstrap_servers=stack.config.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topics.REGISTRATION, poison, key=b"poison")
    finally:
        await producer.stop()

    reader = AIOKafkaConsumer(
        topics.dead_letter(topics.REGISTRATION),
        bootstrap_servers=stack.config.bootstrap,
        group_id=f"dlq-reader-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
    )
    await reader.start()
    letters: dict[str, dict[str, bytes]] = {}
    try:
        async def all_three_dead_lettered() -> bool:
            for records in (await reader.getmany(timeout_ms=200)).values():
                for record in records:
                    if record.value == poison:
                        headers = dict(record.headers)
                        # Group names carry the run's suffix, e.g. "ticketing-test-1a2b3c4d".
                        letters[headers["dlq_consumer"].decode().split("-", 1)[0]] = headers
            return {"ticketing", "notifications", "checkin"} <= set(letters)

        await eventually(all_three_dead_lettered, timeout=60, what="dead letters from every consumer")
    finally:
        await reader.stop()
    assert all(h["dlq_error"].startswith(b"MalformedEvent") for h in letters.values())

    async with httpx.AsyncClient(timeout=10.0) as http:
        event_id = await create_event(http, stack)
        registration = await register(http, stack, event_id, f"next.{uuid.uuid4().hex[:6]}@wirral.example")
        ticket = await ticket_of(http, stack, registration)
    assert ticket["status"] == "valid"
