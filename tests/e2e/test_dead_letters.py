"""A malformed event lands in its dead-letter topic and every consumer carries on; parked events can be listed
and sent round again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from journey import create_event, eventually, organiser, register, ticket_of

from plenary_kit import events, topics
from plenary_kit.envelope import Envelope
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


async def test_a_parked_event_is_listed_and_once_redriven_gets_its_ticket(stack: EmbeddedStack) -> None:
    """An event parked while a consumer could not apply it (say, before a fix) is sent round again."""
    registration_id = str(uuid.uuid4())
    data = events.RegistrationConfirmed(
        registration_id=registration_id,
        event=events.EventSummary(
            id=str(uuid.uuid4()),
            slug=f"parked-{uuid.uuid4().hex[:6]}",
            title="Leading Inclusive Schools",
            venue="Foresight Centre, Liverpool",
            starts_at=datetime(2027, 6, 9, 9, tzinfo=UTC),
            ends_at=datetime(2027, 6, 9, 16, tzinfo=UTC),
            timezone="Europe/London",
        ),
        delegate=events.Delegate(
            name="Seren Roberts", email=f"seren.{uuid.uuid4().hex[:6]}@rainhill.example",
            organisation="Rainhill High School", role="SENCO",
        ),
        ticket_type="delegate",
    )
    envelope = Envelope.new(data, source="registration", subject=registration_id, correlation_id=str(uuid.uuid4()))
    parked_by = [("dlq_consumer", b"ticketing-before-the-fix"), ("dlq_error", b"RuntimeError: signing key unreadable")]
    producer = AIOKafkaProducer(bootstrap_servers=stack.config.bootstrap, acks="all")
    await producer.start()
    try:
        parked = topics.dead_letter(topics.REGISTRATION)
        await producer.send_and_wait(parked, envelope.to_bytes(), key=registration_id.encode(), headers=parked_by)
    finally:
        await producer.stop()

    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": stack.config.bootstrap}

    def tool(*args: str) -> str:
        run = subprocess.run(
            [sys.executable, "-m", "plenary_kit.deadletters", *args],
            env=env, capture_output=True, text=True, timeout=60, check=True,
        )
        return run.stdout

    listed = [json.loads(line) for line in tool("list", "--topic", topics.REGISTRATION).splitlines()]
    mine = [row for row in listed if row["consumer"] == "ticketing-before-the-fix"]
    assert len(mine) == 1 and mine[0]["error"].startswith("RuntimeError")
    assert "seren" not in json.dumps(listed), "the listing names no one"

    assert "re-published 1 " in tool("redrive", "--topic", topics.REGISTRATION, "--consumer", "ticketing-before")

    async with httpx.AsyncClient(timeout=10.0) as http:
        async def issued() -> dict[str, Any] | None:
            reply = await http.get(
                f"{stack.config.url('ticketing')}/api/v1/registrations/{registration_id}/ticket",
                headers=organiser(stack),
            )
            return reply.json() if reply.status_code == 200 else None

        ticket = await eventually(issued, timeout=60, what="the redriven registration's ticket")
    assert ticket["status"] == "valid"
