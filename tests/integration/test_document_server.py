"""The embedded document server as the stack starts it: its TTL sweeper must not hold an old snapshot.

WiredTiger keeps every version of a document newer than the oldest snapshot still open. The
server's TTL sweeper used to keep the snapshot of its last sweep until the next one, a minute later;
meanwhile every update to a hot document (a counter, an outbox row) kept its old versions, the pages
holding them outgrew WiredTiger's limit, and requests waited on evictions that could not succeed.
These tests run the real storage engine in this process, with a sweep every second, and read
WiredTiger's own statistic of how many transaction ids the oldest snapshot holds back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from secantus.storage import Storage

from plenary_stack.documents import release_snapshot_after_ttl_sweeps

PINNED = "transaction: transaction range of IDs currently pinned"
# Long enough for the updates below to run between two sweeps.
SWEEP_SECONDS = 1.0
UPDATES = 1000


def pinned_ids(storage: Storage) -> int:
    """WiredTiger's count of transaction ids held back by the oldest open snapshot."""
    connection: Any = storage._conn  # the engine's statistics have no other way out
    session = connection.open_session()
    try:
        cursor = session.open_cursor("statistics:", None, None)
        try:
            while cursor.next() == 0:
                description, _, value = cursor.get_value()
                if description == PINNED:
                    return int(value)
        finally:
            cursor.close()
    finally:
        session.close()
    raise AssertionError(f"WiredTiger reports no {PINNED!r}")


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    release_snapshot_after_ttl_sweeps()
    engine = Storage(str(tmp_path / "db"), ttl_sweep_seconds=SWEEP_SECONDS, enable_oplog=False)
    engine._conn.reconfigure("statistics=(fast)")  # off unless asked for
    try:
        yield engine
    finally:
        engine.close()


def test_a_ttl_sweep_leaves_no_snapshot_behind_while_a_hot_document_is_updated(storage: Storage) -> None:
    # An outbox as the services keep one: sent rows expire, so the sweeper visits it.
    storage.create_index(
        "plenary_checkin", "outbox", "sent_at_ttl", {"sent_at": 1}, {"expireAfterSeconds": 30 * 86400}
    )
    storage.insert("plenary_checkin", "outbox", [{"_id": n, "sent_at": datetime.now(UTC)} for n in range(50)])
    storage.insert("plenary_checkin", "counters", [{"_id": "admitted", "n": 0}])
    storage.release_thread_snapshot()  # as the server does after every request
    # The first sweep runs after SWEEP_SECONDS; the updates then run before the second.
    time.sleep(SWEEP_SECONDS * 1.3)

    for _ in range(UPDATES):
        storage.update_matching("plenary_checkin", "counters", {"_id": "admitted"}, {"$inc": {"n": 1}})
        storage.release_thread_snapshot()
    held = pinned_ids(storage)

    # Each update is a transaction of its own and its snapshot is released after it, so only the
    # sweeper could hold ids back; if it did, it would hold back one per update. WiredTiger
    # recomputes the oldest snapshot now and then, so the figure lags by up to a few dozen.
    assert held < UPDATES // 5, f"{held} transaction ids held back after {UPDATES} updates"


def test_the_fix_is_applied_once_however_often_it_is_asked_for() -> None:
    release_snapshot_after_ttl_sweeps()
    sweep = Storage.prune_ttl_all_collections
    release_snapshot_after_ttl_sweeps()
    assert Storage.prune_ttl_all_collections is sweep
