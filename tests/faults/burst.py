"""What the fault tests share: a stack that may be killed, a registration burst with retries, and counts.

A registration is sent with an Idempotency-Key of its own, so a delegate whose request failed
during a fault can send it again without the risk of being registered twice. The counts read
what a delegate or organiser would see (the organiser list, the Maildir) and, for tickets, the
ticketing database itself, where a doubled ticket could otherwise hide behind the one-ticket API.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from journey import TEST_SETTINGS, eventually, organiser, running_stack
from pymongo import AsyncMongoClient
from test_smtp_outage import NAMES, SCHOOLS, inbox, unsettled

from plenary_kit import topics
from plenary_kit.kafka import read_to_end
from plenary_stack.stack import EmbeddedStack, StackConfig

CONFIRMATION = "Your place at Education Leadership in Challenging Times is confirmed: your ticket"

# The services that consume other services' events, one consumer group each.
CONSUMING = ("ticketing", "notifications", "checkin")


def fault_stack(var: Path, purpose: str) -> Iterator[EmbeddedStack]:
    """A whole stack for one fault module; its document server makes each commit durable before answering."""
    config = StackConfig.isolated(var, purpose, TEST_SETTINGS)
    config.sync_on_commit = True
    yield from running_stack(config)


@dataclass
class Delegate:
    """One delegate of a burst and every answer their registration attempts got."""

    number: int
    email: str
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    answers: list[int | str] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)

    @property
    def registration_id(self) -> str | None:
        return str(self.accepted[0]["id"]) if self.accepted else None


def delegates(count: int) -> list[Delegate]:
    run = uuid.uuid4().hex[:6]
    return [Delegate(n, f"delegate{n}.{run}@school.example") for n in range(count)]


async def register_once(http: httpx.AsyncClient, stack: EmbeddedStack, event_id: str, delegate: Delegate) -> bool:
    """One attempt; True when answered 201. A failed attempt is recorded, never raised."""
    try:
        reply = await http.post(
            f"{stack.config.url('registration')}/api/v1/events/{event_id}/registrations",
            headers={"Idempotency-Key": delegate.key},
            json={
                "name": NAMES[delegate.number % len(NAMES)],
                "email": delegate.email,
                "organisation": SCHOOLS[delegate.number % len(SCHOOLS)],
                "role": "headteacher",
                "consent": True,
            },
        )
    except httpx.HTTPError as exc:
        delegate.answers.append(type(exc).__name__)
        return False
    delegate.answers.append(reply.status_code)
    if reply.status_code == 201:
        delegate.accepted.append(reply.json())
        return True
    return False


async def burst(
    http: httpx.AsyncClient,
    stack: EmbeddedStack,
    event_id: str,
    people: list[Delegate],
    in_flight: int,
    on_answer: Callable[[int], None] = lambda _: None,
) -> None:
    """Each delegate tries once, `in_flight` at a time; `on_answer` hears how many were answered 201 so far."""
    queue = iter(people)
    answered = 0

    async def phone() -> None:
        nonlocal answered
        for delegate in queue:
            if await register_once(http, stack, event_id, delegate):
                answered += 1
                on_answer(answered)

    await asyncio.gather(*(phone() for _ in range(in_flight)))


async def retry_failed(
    http: httpx.AsyncClient, stack: EmbeddedStack, event_id: str, people: list[Delegate], timeout: float = 90
) -> None:
    """Send every failed registration again with its own key until it is answered 201."""
    deadline = time.monotonic() + timeout
    for delegate in people:
        while not delegate.accepted:
            assert time.monotonic() < deadline, f"delegate {delegate.number} never registered: {delegate.answers}"
            if not await register_once(http, stack, event_id, delegate):
                await asyncio.sleep(0.5)


async def organiser_list(http: httpx.AsyncClient, stack: EmbeddedStack, event_id: str) -> list[dict[str, Any]]:
    reply = await http.get(
        f"{stack.config.url('registration')}/api/v1/events/{event_id}/registrations", headers=organiser(stack)
    )
    assert reply.status_code == 200, reply.text
    listed: list[dict[str, Any]] = reply.json()
    return listed


async def tickets_by_registration(stack: EmbeddedStack, event_id: str) -> Counter[str]:
    """Valid tickets per registration id, read from the ticketing database itself."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.config.mongo, serverSelectionTimeoutMS=10000)
    try:
        tickets = client[f"{stack.config.db_prefix}_ticketing"]["tickets"]
        found = await tickets.find({"event_id": event_id, "status": "valid"}, {"registration_id": 1}).to_list(None)
    finally:
        await client.close()
    return Counter(str(ticket["registration_id"]) for ticket in found)


async def every_ticket_issued(stack: EmbeddedStack, event_id: str, ids: set[str], timeout: float) -> Counter[str]:
    async def all_there() -> Counter[str] | None:
        issued = await tickets_by_registration(stack, event_id)
        return issued if ids <= set(issued) else None

    issued: Counter[str] = await eventually(all_there, timeout, "a ticket for every confirmed registration")
    return issued


def confirmations(stack: EmbeddedStack) -> Counter[str]:
    """Confirmation emails in the Maildir, by the recipient the SMTP sink recorded."""
    return Counter(
        {
            address: sum(1 for mail in mails if str(mail["Subject"]).strip() == CONFIRMATION)
            for address, mails in inbox(stack.config.maildir).items()
        }
    )


async def every_confirmation_sent(stack: EmbeddedStack, addresses: set[str], timeout: float) -> Counter[str]:
    async def all_there() -> Counter[str] | None:
        received = confirmations(stack)
        return received if all(received[address] for address in addresses) else None

    received: Counter[str] = await eventually(all_there, timeout, "a confirmation email for every delegate")
    return received


async def mail_settled(http: httpx.AsyncClient, stack: EmbeddedStack, timeout: float = 150) -> None:
    """Wait until no message due now is still pending, being sent or waiting to be retried.

    A message whose sender died after handing it to SMTP is sent again when its lease runs
    out; only once nothing is left in flight can a count of the Maildir show every copy.
    """

    async def nothing_in_flight() -> bool:
        return await unsettled(http, stack) == 0

    await eventually(nothing_in_flight, timeout, "every due message to be settled")


def group_of(stack: EmbeddedStack, service: str) -> str:
    return service + stack.config.extra_env.get("PLENARY_CONSUMER_GROUP_SUFFIX", "")


async def rewind(stack: EmbeddedStack, service: str) -> list[TopicPartition]:
    """Commit offset 0 wherever the service's consumer group has committed: it reads everything again.

    The service must be stopped, so the group has no member that could commit over the rewind.
    Returns the partitions rewound.
    """
    group = group_of(stack, service)
    reader = AIOKafkaConsumer(bootstrap_servers=stack.config.bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        await reader.topics()
        consumed = []
        for topic in topics.ALL:
            for number in sorted(reader.partitions_for_topic(topic) or ()):
                partition = TopicPartition(topic, number)
                if await reader.committed(partition):
                    consumed.append(partition)
    finally:
        await reader.stop()
    assert consumed, f"the {service} group has committed nothing, so there is nothing to replay"
    # The broker takes commits only from a member of the group, so join it, alone, for the rewind.
    member = AIOKafkaConsumer(
        *sorted({partition.topic for partition in consumed}),
        bootstrap_servers=stack.config.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
    )
    await member.start()
    try:

        async def assigned() -> bool:
            await member.getmany(timeout_ms=200)
            return set(consumed) <= member.assignment()

        await eventually(assigned, 60, f"joining the {service} group")
        await member.commit({partition: 0 for partition in consumed})
        rewound = {partition: await member.committed(partition) for partition in consumed}
        assert set(rewound.values()) == {0}, rewound
        return consumed
    finally:
        await member.stop()


async def ends(stack: EmbeddedStack, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """The offset after the last record of each partition, found by reading them to the end."""
    found = dict.fromkeys(partitions, 0)
    names = sorted({partition.topic for partition in partitions})
    async for records in read_to_end(stack.config.bootstrap, names, "fault-suite-ends"):
        last = records[-1]
        partition = TopicPartition(last.topic, last.partition)
        if partition in found:
            found[partition] = max(found[partition], last.offset + 1)
    return found


async def caught_up(stack: EmbeddedStack, service: str, targets: dict[TopicPartition, int], timeout: float) -> None:
    """Wait until the service's group has committed at least `targets` on every partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.config.bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:

        async def there() -> bool:
            committed = await admin.list_consumer_group_offsets(group_of(stack, service), partitions=list(targets))
            return all(tp in committed and committed[tp].offset >= end for tp, end in targets.items())

        await eventually(there, timeout, f"the {service} group to read every record again")
    finally:
        await admin.close()
