"""Test fixtures: the real broker, document server and SMTP sink, and the whole stack, on free ports.

Set KAFKA_BOOTSTRAP_SERVERS and/or MONGODB_URI to run everything against a real Kafka and
MongoDB instead of the embedded ones; each run then uses databases of its own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from plenary_stack.processes import free_port
from plenary_stack.stack import SERVICES, EmbeddedStack, StackConfig

ARTEFACTS = Path(__file__).parent / "artefacts"

# Short group timeouts: rebalances on the embedded broker wait about half the session timeout.
FAST_CONSUMERS = {
    "KAFKA_SESSION_TIMEOUT_MS": "2000",
    "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
    "CONSUMER_RETRY_BASE_SECONDS": "0.05",
    "CONSUMER_MAX_ATTEMPTS": "3",
}


def _config(var: Path) -> StackConfig:
    return StackConfig(
        var=var,
        kafka_port=free_port(),
        mongo_port=free_port(),
        smtp_port=free_port(),
        service_ports={name: free_port() for name in SERVICES},
        kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None,
        mongodb_uri=os.environ.get("MONGODB_URI") or None,
        admin_token="test-organiser-" + uuid.uuid4().hex,
        db_prefix="plenary_test_" + uuid.uuid4().hex[:8],
        extra_env=FAST_CONSUMERS,
    )


def _running_stack(var: Path) -> Iterator[EmbeddedStack]:
    running = EmbeddedStack(_config(var))
    running.start()
    try:
        yield running
    finally:
        running.stop()


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
    running = EmbeddedStack(_config(tmp_path_factory.mktemp("infrastructure")))
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


@pytest.fixture(scope="session")
def artefacts() -> Path:
    ARTEFACTS.mkdir(exist_ok=True)
    return ARTEFACTS
