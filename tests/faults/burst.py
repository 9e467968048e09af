"""What the fault tests share: a registration burst with retries and outages, and counts of what came of it.

A registration is sent with an Idempotency-Key of its own, so a delegate whose request failed
during a fault can send it again without the risk of being registered twice. The counts read
what a delegate or organiser would see (the organiser list, the Maildir) and, for tickets, the
ticketing database itself, where a doubled ticket could otherwise hide behind the one-ticket API.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from journey import eventually, organiser
from pymongo import AsyncMongoClient

from plenary_kit import topics
from plenary_kit.kafka import read_to_end
from plenary_stack.stack import EmbeddedStack

CONFIRMATION = "Your place at Education Leadership in Challenging Times is confirmed: your ticket"
SCHOOLS = ("Halton Lea Primary", "Knowsley Park Academy", "Wirral Grammar", "St Helens College", "Sefton SEN Centre")
NAMES = ("Siobhán Ní Bhriain", "Tunde Olubayo", "Zoë O'Neill", "Nguyễn Thị Lan", "Pádraig Ó Súilleabháin")

# The services that consume other services' events, one consumer group each.
CONSUMING = ("ticketing", "notifications", "checkin")


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


async def burst_with_outage(
    http: httpx.AsyncClient,
    stack: EmbeddedStack,
    event_id: str,
    people: list[Delegate],
    in_flight: int,
    after: int,
    outage: Callable[[], Awaitable[None]],
) -> None:
    """The burst, with `outage` set off once `after` delegates have been answered 201; returns when both are over."""
    enough = asyncio.Event()

    def count(answered: int) -> None:
        if answered >= after:
            enough.set()

    async def when_enough() -> None:
        await enough.wait()
        await outage()

    await asyncio.gather(burst(http, stack, event_id, people, in_flight, count), when_enough())


def registered_so_far(people: list[Delegate]) -> int:
    """How many of the delegates have been answered 201 so far."""
    return sum(1 for person in people if person.accepted)


def registrations(people: list[Delegate]) -> list[dict[str, Any]]:
    """Each delegate's registration, as their first 201 answer gave it; every one of them must have had one."""
    assert all(person.accepted for person in people), Counter(str(p.answers) for p in people if not p.accepted)
    return [person.accepted[0] for person in people]


def registration_ids(people: list[Delegate]) -> set[str]:
    return {str(registration["id"]) for registration in registrations(people)}


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


def inbox(maildir: Path) -> dict[str, list[EmailMessage]]:
    """Every message in the Maildir, by the SMTP recipient the sink recorded for it."""
    by_recipient: dict[str, list[EmailMessage]] = {}
    for folder in ("new", "cur"):
        directory = maildir / folder
        for path in sorted(directory.iterdir()) if directory.is_dir() else []:
            parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            for recipient in parsed.get_all("Delivered-To", []):
                by_recipient.setdefault(str(recipient).strip(), []).append(parsed)
    return by_recipient


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


async def everything_delivered(stack: EmbeddedStack, event_id: str, people: list[Delegate], timeout: float) -> None:
    """Wait until every delegate, each answered 201, has a ticket and a confirmation email."""
    await every_ticket_issued(stack, event_id, registration_ids(people), timeout)
    await every_confirmation_sent(stack, {person.email for person in people}, timeout)


async def unsettled(http: httpx.AsyncClient, stack: EmbeddedStack) -> int:
    """Messages still waiting to go out now (scheduled reminders and thank-yous are not due yet)."""
    count = 0
    for status in ("pending", "sending", "retrying"):
        reply = await http.get(
            f"{stack.config.url('notifications')}/api/v1/notifications",
            params={"status": status},
            headers=organiser(stack),
        )
        assert reply.status_code == 200, reply.text
        now = datetime.now(UTC)
        count += sum(1 for row in reply.json() if not row["due_at"] or datetime.fromisoformat(row["due_at"]) <= now)
    return count


async def mail_settled(http: httpx.AsyncClient, stack: EmbeddedStack, timeout: float = 150) -> None:
    """Wait until no message due now is still pending, being sent or waiting to be retried.

    A message whose sender died after handing it to SMTP is sent again when its lease runs
    out; only once nothing is left in flight can a count of the Maildir show every copy.
    """

    async def nothing_in_flight() -> bool:
        return await unsettled(http, stack) == 0

    await eventually(nothing_in_flight, timeout, "every due message to be settled")


async def assert_one_ticket_and_one_email_each(
    http: httpx.AsyncClient, stack: EmbeddedStack, event_id: str, people: list[Delegate]
) -> None:
    """Once the mail has settled: exactly one valid ticket per registration and one confirmation per delegate."""
    await mail_settled(http, stack)
    tickets = await tickets_by_registration(stack, event_id)
    assert set(tickets) == registration_ids(people)
    assert {rid: n for rid, n in tickets.items() if n != 1} == {}
    received = confirmations(stack)
    assert {person.email: received[person.email] for person in people if received[person.email] != 1} == {}


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
