"""Turns reminders and thank-yous that have fallen due into messages, once each, however often it runs.

A confirmed delegate's projection carries `reminder_due_at` and `thank_you_due_at` (set by
the handlers with the registration's other facts, removed on cancellation or erasure). This
loop finds projections whose time has come and, in one transaction per registration, queues
the message under its idempotency key (registration, kind, the event time it is about) and
clears the time. Everything is in MongoDB, so a schedule outlives restarts; two schedulers
racing for one registration queue one message, because the key is taken by the first.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from notifications import domain
from notifications.domain import DUE_FIELDS, Kind
from notifications.handlers import new_message
from notifications.settings import NotificationSettings
from notifications.store import Store
from plenary_kit.logs import get_logger
from plenary_kit.mongo import Document, Session, in_transaction

log = get_logger(__name__)

BATCH = 100


class Scheduler:
    def __init__(
        self,
        client: AsyncMongoClient[Document],
        store: Store,
        settings: NotificationSettings,
        *,
        on_enqueued: Callable[[Iterable[str]], None] = lambda keys: None,
        poll_seconds: float = 1.0,
    ) -> None:
        self._client = client
        self._store = store
        self._settings = settings
        self._on_enqueued = on_enqueued
        self._poll = poll_seconds

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                busy = await self.queue_due()
                backoff = 0.5
            except PyMongoError as exc:
                log.warning("scheduler_waiting_for_database", error=type(exc).__name__, retry_in=backoff)
                busy = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            if not busy:
                # Jitter keeps several service processes from polling in step.
                await asyncio.sleep(self._poll * random.uniform(0.75, 1.25))

    async def queue_due(self) -> bool:
        """Queue every reminder and thank-you due now, a batch at a time; True if a full batch was seen."""
        now = datetime.now(UTC)
        full = False
        for kind, field in DUE_FIELDS.items():
            due = await self._store.due_registrations(field, now, BATCH)
            for registration in due:
                await self._queue_one(registration["_id"], kind, field, registration[field], now)
            full = full or len(due) == BATCH
        return full

    async def _queue_one(self, registration_id: str, kind: Kind, field: str, seen: datetime, now: datetime) -> None:
        settings = self._settings

        async def work(session: Session) -> str | None:
            if not await self._store.clear_due(registration_id, field, seen, session):
                return None  # another scheduler took it, or the event moved meanwhile
            projection = await self._store.projection(registration_id, session)
            due = domain.schedule(projection or {}, settings.reminder_lead, settings.thank_you_delay)
            scheduled = next((item for item in due if item.kind == kind), None)
            # Checked now, not only when scheduled: the delegate may have cancelled since.
            if projection is None or scheduled is None or not domain.still_timely(scheduled, projection, now):
                return "not_due"
            public_url = settings.plenary_public_url
            content = domain.confirmation_content(projection, public_url) or domain.content(projection, public_url)
            message = new_message(
                None, None, kind, scheduled.version, content, now, due_at=scheduled.due_at
            )
            return "queued" if await self._store.enqueue(message, session) else "already_queued"

        outcome = await in_transaction(self._client, work)
        if outcome is None:
            return
        log.info("scheduled_notification", registration_id=registration_id, kind=str(kind), outcome=outcome)
        if outcome == "queued":
            self._on_enqueued(())
