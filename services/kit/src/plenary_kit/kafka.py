"""Kafka plumbing: an acks=all publisher that survives a broker outage, topic creation, reading a topic whole."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from plenary_kit import topics
from plenary_kit.logs import get_logger

log = get_logger(__name__)


class Publisher:
    """One producer per process. At-least-once: acks=all, retried; consumers are idempotent."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._bootstrap = bootstrap_servers
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ensure(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    acks="all",
                    linger_ms=2,
                    request_timeout_ms=10000,
                    client_id="plenary",
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def publish(
        self, batch: list[tuple[str, str, bytes, list[tuple[str, bytes]]]]
    ) -> None:
        """Send (topic, key, value, headers) in order and wait until the broker has every one."""
        producer = await self._ensure()
        try:
            futures = [
                await producer.send(topic, value=value, key=key.encode(), headers=headers)
                for topic, key, value, headers in batch
            ]
            await asyncio.gather(*futures)
        except KafkaError:
            await self.reset()
            raise

    async def reset(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except KafkaError:
                pass

    async def stop(self) -> None:
        await self.reset()


async def ensure_topics(
    bootstrap_servers: str, partitions: int = topics.PARTITIONS, replication_factor: int = 1
) -> None:
    """Create every Plenary topic and its dead-letter topic if missing."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for name in topics.ALL for t in (name, topics.dead_letter(name))]
        missing = [NewTopic(name, partitions, replication_factor) for name in wanted if name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
            log.info("topics_created", topics=[t.name for t in missing])
    finally:
        await admin.close()


async def reachable(bootstrap_servers: str, timeout: float = 1.5) -> bool:
    """Whether a broker answers a metadata request; independent of any producer, so it never waits on one."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        return True
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await client.close()


async def read_to_end(
    bootstrap_servers: str, topic_names: Sequence[str], client_id: str, idle_polls: int = 4
) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """Every record on these topics from the first, a partition's batch at a time, then stop.

    Reads without a consumer group, so no group's offsets move. The end is each partition's
    high-water mark as the fetches report it (`end_offsets()` is not trusted: some brokers get it
    wrong for batched messages), or `idle_polls` polls in a row that fetch nothing.
    """
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, client_id=client_id)
    await reader.start()
    try:
        await reader.topics()
        partitions = [
            TopicPartition(topic, partition)
            for topic in topic_names
            for partition in sorted(reader.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        remaining, idle = set(partitions), 0
        while remaining and idle < idle_polls:
            batches = await reader.getmany(*remaining, timeout_ms=500, max_records=200)
            idle = 0 if any(batches.values()) else idle + 1
            for records in batches.values():
                if records:
                    yield records
            for partition in list(remaining):
                highwater = reader.highwater(partition)
                if highwater is not None and await reader.position(partition) >= highwater:
                    remaining.discard(partition)
    finally:
        await reader.stop()
