"""Kafka plumbing: an acks=all publisher that survives a broker outage, and topic creation."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
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
