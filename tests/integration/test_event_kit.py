"""The shared event kit against the real broker and document server: outbox, relay, consumer, dead letters."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from prometheus_client import REGISTRY
from pymongo.asynchronous.database import AsyncDatabase

from plenary_kit import events, topics
from plenary_kit.consumer import Batched, Consumer
from plenary_kit.envelope import Envelope
from plenary_kit.kafka import Publisher
from plenary_kit.mongo import Document, Session, connect, in_transaction, insert_missing, set_fields
from plenary_kit.outbox import Outbox, Relay, replay
from plenary_stack.stack import EmbeddedStack

SUMMARY = events.EventSummary(
    id=str(uuid.uuid4()),
    slug="future-heads",
    title="Future Heads Programme",
    venue="Halton Lea Library",
    starts_at=datetime(2027, 1, 20, 9, 0, tzinfo=UTC),
    ends_at=datetime(2027, 1, 20, 15, 0, tzinfo=UTC),
    timezone="Europe/London",
)


def cancelled_event(name: str = "Tomás O'Neill") -> Envelope:
    registration_id = str(uuid.uuid4())
    data = events.RegistrationCancelled(
        registration_id=registration_id,
        event=SUMMARY,
        delegate=events.Delegate(name=name, email="t@school.example", organisation="Sefton High", role="teacher"),
        previous_status="confirmed",
    )
    return Envelope.new(data, source="registration", subject=registration_id, correlation_id=str(uuid.uuid4()))


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture
async def kit(infrastructure: EmbeddedStack) -> AsyncIterator[tuple[EmbeddedStack, str]]:
    yield infrastructure, f"kit_{uuid.uuid4().hex[:10]}"


async def read_topic(
    bootstrap: str, topic: str, want: int, timeout: float = 20.0
) -> list[tuple[bytes, dict[str, bytes]]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"reader-{uuid.uuid4()}", auto_offset_reset="earliest",
        enable_auto_commit=False, session_timeout_ms=2000, heartbeat_interval_ms=300,
    )
    await consumer.start()
    seen: list[tuple[bytes, dict[str, bytes]]] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(seen) < want and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                seen += [(r.value or b"", dict(r.headers)) for r in records]
    finally:
        await consumer.stop()
    return seen


async def test_relay_publishes_committed_events_in_order_and_marks_them_sent(kit: tuple[EmbeddedStack, str]) -> None:
    stack, db_name = kit
    client = connect(stack.config.mongo)
    outbox = Outbox(client[db_name], topics.REGISTRATION)
    await outbox.prepare(retention_days=1)
    publisher = Publisher(stack.config.bootstrap)
    marker = str(uuid.uuid4())
    written = [cancelled_event(name=f"{marker}-{i}") for i in range(30)]

    async def write(session: Session) -> None:
        await outbox.add(session, *written)

    # Stored times keep milliseconds: a millisecond back, `before` is surely earlier than the rows.
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    await in_transaction(client, write)
    relay = asyncio.create_task(Relay(outbox, publisher, "test").run())
    try:
        await eventually(lambda: _none_pending(outbox))
        received = await read_topic(stack.config.bootstrap, topics.REGISTRATION, want=10_000, timeout=4)
        ours = [Envelope.from_bytes(value) for value, _ in received if marker.encode() in value]
        assert [e.id for e in ours if e.subject == written[0].subject] == [written[0].id]
        assert sorted(e.id for e in ours) == sorted(e.id for e in written)
        assert all(h["ce_type"] == b"registration.cancelled" for value, h in received if marker.encode() in value)

        replayed = await replay(
            outbox, publisher, datetime.now(UTC) - timedelta(minutes=5), datetime.now(UTC) + timedelta(minutes=1)
        )
        assert replayed == 30
        # The window is the rows' creation time, to the microsecond, and the type narrows it.
        assert await replay(outbox, publisher, before - timedelta(minutes=5), before) == 0
        after = datetime.now(UTC) + timedelta(minutes=1)
        assert await replay(outbox, publisher, before, after, "registration.cancelled") == 30
        assert await replay(outbox, publisher, before, after, "registration.confirmed") == 0
    finally:
        relay.cancel()
        await publisher.stop()
        await client.close()


async def _none_pending(outbox: Outbox) -> bool:
    return await outbox.count_pending() == 0


async def test_an_event_delivered_twice_is_applied_once(kit: tuple[EmbeddedStack, str]) -> None:
    stack, db_name = kit
    client = connect(stack.config.mongo)
    db = client[db_name]
    publisher = Publisher(stack.config.bootstrap)

    async def count(envelope: Envelope, data: events.EventData, session: Session) -> None:
        await db["applied"].update_one({"_id": envelope.subject}, {"$inc": {"times": 1}}, upsert=True, session=session)

    consumer = Consumer(
        f"twice-{uuid.uuid4().hex[:6]}", {"registration.cancelled": count}, client=client, db=db,
        publisher=publisher, bootstrap_servers=stack.config.bootstrap, session_timeout_ms=2000,
        heartbeat_interval_ms=300,
    )
    await consumer.prepare()
    event = cancelled_event()
    producer = AIOKafkaProducer(bootstrap_servers=stack.config.bootstrap, acks="all")
    await producer.start()
    running = asyncio.create_task(consumer.run())
    try:
        for _ in range(3):
            await producer.send_and_wait(topics.REGISTRATION, event.to_bytes(), key=event.subject.encode())
        await eventually(lambda: _applied(db, event.subject))
        await eventually(lambda: _handled(consumer.name, "duplicate", 2))
        processed = await db["processed_events"].count_documents({"_id": f"{consumer.name}:{event.id}"})
        doc = await db["applied"].find_one({"_id": event.subject})
        assert doc is not None and doc["times"] == 1
        assert processed == 1
    finally:
        running.cancel()
        await producer.stop()
        await publisher.stop()
        await client.close()


async def _applied(db: AsyncDatabase[Document], subject: str) -> bool:
    return await db["applied"].find_one({"_id": subject}) is not None


async def _handled(consumer: str, outcome: str, at_least: int) -> bool:
    counted = REGISTRY.get_sample_value(
        "plenary_events_handled_total",
        {"consumer": consumer, "type": "registration.cancelled", "outcome": outcome},
    )
    return (counted or 0) >= at_least


async def test_poison_and_malformed_events_go_to_the_dead_letter_topic_and_the_line_moves_on(
    kit: tuple[EmbeddedStack, str],
) -> None:
    stack, db_name = kit
    client = connect(stack.config.mongo)
    db = client[db_name]
    publisher = Publisher(stack.config.bootstrap)
    # Names unique to this run: a real Kafka may still hold an earlier run's poison.
    pill = f"Poison Pill {uuid.uuid4().hex[:6]}"
    poison, good = cancelled_event(name=pill), cancelled_event(name="Nguyễn Thị Lan")
    attempts: list[str] = []

    async def handle(envelope: Envelope, data: events.EventData, session: Session) -> None:
        assert isinstance(data, events.RegistrationCancelled)
        attempts.append(data.delegate.name)
        if data.delegate.name == pill:
            raise ValueError("cannot handle this delegate")
        await db["applied"].insert_one({"_id": envelope.subject}, session=session)

    consumer = Consumer(
        f"dlq-{uuid.uuid4().hex[:6]}", {"registration.cancelled": handle}, client=client, db=db,
        publisher=publisher, bootstrap_servers=stack.config.bootstrap, max_attempts=3, retry_base_seconds=0.01,
        session_timeout_ms=2000, heartbeat_interval_ms=300,
    )
    await consumer.prepare()
    producer = AIOKafkaProducer(bootstrap_servers=stack.config.bootstrap, acks="all")
    await producer.start()
    running = asyncio.create_task(consumer.run())
    try:
        # All three share a key, so they share a partition and arrive in this order.
        for value in (b'{"not": "an event"', poison.to_bytes(), good.to_bytes()):
            await producer.send_and_wait(topics.REGISTRATION, value, key=b"same-delegate")
        await eventually(lambda: _applied(db, good.subject))

        assert attempts.count(pill) == 3
        dead_letters = topics.dead_letter(topics.REGISTRATION)
        letters = await read_topic(stack.config.bootstrap, dead_letters, want=10_000, timeout=4)
        ours = [(value, headers) for value, headers in letters if headers.get("dlq_consumer") == consumer.name.encode()]
        assert len(ours) == 2
        malformed, poisoned = ours
        assert malformed[0] == b'{"not": "an event"'
        assert malformed[1]["dlq_error"].startswith(b"MalformedEvent")
        assert Envelope.from_bytes(poisoned[0]).id == poison.id
        assert poisoned[1]["dlq_error"] == b"ValueError: cannot handle this delegate"
        assert poisoned[1]["dlq_attempts"] == b"3"
        assert poisoned[1]["dlq_topic"] == topics.REGISTRATION.encode()
    finally:
        running.cancel()
        await producer.stop()
        await publisher.stop()
        await client.close()



def _record(envelope: Envelope, offset: int) -> ConsumerRecord[bytes, bytes]:
    value = envelope.to_bytes()
    return ConsumerRecord(
        topic=topics.REGISTRATION, partition=0, offset=offset, timestamp=0, timestamp_type=0,
        key=envelope.subject.encode(), value=value, checksum=None, serialized_key_size=0,
        serialized_value_size=len(value), headers=(),
    )


def _erased(registration_id: str) -> Envelope:
    data = events.RegistrationErased(registration_id=registration_id, event_id=SUMMARY.id)
    return Envelope.new(data, source="registration", subject=registration_id, correlation_id=str(uuid.uuid4()))


async def test_a_batched_handler_gets_each_run_of_its_events_together_in_order(kit: tuple[EmbeddedStack, str]) -> None:
    stack, db_name = kit
    client = connect(stack.config.mongo)
    db = client[db_name]
    publisher = Publisher(stack.config.bootstrap)
    calls: list[list[str]] = []

    async def cancel_many(items: list[tuple[Envelope, events.EventData]], session: Session) -> None:
        calls.append([envelope.subject for envelope, _ in items])
        await db["applied"].insert_many([{"_id": envelope.subject} for envelope, _ in items], session=session)

    async def erase(envelope: Envelope, data: events.EventData, session: Session) -> None:
        calls.append([f"erased {envelope.subject}"])
        await db["applied"].insert_one({"_id": f"erased {envelope.subject}"}, session=session)

    consumer = Consumer(
        f"runs-{uuid.uuid4().hex[:6]}", {"registration.cancelled": Batched(cancel_many), "registration.erased": erase},
        client=client, db=db, publisher=publisher, bootstrap_servers=stack.config.bootstrap,
    )
    await consumer.prepare()
    first, second = [cancelled_event() for _ in range(3)], [cancelled_event() for _ in range(2)]
    between = _erased(first[0].subject)
    try:
        await consumer.handle_records([_record(e, n) for n, e in enumerate([*first, between, *second])])
        # Delivered again, nothing is applied twice.
        await consumer.handle_records([_record(e, n) for n, e in enumerate([*first, between, *second])])

        assert calls == [
            [e.subject for e in first],
            [f"erased {between.subject}"],
            [e.subject for e in second],
        ]
        assert await db["applied"].count_documents({}) == 6
    finally:
        await publisher.stop()
        await client.close()


async def test_a_failing_run_is_applied_event_by_event_so_only_the_poison_is_set_aside(
    kit: tuple[EmbeddedStack, str],
) -> None:
    stack, db_name = kit
    client = connect(stack.config.mongo)
    db = client[db_name]
    publisher = Publisher(stack.config.bootstrap)
    crowd = [cancelled_event() for _ in range(4)]
    poison = crowd[2].subject
    sizes: list[int] = []

    async def cancel_many(items: list[tuple[Envelope, events.EventData]], session: Session) -> None:
        sizes.append(len(items))
        if any(envelope.subject == poison for envelope, _ in items):
            raise ValueError("cannot handle this delegate")
        await db["applied"].insert_many([{"_id": envelope.subject} for envelope, _ in items], session=session)

    consumer = Consumer(
        f"split-{uuid.uuid4().hex[:6]}", {"registration.cancelled": Batched(cancel_many)}, client=client, db=db,
        publisher=publisher, bootstrap_servers=stack.config.bootstrap, max_attempts=2, retry_base_seconds=0.01,
    )
    await consumer.prepare()
    try:
        await consumer.handle_records([_record(e, n) for n, e in enumerate(crowd)])

        applied = {row["_id"] async for row in db["applied"].find({})}
        assert applied == {e.subject for e in crowd} - {poison}
        # The run of four, then each on its own: the poison has used one of its two attempts in the run.
        assert sizes == [4, 1, 1, 1, 1]
        assert await db["processed_events"].count_documents({"_id": f"{consumer.name}:{crowd[2].id}"}) == 0
    finally:
        await publisher.stop()
        await client.close()


async def test_a_fetch_across_partitions_is_applied_together_and_every_partition_committed(
    kit: tuple[EmbeddedStack, str],
) -> None:
    """A burst lands a few events on each of several partitions: one transaction for them, not one each."""
    stack, db_name = kit
    client = connect(stack.config.mongo)
    db = client[db_name]
    publisher = Publisher(stack.config.bootstrap)
    name = f"fetch-{uuid.uuid4().hex[:6]}"
    calls: list[list[str]] = []

    async def cancel_many(items: list[tuple[Envelope, events.EventData]], session: Session) -> None:
        calls.append([envelope.subject for envelope, _ in items])
        await db["applied"].insert_many([{"_id": envelope.subject} for envelope, _ in items], session=session)

    # The group starts where the topic ends now, so its first fetch holds this test's events only.
    marking = AIOKafkaConsumer(
        bootstrap_servers=stack.config.bootstrap, group_id=name, enable_auto_commit=False,
        session_timeout_ms=2000, heartbeat_interval_ms=300,
    )
    await marking.start()
    try:
        partitions = registration_partitions(marking)
        marking.assign(partitions)
        await marking.seek_to_end(*partitions)
        await marking.commit({tp: await marking.position(tp) for tp in partitions})
    finally:
        await marking.stop()
    producer = AIOKafkaProducer(bootstrap_servers=stack.config.bootstrap, acks="all")
    await producer.start()
    partition_of: dict[str, int] = {}
    try:
        for event in [cancelled_event() for _ in range(24)]:
            sent = await producer.send_and_wait(topics.REGISTRATION, event.to_bytes(), key=event.subject.encode())
            partition_of[event.subject] = sent.partition
    finally:
        await producer.stop()
    assert len(set(partition_of.values())) > 2, "24 delegates' events spread over the topic's partitions"

    consumer = Consumer(
        name, {"registration.cancelled": Batched(cancel_many)}, client=client, db=db, publisher=publisher,
        bootstrap_servers=stack.config.bootstrap, session_timeout_ms=2000, heartbeat_interval_ms=300,
    )
    await consumer.prepare()
    running = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: _all_applied(db, list(partition_of)), timeout=30)
        # Committed offsets are read back before the consumer goes, so the group is still stable.
        await eventually(lambda: _committed_to_end(stack.config.bootstrap, name), timeout=10)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await publisher.stop()
        await client.close()

    # Other tests' cancellations published meanwhile are applied too; only these delegates' count here.
    ours = [kept for call in calls if (kept := [s for s in call if s in partition_of])]
    assert sorted(s for call in ours for s in call) == sorted(partition_of)
    # Each call is one run in one transaction; a run spans partitions, so there are fewer runs than partitions.
    assert any(len({partition_of[s] for s in call}) > 1 for call in ours), ours
    assert len(ours) < len(set(partition_of.values()))


def registration_partitions(consumer: AIOKafkaConsumer) -> list[TopicPartition]:
    numbers = consumer.partitions_for_topic(topics.REGISTRATION) or set()
    return [TopicPartition(topics.REGISTRATION, number) for number in sorted(numbers)]


async def _all_applied(db: AsyncDatabase[Document], subjects: list[str]) -> bool:
    return await db["applied"].count_documents({"_id": {"$in": subjects}}) == len(subjects)


async def _committed_to_end(bootstrap: str, group: str) -> bool:
    """Whether the group's committed offset on every partition of the topic is the partition's end."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    admin = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    await admin.start()
    try:
        partitions = registration_partitions(reader)
        ends = await reader.end_offsets(partitions)
        committed = [await admin.committed(tp) for tp in partitions]
        return committed == [ends[tp] for tp in partitions]
    finally:
        await admin.stop()
        await reader.stop()


async def test_set_fields_creates_what_is_missing_and_changes_only_the_named_fields_of_the_rest(
    kit: tuple[EmbeddedStack, str],
) -> None:
    stack, db_name = kit
    client = connect(stack.config.mongo)
    projection = client[db_name]["projection"]
    try:
        await projection.insert_one({"_id": "kept", "name": "Amara Okafor", "role": "deputy head", "counted": True})
        changes = {
            "kept": {"role": "headteacher", "version": 7},
            "new": {"name": "Siobhan Kelly", "version": 8, "updated_at": datetime.now(UTC)},
        }

        async def work(session: Session) -> dict[str, Document]:
            return await set_fields(projection, changes, session, on_insert={"counted": False})

        returned = await in_transaction(client, work)
        stored = {row["_id"]: row async for row in projection.find({})}
        assert stored["kept"] == {
            "_id": "kept", "name": "Amara Okafor", "role": "headteacher", "counted": True, "version": 7
        }
        assert stored["new"] == {
            "_id": "new", "counted": False, "name": "Siobhan Kelly", "version": 8,
            "updated_at": stored["new"]["updated_at"],
        }
        # What it returns is what a read returns, times to the stored millisecond included.
        assert returned == stored
        with pytest.raises(ValueError, match="top-level"):
            await in_transaction(client, lambda session: set_fields(projection, {"kept": {"a.b": 1}}, session))
    finally:
        await client.close()


async def test_set_fields_meeting_a_document_created_concurrently_runs_again_and_keeps_both_writes(
    kit: tuple[EmbeddedStack, str],
) -> None:
    stack, db_name = kit
    client = connect(stack.config.mongo)
    projection = client[db_name]["projection"]
    first_written, let_first_commit = asyncio.Event(), asyncio.Event()
    attempts = 0

    async def first(session: Session) -> None:
        await set_fields(projection, {"shared": {"ticket_id": "T-1"}}, session, on_insert={"counted": False})
        first_written.set()
        await let_first_commit.wait()

    async def second(session: Session) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 2:
            # The first attempt met the first transaction's uncommitted document.
            let_first_commit.set()
        await set_fields(projection, {"shared": {"name": "Kwame Asante"}}, session, on_insert={"counted": False})

    try:
        one = asyncio.create_task(in_transaction(client, first))
        await first_written.wait()
        await asyncio.wait_for(in_transaction(client, second), 60)
        await one
        assert attempts >= 2
        assert await projection.find_one({"_id": "shared"}) == {
            "_id": "shared", "counted": False, "ticket_id": "T-1", "name": "Kwame Asante"
        }
    finally:
        await client.close()


async def test_insert_missing_inserts_only_new_ids_and_leaves_the_rest_as_they_are(
    kit: tuple[EmbeddedStack, str],
) -> None:
    stack, db_name = kit
    client = connect(stack.config.mongo)
    messages = client[db_name]["messages"]
    try:
        await messages.insert_one({"_id": "sent", "status": "sent"})
        queued = [
            {"_id": "sent", "status": "pending"},
            {"_id": "fresh", "status": "pending", "kind": "confirmation"},
            {"_id": "fresh", "status": "pending", "kind": "a repeat within the call"},
        ]

        async def work(session: Session) -> set[Any]:
            return await insert_missing(messages, queued, session)

        assert await in_transaction(client, work) == {"fresh"}
        assert {row["_id"]: row async for row in messages.find({})} == {
            "sent": {"_id": "sent", "status": "sent"},
            "fresh": {"_id": "fresh", "status": "pending", "kind": "confirmation"},
        }
    finally:
        await client.close()


async def test_the_relay_deletes_rows_sent_before_the_retention_period_and_keeps_the_rest(
    kit: tuple[EmbeddedStack, str],
) -> None:
    stack, db_name = kit
    client = connect(stack.config.mongo)
    outbox = Outbox(client[db_name], topics.REGISTRATION)
    await outbox.prepare(retention_days=1)
    rows = client[db_name]["outbox"]
    publisher = Publisher(stack.config.bootstrap)
    now = datetime.now(UTC)
    try:
        assert "sent_at_ttl" not in await rows.index_information()
        written = [cancelled_event() for _ in range(5)]
        await in_transaction(client, lambda session: outbox.add(session, *written))
        ids = [row["_id"] async for row in rows.find({}).sort("_id", 1)]
        # Two sent two days ago, one an hour ago; two never sent, one of them written long ago.
        await rows.update_many({"_id": {"$in": ids[:2]}}, {"$set": {"sent_at": now - timedelta(days=2)}})
        await rows.update_one({"_id": ids[2]}, {"$set": {"sent_at": now - timedelta(hours=1)}})
        await rows.update_one({"_id": ids[3]}, {"$set": {"created_at": now - timedelta(days=40)}})

        assert await outbox.purge(now) == 2
        assert [row["_id"] async for row in rows.find({}).sort("_id", 1)] == ids[2:]
        assert await outbox.purge(now) == 0

        # A relay purges when it starts, then sends what is pending.
        await rows.update_one({"_id": ids[2]}, {"$set": {"sent_at": now - timedelta(days=3)}})
        relay = asyncio.create_task(Relay(outbox, publisher, "test").run())
        try:
            await eventually(lambda: _none_pending(outbox))
            remaining = [row async for row in rows.find({}).sort("_id", 1)]
            assert [row["_id"] for row in remaining] == ids[3:]
            assert all(row["sent_at"] is not None for row in remaining)
        finally:
            relay.cancel()
    finally:
        await publisher.stop()
        await client.close()
