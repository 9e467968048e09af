"""The sender against the real document server and an SMTP server that can hold one message back.

A slow delivery (a mail server taking its time over one message) must hold up only that message:
emails queued meanwhile go out at once, in the places free beside it.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pymongo import AsyncMongoClient

from notifications.compose import Composer
from notifications.domain import Kind, MessageContent, Status
from notifications.handlers import new_message
from notifications.rate import SendRate
from notifications.sender import Sender
from notifications.settings import NotificationSettings
from notifications.store import Store
from plenary_kit import events, mongo, topics
from plenary_kit.outbox import Outbox
from plenary_stack.processes import free_port
from plenary_stack.stack import EmbeddedStack

pytestmark = pytest.mark.timeout(120)

SLOW = "slow.reader@school.example"
EVENT = events.EventSummary(
    id=str(uuid.uuid4()),
    slug="leadership-symposium",
    title="Education Leadership in Challenging Times",
    venue="The Spine, Liverpool",
    starts_at=datetime(2027, 3, 12, 9, 30, tzinfo=UTC),
    ends_at=datetime(2027, 3, 12, 16, 0, tzinfo=UTC),
    timezone="Europe/London",
)


class HoldOne:
    """Accepts every message, but keeps the one to SLOW waiting at DATA until released."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.release = threading.Event()
        self.accepted: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        recipient = envelope.rcpt_tos[0]
        if recipient == SLOW:
            self.holding.set()
            await asyncio.to_thread(self.release.wait, 60)
        self.accepted.append(recipient)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Controller, HoldOne]]:
    handler = HoldOne()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, handler
    finally:
        handler.release.set()
        controller.stop()


@pytest.fixture
async def sender(
    infrastructure: EmbeddedStack, smtp: tuple[Controller, HoldOne], tmp_path: Path
) -> AsyncIterator[tuple[Sender, Store]]:
    controller, _ = smtp
    client: AsyncMongoClient[mongo.Document] = AsyncMongoClient(infrastructure.config.mongo, tz_aware=True)
    db = client[f"plenary_test_sender_{uuid.uuid4().hex[:8]}"]
    store = Store(db)
    await store.prepare()
    outbox = Outbox(db, topics.NOTIFICATIONS)
    await outbox.prepare(retention_days=1)
    settings = NotificationSettings(
        smtp_host=controller.hostname, smtp_port=controller.port, plenary_var=tmp_path, notifications_send_rate=0
    )
    running = Sender(
        client, store, outbox, Composer(settings.mail_from), settings, SendRate(store.send_windows, 0), concurrency=4
    )
    loop = asyncio.create_task(running.run())
    try:
        yield running, store
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await client.drop_database(db.name)
        await client.close()


async def queue(store: Store, sender: Sender, address: str) -> str:
    content = MessageContent(
        registration_id=str(uuid.uuid4()),
        delegate=events.Delegate(name="Delegate", email=address, organisation="Halton Primary", role="Teacher"),
        event=EVENT,
        waitlist_position=1,
    )
    message = new_message(None, None, Kind.WAITLISTED, "1", content, datetime.now(UTC))
    await store.messages.insert_one(message)
    sender.nudge([message["_id"]])
    return str(message["_id"])


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_message_held_by_the_mail_server_does_not_hold_up_those_queued_after_it(
    sender: tuple[Sender, Store], smtp: tuple[Controller, HoldOne]
) -> None:
    running, store = sender
    _, server = smtp

    async def status(key: str) -> str | None:
        found = await store.message(key)
        return None if found is None else str(found["status"])

    slow = await queue(store, running, SLOW)
    assert await asyncio.to_thread(server.holding.wait, 30), "the slow message never reached the mail server"

    prompt = [await queue(store, running, f"delegate{n}@school.example") for n in range(6)]

    async def prompt_ones_sent() -> bool:
        return [await status(key) for key in prompt] == [Status.SENT] * len(prompt)

    await wait_for(prompt_ones_sent, 20, "the messages queued after the held one to be sent")
    # Sent while the first was still held at the mail server, not after it.
    assert await status(slow) == Status.SENDING
    expected = sorted(f"delegate{n}@school.example" for n in range(6))
    assert sorted(server.accepted) == expected

    server.release.set()

    async def slow_sent() -> bool:
        return await status(slow) == Status.SENT

    await wait_for(slow_sent, 20, "the held message to be sent once released")
    assert server.accepted.count(SLOW) == 1
