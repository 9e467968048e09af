"""Idempotent Kafka consumer: handle in a MongoDB transaction, record the event id, then commit the offset."""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    ServerSelectionTimeoutError,
    WTimeoutError,
)

from plenary_kit import metrics, topics
from plenary_kit.envelope import Envelope, MalformedEvent
from plenary_kit.events import EventData
from plenary_kit.kafka import Publisher, read_to_end
from plenary_kit.logs import get_logger
from plenary_kit.mongo import Document, Session, in_transaction

log = get_logger(__name__)

PROCESSED = "processed_events"

Handler = Callable[[Envelope, EventData, Session], Awaitable[None]]
BatchHandler = Callable[[list[tuple[Envelope, EventData]], Session], Awaitable[None]]

# The most events one transaction applies. A lagging consumer catches up in batches: the
# processed-events check, the markers and the commit are paid once per batch, not once per event.
BATCH = 50

# Failures of the infrastructure, not of the event: wait them out rather than dead-letter.
_OUTAGES = (ConnectionFailure, ServerSelectionTimeoutError, NetworkTimeout, ExecutionTimeout, WTimeoutError)


@dataclass(frozen=True, eq=False)
class Batched:
    """A handler that can also apply a run of consecutive events in one go, in their order.

    Subscribed under one or more event types, it gets each run of consecutive events of those
    types in a batch (see BATCH) as one call, so its reads and writes can be one request per run
    rather than one per event. Alone (a retry, a batch of one) an event is a run of one.
    """

    many: BatchHandler

    async def __call__(self, envelope: Envelope, data: EventData, session: Session) -> None:
        await self.many([(envelope, data)], session)


def event_context(envelope: Envelope, **more: str) -> AbstractContextManager[None]:
    """Log lines written while handling `envelope` carry its correlation and causation ids (and `more`)."""
    return structlog.contextvars.bound_contextvars(
        correlation_id=envelope.correlationid, causation_id=envelope.id, event_type=envelope.type, **more
    )


@dataclass(frozen=True, eq=False)
class _Pending:
    """A record waiting to be applied, with its parsed event and the handler for its type."""

    record: ConsumerRecord[bytes, bytes]
    envelope: Envelope
    handler: Handler

    def marker(self, consumer: str) -> str:
        return f"{consumer}:{self.envelope.id}"


def _runs(pendings: list[_Pending]) -> list[list[_Pending]]:
    """Consecutive events for the same Batched handler together; every other event on its own."""
    runs: list[list[_Pending]] = []
    for pending in pendings:
        previous = runs[-1][-1].handler if runs else None
        if isinstance(pending.handler, Batched) and pending.handler is previous:
            runs[-1].append(pending)
        else:
            runs.append([pending])
    return runs


class Consumer:
    """A consumer-group member that applies each event exactly once to this service's state."""

    def __init__(
        self,
        name: str,
        subscriptions: Mapping[str, Handler],
        *,
        client: AsyncMongoClient[Document],
        db: AsyncDatabase[Document],
        publisher: Publisher,
        bootstrap_servers: str,
        after_commit: Callable[[], None] = lambda: None,
        max_attempts: int = 5,
        retry_base_seconds: float = 0.2,
        session_timeout_ms: int = 10000,
        heartbeat_interval_ms: int = 1000,
    ) -> None:
        self.name = name
        self._handlers = dict(subscriptions)
        self._topics = sorted({topics.topic_for_event_type(event_type) for event_type in self._handlers})
        self._client = client
        self._processed = db[PROCESSED]
        self._publisher = publisher
        self._bootstrap = bootstrap_servers
        self._after_commit = after_commit
        self._max_attempts = max_attempts
        self._retry_base = retry_base_seconds
        self._session_timeout_ms = session_timeout_ms
        self._heartbeat_interval_ms = heartbeat_interval_ms

    async def prepare(self) -> None:
        # The unique _id "<consumer>:<event id>" is what makes handling idempotent.
        await self._processed.create_index("processed_at")

    async def run(self) -> None:
        while True:
            consumer = AIOKafkaConsumer(
                *self._topics,
                bootstrap_servers=self._bootstrap,
                group_id=self.name,
                client_id=self.name,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=self._session_timeout_ms,
                heartbeat_interval_ms=self._heartbeat_interval_ms,
                max_poll_interval_ms=600000,
            )
            try:
                await consumer.start()
                log.info("consumer_started", consumer=self.name, topics=self._topics)
                await self._loop(consumer)
            except (KafkaError, OSError) as exc:
                log.warning("consumer_restart", consumer=self.name, error=type(exc).__name__)
                await asyncio.sleep(1.0)
            finally:
                try:
                    await consumer.stop()
                except KafkaError:
                    pass

    async def replay_all(self) -> int:
        """Apply every event on the topics from the first until caught up, then stop; for rebuilding state.

        Reads without a consumer group (see `kafka.read_to_end`). The events are marked as processed
        under this consumer's name, so give it a name of its own. Returns how many were read.
        """
        read = 0
        async for records in read_to_end(self._bootstrap, self._topics, self.name):
            await self.handle_records(records)
            read += len(records)
        return read

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=200)
            if not batches:
                continue
            # Every partition's records of one fetch are applied together, then all their offsets
            # committed at once. Taken a partition at a time, a fetch during a burst (a few events
            # from each of a dozen partitions) cost a transaction and an offset commit per partition,
            # one after another, and the consumer fell behind the burst it was fetching.
            await self.handle_records([record for records in batches.values() for record in records])
            await consumer.commit({partition: records[-1].offset + 1 for partition, records in batches.items()})

    async def handle_records(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Apply records, each partition's in order, several to a transaction where they allow it.

        Records of different partitions may come in any interleaving: their events concern
        different subjects (the key chooses the partition) or different topics, whose relative
        order no handler relies on.
        """
        run: list[_Pending] = []
        for record in records:
            try:
                envelope = Envelope.from_bytes(record.value)
            except MalformedEvent as exc:
                await self._apply_together(run)
                run = []
                await self._dead_letter(record, exc, attempts=1)
                continue
            handler = self._handlers.get(envelope.type)
            if handler is None:
                continue
            run.append(_Pending(record, envelope, handler))
            if len(run) >= BATCH:
                await self._apply_together(run)
                run = []
        await self._apply_together(run)

    async def _apply_together(self, run: list[_Pending]) -> None:
        """One transaction for the run's new events; if it fails, each is applied on its own.

        On its own, an event gets the full treatment: retries, waiting out an outage, the dead-letter
        topic. The one whose handler failed in the batch has used one attempt already.
        """
        if len(run) <= 1:
            for pending in run:
                await self._handle(pending)
            return
        fresh: dict[str, _Pending] = {}
        for pending in run:
            if pending.marker(self.name) in fresh:
                metrics.EVENTS_HANDLED.labels(self.name, pending.envelope.type, "duplicate").inc()
            else:
                fresh[pending.marker(self.name)] = pending
        started = time.perf_counter()
        failed: list[_Pending] = []
        try:
            seen = await self._processed.find({"_id": {"$in": list(fresh)}}, projection={"_id": 1}).to_list(None)
            for done in seen:
                pending = fresh.pop(done["_id"])
                metrics.EVENTS_HANDLED.labels(self.name, pending.envelope.type, "duplicate").inc()
            if not fresh:
                return

            async def work(session: Session) -> None:
                failed.clear()
                now = datetime.now(UTC)
                await self._processed.insert_many(
                    [{"_id": marker, "processed_at": now} for marker in fresh], session=session
                )
                for run in _runs(list(fresh.values())):
                    first = run[0]
                    with self._bound(first.envelope):
                        try:
                            if len(run) == 1:
                                await first.handler(first.envelope, first.envelope.payload(), session)
                            else:
                                assert isinstance(first.handler, Batched)
                                await first.handler.many([(p.envelope, p.envelope.payload()) for p in run], session)
                        except Exception:
                            failed.extend(run)
                            raise

            await in_transaction(self._client, work)
        except Exception as exc:
            log.info("event_batch_split", events=len(fresh), error=type(exc).__name__)
            for pending in fresh.values():
                await self._handle(pending, attempts=1 if pending in failed else 0)
            return
        elapsed = (time.perf_counter() - started) / len(fresh)
        for pending in fresh.values():
            metrics.EVENT_SECONDS.labels(self.name).observe(elapsed)
            metrics.EVENTS_HANDLED.labels(self.name, pending.envelope.type, "applied").inc()
        self._after_commit()

    def _bound(self, envelope: Envelope) -> AbstractContextManager[None]:
        return event_context(envelope, consumer=self.name)

    async def _handle(self, pending: _Pending, attempts: int = 0) -> None:
        with self._bound(pending.envelope):
            await self._apply(pending.record, pending.envelope, pending.handler, attempts)

    async def _apply(
        self, record: ConsumerRecord[bytes, bytes], envelope: Envelope, handler: Handler, attempts: int = 0
    ) -> None:
        data = envelope.payload()
        marker = f"{self.name}:{envelope.id}"
        attempt = attempts
        outage_wait = self._retry_base
        while True:
            started = time.perf_counter()
            try:
                if await self._processed.find_one({"_id": marker}, projection={"_id": 1}):
                    metrics.EVENTS_HANDLED.labels(self.name, envelope.type, "duplicate").inc()
                    return

                async def work(session: Session) -> None:
                    await self._processed.insert_one(
                        {"_id": marker, "processed_at": datetime.now(UTC)}, session=session
                    )
                    await handler(envelope, data, session)

                await in_transaction(self._client, work)
            except DuplicateKeyError as exc:
                if "processed_events" in str(exc):
                    metrics.EVENTS_HANDLED.labels(self.name, envelope.type, "duplicate").inc()
                    return
                attempt += 1
                failure: Exception = exc
            except _OUTAGES as exc:
                log.warning("consumer_waiting_for_database", error=type(exc).__name__)
                await asyncio.sleep(outage_wait)
                outage_wait = min(outage_wait * 2, 5.0)
                continue
            except Exception as exc:
                attempt += 1
                failure = exc
            else:
                metrics.EVENT_SECONDS.labels(self.name).observe(time.perf_counter() - started)
                metrics.EVENTS_HANDLED.labels(self.name, envelope.type, "applied").inc()
                self._after_commit()
                return
            log.warning("event_handling_failed", attempt=attempt, error=type(failure).__name__)
            if attempt >= self._max_attempts:
                await self._dead_letter(record, failure, attempts=attempt)
                return
            await asyncio.sleep(self._retry_base * 2 ** (attempt - 1))

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], error: Exception, attempts: int) -> None:
        """Park the record on <topic>.dlq with why it failed; the offset is committed only after this."""
        headers = [
            ("dlq_consumer", self.name.encode()),
            ("dlq_error", f"{type(error).__name__}: {error}"[:1000].encode()),
            ("dlq_trace", "".join(traceback.format_exception(error))[-4000:].encode()),
            ("dlq_topic", record.topic.encode()),
            ("dlq_partition", str(record.partition).encode()),
            ("dlq_offset", str(record.offset).encode()),
            ("dlq_attempts", str(attempts).encode()),
            ("dlq_at", datetime.now(UTC).isoformat().encode()),
        ]
        key = record.key.decode(errors="replace") if record.key else "unknown"
        backoff = 0.5
        while True:
            try:
                await self._publisher.publish(
                    [(topics.dead_letter(record.topic), key, record.value or b"", headers)]
                )
                break
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("dead_letter_retry", error=type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        metrics.DEAD_LETTERS.labels(self.name).inc()
        metrics.EVENTS_HANDLED.labels(self.name, "unknown", "dead_lettered").inc()
        log.error(
            "event_dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error=type(error).__name__,
        )
