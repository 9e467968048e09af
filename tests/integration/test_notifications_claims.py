"""A sender that dies while marking a message sent leaves its transaction open on the document server.

The server cannot tell a dead client's transaction from a slow one: it keeps it, holding the
message, until it expires (a minute idle) and is reaped. The message falls due again when its
lease ends, and the sender that takes it over has to wait the stale transaction out, then take
the message, rather than wait forever.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from notifications.domain import LEASE, Status
from notifications.store import Store
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
