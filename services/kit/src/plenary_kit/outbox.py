"""Transactional outbox: events are written with the state change, then relayed to Kafka in order."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from aiokafka.errors import KafkaError
from bson import ObjectId
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from plenary_kit import metrics
from plenary_kit.envelope import Envelope
from plenary_kit.kafka import Publisher
from plenary_kit.logs import get_logger
from plenary_kit.mongo import Document, Session

log = get_logger(__name__)

COLLECTION = "outbox"
BATCH = 500
# How often a relay deletes the sent rows past the retention period, and how many in one write.
PURGE_SECONDS = 600.0
PURGE_CHUNK = 1000


class Outbox:
    """Where a service's handlers put the events their state change causes."""

    def __init__(self, db: AsyncDatabase[Document], topic: str) -> None:
        self._rows = db[COLLECTION]
        self._topic = topic
        self._wake = asyncio.Event()
        # Set by `prepare`; until then nothing is old enough to purge.
        self._retention: timedelta | None = None

    async def prepare(self, retention_days: int) -> None:
        # One index besides `_id`: every row is written and marked sent once, and each index costs
        # both. The relay reads unsent rows (`sent_at` null) in `_id` order, and deletes sent rows
        # past the retention period by `sent_at` (`purge`); replay reads a time range by `_id`, whose
        # ObjectId carries the time the row was written.
        self._retention = timedelta(days=retention_days)
        await self._rows.create_index([("sent_at", ASCENDING), ("_id", ASCENDING)])
        existing = await self._rows.index_information()
        # `sent_at_ttl` expired sent rows until the relay did: a TTL index cost a fifth of each insert
        # and mark on the embedded document server.
        for retired in ("created_at_1", "event_id_1", "sent_at_ttl"):
            if retired in existing:
                await self._rows.drop_index(retired)

    async def add(self, session: Session, *envelopes: Envelope) -> None:
        """Record events inside the caller's transaction; they become visible only if it commits."""
        now = datetime.now(UTC)
        await self._rows.insert_many(
            [
                {
                    "event_id": envelope.id,
                    "type": envelope.type,
                    "topic": self._topic,
                    "key": envelope.subject,
                    "value": envelope.to_bytes(),
                    "correlation_id": envelope.correlationid,
                    "created_at": now,
                    "sent_at": None,
                }
                for envelope in envelopes
            ],
            ordered=True,
            session=session,
        )

    def nudge(self) -> None:
        """Tell an in-process relay that a transaction with events has committed."""
        self._wake.set()

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass
        self._wake.clear()

    async def pending(self, limit: int) -> list[Document]:
        cursor = self._rows.find({"sent_at": None}).sort("_id", ASCENDING).limit(limit)
        return await cursor.to_list(limit)

    async def mark_sent(self, rows: list[Document]) -> None:
        await self._rows.update_many(
            {"_id": {"$in": [row["_id"] for row in rows]}},
            {"$set": {"sent_at": datetime.now(UTC)}},
        )

    async def purge(self, now: datetime) -> int:
        """Delete the rows sent before the retention period; returns how many went.

        A chunk at a time, so that no one write holds the collection long. A row not yet sent stays
        however old it is: `sent_at` null is not a time before anything.
        """
        if self._retention is None:
            return 0
        expired = {"sent_at": {"$lt": now - self._retention}}
        deleted = 0
        while True:
            chunk = await self._rows.find(expired, {"_id": 1}).limit(PURGE_CHUNK).to_list(PURGE_CHUNK)
            if not chunk:
                return deleted
            result = await self._rows.delete_many({"_id": {"$in": [row["_id"] for row in chunk]}, **expired})
            deleted += result.deleted_count
            if len(chunk) < PURGE_CHUNK:
                return deleted

    async def between(self, since: datetime, until: datetime, event_type: str | None) -> list[Document]:
        """Rows created in [since, until), oldest first, read by `_id` (its ObjectId holds the second)."""
        by_id = {"$gte": ObjectId.from_datetime(since), "$lt": ObjectId.from_datetime(until + timedelta(seconds=1))}
        rows = await self._rows.find({"_id": by_id}).sort("_id", ASCENDING).to_list(None)
        return [
            row
            for row in rows
            if since <= row["created_at"] < until and (not event_type or row["type"] == event_type)
        ]

    async def count_pending(self) -> int:
        return await self._rows.count_documents({"sent_at": None})


def _record(row: Document) -> tuple[str, str, bytes, list[tuple[str, bytes]]]:
    return row["topic"], row["key"], bytes(row["value"]), [("ce_type", row["type"].encode())]


async def publish_rows(publisher: Publisher, rows: list[Document]) -> None:
    await publisher.publish([_record(row) for row in rows])


class Relay:
    """Publishes a service's outbox to Kafka in `_id` order; one relay per service.

    Rows are marked sent only after the broker acknowledged them (acks=all), so a
    crash between the two re-sends a few events, which idempotent consumers ignore.
    After a round that found fewer rows than a batch, the relay lets `gather` seconds
    pass before the next, so that rows committed meanwhile share one read and one mark.
    Every `purge_every` seconds (and when it starts) it deletes rows sent longer ago than
    the retention period.
    """

    def __init__(
        self,
        outbox: Outbox,
        publisher: Publisher,
        service: str,
        idle_poll: float = 0.25,
        gather: float = 0.05,
        purge_every: float = PURGE_SECONDS,
    ) -> None:
        self._outbox = outbox
        self._publisher = publisher
        self._service = service
        self._idle_poll = idle_poll
        self._gather = gather
        self._purge_every = purge_every

    async def run(self) -> None:
        backoff = 0.2
        purge_at = time.monotonic()
        while True:
            try:
                if time.monotonic() >= purge_at:
                    purge_at = time.monotonic() + self._purge_every
                    if purged := await self._outbox.purge(datetime.now(UTC)):
                        log.info("outbox_purged", service=self._service, rows=purged)
                rows = await self._outbox.pending(BATCH)
                if not rows:
                    await self._outbox.wait(self._idle_poll)
                    continue
                await publish_rows(self._publisher, rows)
                await self._outbox.mark_sent(rows)
                metrics.OUTBOX_PUBLISHED.labels(self._service).inc(len(rows))
                backoff = 0.2
                if len(rows) < BATCH:
                    # That was everything pending: what commits next nudges, so no read to find nothing.
                    # A round costs the database a read and a write however few rows it carries, so
                    # what commits in the next moments goes out together in the next round.
                    await asyncio.sleep(self._gather)
                    await self._outbox.wait(self._idle_poll)
            except (KafkaError, PyMongoError, OSError, TimeoutError) as exc:
                log.warning("outbox_relay_retry", error=type(exc).__name__, retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)


async def replay(
    outbox: Outbox, publisher: Publisher, since: datetime, until: datetime, event_type: str | None = None
) -> int:
    """Re-publish every outbox event created in [since, until); consumers skip what they have seen."""
    rows = await outbox.between(since, until, event_type)
    for start in range(0, len(rows), BATCH):
        await publish_rows(publisher, rows[start : start + BATCH])
    return len(rows)


def default_window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(days=1), now + timedelta(minutes=1)
