"""Claims and sent marks against the real document server.

A sender that dies while marking a message sent leaves its transaction open on the document server.
The server cannot tell a dead client's transaction from a slow one: it keeps it, holding the
message, until it expires (a minute idle) and is reaped. The message falls due again when its
lease ends, and the sender that takes it over has to wait the stale transaction out, then take
the message, rather than wait forever.

Marks that fall due together are written together, each with its event; a message taken over by
another sender meanwhile is neither marked nor announced.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from notifications.domain import LEASE, Status
from notifications.sender import SentMarks
from notifications.store import Store
from plenary_kit import topics
from plenary_kit.envelope import Envelope
from plenary_kit.outbox import Outbox
from plenary_stack.stack import EmbeddedStack

pytestmark = pytest.mark.timeout(300)

Client = AsyncMongoClient[dict[str, Any]]


@pytest.fixture
async def databases(infrastructure: EmbeddedStack) -> AsyncIterator[tuple[Client, Client, str]]:
    """The sender's client, a client standing for the sender that died, and a database of this test's own."""
    alive: Client = AsyncMongoClient(infrastructure.config.mongo, tz_aware=True)
    dead: Client = AsyncMongoClient(infrastructure.config.mongo, tz_aware=True)
    try:
        yield alive, dead, f"plenary_test_claims_{uuid.uuid4().hex[:8]}"
    finally:
        await dead.close()
        await alive.close()


async def test_a_claim_waits_out_the_transaction_a_dead_sender_left_open(
    databases: tuple[Client, Client, str],
) -> None:
    alive, dead, name = databases
    store = Store(alive[name])
    await store.prepare()
    now = datetime.now(UTC)
    key = f"{uuid.uuid4()}:confirmation:{uuid.uuid4()}"
    # Claimed by the sender that died; its lease has just run out.
    await store.messages.insert_one(
        {
            "_id": key, "kind": "confirmation", "registration_id": str(uuid.uuid4()), "status": Status.SENDING,
            "claim": "the-dead-sender", "attempts": 1, "created_at": now - LEASE,
            "next_attempt_at": now - timedelta(seconds=1), "updated_at": now - LEASE,
        }
    )
    # Its sent mark: begun, neither committed nor aborted. Its session stays open, as the server sees a
    # client that vanished mid-transaction.
    session = dead.start_session()
    await session.start_transaction()
    await dead[name]["messages"].update_one(
        {"_id": key}, {"$set": {"status": Status.SENT, "sent_at": now}}, session=session
    )

    started = time.monotonic()
    claimed = await asyncio.wait_for(store.claim([key], now, now + LEASE, "the-next-sender"), timeout=200)
    waited = time.monotonic() - started

    # The stale mark never committed, so the message is still unsent, and now the next sender's.
    assert [(m["claim"], m["status"], m["attempts"]) for m in claimed] == [("the-next-sender", Status.SENDING, 2)]
    print(f"claimed after waiting {waited:.1f} s for the stale transaction")
    await session.end_session()


def claimed_message(claim: str, now: datetime, n: int) -> dict[str, Any]:
    return {
        "_id": f"{uuid.uuid4()}:confirmation:{n}", "kind": "confirmation", "registration_id": str(uuid.uuid4()),
        "status": Status.SENDING, "claim": claim, "attempts": 1, "created_at": now,
        "next_attempt_at": now + LEASE, "updated_at": now, "correlation_id": str(uuid.uuid4()),
    }


async def sent_events(db: Any) -> Counter[str]:
    """How many notification.sent events the outbox holds for each message."""
    rows = await db["outbox"].find({"type": "notification.sent"}).to_list(None)
    return Counter(Envelope.from_bytes(row["value"]).data["message_id"] for row in rows)


async def test_marks_that_fall_due_together_are_written_together_each_with_its_event(
    databases: tuple[Client, Client, str],
) -> None:
    alive, _, name = databases
    store = Store(alive[name])
    await store.prepare()
    marks = SentMarks(alive, store, Outbox(alive[name], topics.NOTIFICATIONS))
    now = datetime.now(UTC)
    # A sender's batch whose SMTP servers all answered at once.
    batch = [claimed_message("sender-a", now, n) for n in range(12)]
    await store.messages.insert_many(batch)

    marked = await asyncio.gather(*(marks.mark(message) for message in batch))

    assert all(at is not None for at in marked)
    # All fell due before the first was written, so they went in one transaction, with one time.
    assert len(set(marked)) == 1, marked
    stored = await store.messages.find({"_id": {"$in": [m["_id"] for m in batch]}}).to_list(None)
    assert {(m["status"], m.get("claim")) for m in stored} == {(Status.SENT, None)}
    assert await sent_events(alive[name]) == Counter(m["_id"] for m in batch)


async def test_a_message_taken_over_in_a_batch_of_marks_is_left_alone_and_the_rest_are_marked(
    databases: tuple[Client, Client, str],
) -> None:
    alive, _, name = databases
    store = Store(alive[name])
    await store.prepare()
    marks = SentMarks(alive, store, Outbox(alive[name], topics.NOTIFICATIONS))
    now = datetime.now(UTC)
    batch = [claimed_message("sender-a", now, n) for n in range(6)]
    await store.messages.insert_many(batch)
    # Its lease ran out while the SMTP server was slow, and another sender holds it now.
    taken = batch[3]
    await store.messages.update_one({"_id": taken["_id"]}, {"$set": {"claim": "sender-b"}})

    marked = await asyncio.gather(*(marks.mark(message) for message in batch))

    assert [at is None for at in marked] == [m is taken for m in batch]
    stored = {m["_id"]: m for m in await store.messages.find({}).to_list(None)}
    assert (stored[taken["_id"]]["status"], stored[taken["_id"]]["claim"]) == (Status.SENDING, "sender-b")
    assert all(stored[m["_id"]]["status"] == Status.SENT for m in batch if m is not taken)
    assert await sent_events(alive[name]) == Counter(m["_id"] for m in batch if m is not taken)
