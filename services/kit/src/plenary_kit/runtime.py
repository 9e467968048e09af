"""The parts of one service process: MongoDB, Kafka, outbox relay and consumers, per role."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from fastapi import FastAPI
from pymongo.errors import PyMongoError

from plenary_kit import logs, topics
from plenary_kit.consumer import Consumer, Handler
from plenary_kit.kafka import Publisher, ensure_topics
from plenary_kit.kafka import reachable as kafka_reachable
from plenary_kit.logs import get_logger
from plenary_kit.mongo import connect
from plenary_kit.outbox import Outbox, Relay
from plenary_kit.settings import ServiceSettings

log = get_logger(__name__)


class Runtime:
    def __init__(self, service: str, settings: ServiceSettings) -> None:
        self.service = service
        self.settings = settings
        logs.configure(service)
        self.client = connect(settings.mongodb_uri)
        self.db = self.client[settings.database_name(service)]
        self.publisher = Publisher(settings.kafka_bootstrap_servers)
        self.outbox = Outbox(self.db, topics.topic_for_source(service))
        self.consumers: list[Consumer] = []
        self._prepare_steps: list[Callable[[], Awaitable[None]]] = [
            lambda: self.outbox.prepare(settings.outbox_retention_days)
        ]
        self._background: list[Callable[[], Awaitable[None]]] = []
        self._stop_steps: list[Callable[[], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.prepared = asyncio.Event()

    def on_prepare(self, step: Callable[[], Awaitable[None]]) -> None:
        """Index creation and the like, retried until MongoDB answers."""
        self._prepare_steps.append(step)

    def in_background(self, loop: Callable[[], Awaitable[None]]) -> None:
        """A loop that runs with the worker role (a mail sender, an offer expiry sweep)."""
        self._background.append(loop)

    def on_stop(self, step: Callable[[], Awaitable[None]]) -> None:
        """Work to wind down before the loops stop and MongoDB closes (e.g. running imports)."""
        self._stop_steps.append(step)

    def subscribe(self, subscriptions: Mapping[str, Handler], group: str | None = None) -> Consumer:
        consumer = Consumer(
            (group or self.service) + self.settings.plenary_consumer_group_suffix,
            subscriptions,
            client=self.client,
            db=self.db,
            publisher=self.publisher,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            after_commit=self.outbox.nudge,
            max_attempts=self.settings.consumer_max_attempts,
            retry_base_seconds=self.settings.consumer_retry_base_seconds,
            session_timeout_ms=self.settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=self.settings.kafka_heartbeat_interval_ms,
        )
        self.consumers.append(consumer)
        self._prepare_steps.append(consumer.prepare)
        return consumer

    async def ready_checks(self) -> dict[str, bool]:
        mongo_ok = False
        if self.prepared.is_set():
            try:
                await asyncio.wait_for(self.client.admin.command("ping"), 1.5)
                mongo_ok = True
            except (PyMongoError, TimeoutError):
                mongo_ok = False
        return {"mongodb": mongo_ok, "kafka": await kafka_reachable(self.settings.kafka_bootstrap_servers)}

    async def _boot(self) -> None:
        backoff = 0.2
        while True:
            try:
                for step in self._prepare_steps:
                    await step()
                break
            except PyMongoError as exc:
                log.warning("waiting_for_mongodb", error=type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        self.prepared.set()
        roles = self.settings.roles
        if "consumer" in roles:
            await self._ensure_topics()
        if "relay" in roles:
            self._spawn(Relay(self.outbox, self.publisher, self.service).run())
        if "consumer" in roles:
            for consumer in self.consumers:
                self._spawn(consumer.run())
        if "worker" in roles:
            for loop in self._background:
                self._spawn(loop())
        log.info("service_started", roles=sorted(roles))

    async def _ensure_topics(self) -> None:
        backoff = 0.5
        while True:
            try:
                await ensure_topics(
                    self.settings.kafka_bootstrap_servers,
                    replication_factor=self.settings.kafka_topic_replication_factor,
                )
                return
            except Exception as exc:  # any broker failure here means "try again"
                log.warning("waiting_for_kafka", error=type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        task.add_done_callback(_report_crash)
        self._tasks.append(task)

    async def start(self) -> None:
        self._spawn(self._boot())

    async def stop(self) -> None:
        for step in self._stop_steps:
            await step()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.publisher.stop()
        await self.client.close()

    @contextlib.asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background_task_crashed", error=repr(task.exception()))
