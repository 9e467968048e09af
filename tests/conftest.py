"""Test fixtures: the real broker, document server and SMTP sink, and the whole stack, on free ports.

Set KAFKA_BOOTSTRAP_SERVERS and/or MONGODB_URI to run everything against a real Kafka and
MongoDB instead of the embedded ones; each run then uses databases of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from journey import TEST_SETTINGS, running_stack

from plenary_stack.stack import EmbeddedStack, StackConfig

ARTEFACTS = Path(__file__).parent / "artefacts"

def _running_stack(var: Path) -> Iterator[EmbeddedStack]:
    return running_stack(StackConfig.isolated(var, "test", TEST_SETTINGS))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """Broker, document server, SMTP sink and the four services, started once per test run."""
    yield from _running_stack(tmp_path_factory.mktemp("stack"))


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """A whole stack of the module's own, for tests that stop or break parts of it."""
    yield from _running_stack(tmp_path_factory.mktemp("own-stack"))


@pytest.fixture(scope="session")
def infrastructure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """Only the broker and document server, for tests that run service code in-process."""
    running = EmbeddedStack(StackConfig.isolated(tmp_path_factory.mktemp("infrastructure"), "test", TEST_SETTINGS))
    try:
        if running.embedded_documents:
            running.start_documents()
        if running.embedded_broker:
            running.start_broker()
        else:
            running.create_topics()
        yield running
    finally:
        running.stop()


CaughtUp = Callable[[str, Sequence[str]], Awaitable[None]]


async def _wait_until_caught_up(bootstrap: str, group: str, topic_names: Sequence[str], timeout: float) -> None:
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await reader.start()
    await admin.start()
    try:
        await reader.topics()
        partitions = [
            TopicPartition(topic, partition)
            for topic in topic_names
            for partition in sorted(reader.partitions_for_topic(topic) or ())
        ]
        assert partitions, f"no partitions known for {topic_names}"
        ends = await reader.end_offsets(partitions)
        starts = await reader.beginning_offsets(partitions)
        # A partition with nothing left on it never gets a committed offset, and needs none.
        pending = {tp: end for tp, end in ends.items() if end > starts[tp]}
        deadline = time.monotonic() + timeout
        while pending:
            committed = await admin.list_consumer_group_offsets(group, partitions=list(pending))
            pending = {
                tp: end for tp, end in pending.items() if tp not in committed or committed[tp].offset < end
            }
            if pending and time.monotonic() > deadline:
                raise AssertionError(f"consumer group {group} still behind on {sorted(map(str, pending))}")
            if pending:
                await asyncio.sleep(0.1)
    finally:
        await reader.stop()
        await admin.close()


@pytest.fixture(scope="session")
def caught_up(infrastructure: EmbeddedStack) -> CaughtUp:
    """Waits until a consumer group has committed every record already on the given topics.

    The broker is shared by the whole run, so a service's group may start with other modules'
    events to work through; waiting for that backlog keeps those events out of a test's way.
    """

    async def wait(group: str, topic_names: Sequence[str]) -> None:
        await _wait_until_caught_up(infrastructure.config.bootstrap, group, topic_names, timeout=120)

    return wait


@pytest.fixture(scope="session")
def artefacts() -> Path:
    ARTEFACTS.mkdir(exist_ok=True)
    return ARTEFACTS
