"""The embedded document server as the stack starts it: nothing may hold a page or a snapshot while idle.

WiredTiger keeps every version of a document newer than the oldest snapshot still open. The
server's TTL sweeper used to keep the snapshot of its last sweep until the next one, a minute later;
meanwhile every update to a hot document (a counter, an outbox row) kept its old versions, the pages
holding them outgrew WiredTiger's limit, and requests waited on evictions that could not succeed.
These tests run the real storage engine in this process, with a sweep every second, and read
WiredTiger's own statistic of how many transaction ids the oldest snapshot holds back.

A transaction between two statements is idle too: while its client works out the next step, its
cursors must not stay on the pages they read, or a hot page that has to be evicted cannot be.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from secantus.storage import Storage

from plenary_stack.documents import release_cursors_between_statements, release_snapshot_after_ttl_sweeps

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


def positioned(cursor: Any) -> bool:
    """Whether a cursor still stands on a record (and so holds its page). Asking an unpositioned
    cursor for its key is an error, which dooms the transaction; callers roll it back afterwards."""
    try:
        cursor.get_key()
    except Exception:
        return False
    return True


def test_a_transaction_between_statements_holds_no_page(tmp_path: Path) -> None:
    release_cursors_between_statements()
    engine = Storage(str(tmp_path / "db"), enable_oplog=False)
    try:
        engine.insert("plenary_registration", "events", [{"_id": n, "confirmed": 0} for n in range(100)])
        engine.release_thread_snapshot()
        handle = engine.begin_user_transaction()
        # Two statements as a registration batch makes them: places taken, then the event read back.
        with engine.use_user_transaction(handle):
            engine.update_matching("plenary_registration", "events", {"_id": 7}, {"$inc": {"confirmed": 3}})
        with engine.use_user_transaction(handle):
            found = engine.find_matching("plenary_registration", "events", {"_id": 7})
            assert [doc["confirmed"] for doc in found] == [3]
        # Now the client thinks: the transaction is open, between statements.
        cursors = dict(handle.cursors)
        assert cursors, "the statements read and wrote through the transaction's own cursors"
        held = [table for (table, _), cursor in cursors.items() if positioned(cursor)]
        engine.abort_user_transaction(handle)
        assert held == [], f"cursors left standing on pages of {held}"
    finally:
        engine.close()


def test_statements_after_a_release_see_the_transaction_s_own_writes_and_commit(tmp_path: Path) -> None:
    release_cursors_between_statements()
    engine = Storage(str(tmp_path / "db"), enable_oplog=False)
    try:
        engine.insert("plenary_registration", "events", [{"_id": "symposium", "confirmed": 118}])
        engine.release_thread_snapshot()
        handle = engine.begin_user_transaction()
        for _ in range(2):
            with engine.use_user_transaction(handle):
                engine.update_matching(
                    "plenary_registration", "events", {"_id": "symposium"}, {"$inc": {"confirmed": 1}}
                )
        with engine.use_user_transaction(handle):
            engine.insert("plenary_registration", "registrations", [{"_id": "r-120", "status": "confirmed"}])
            inside = engine.find_matching("plenary_registration", "events", {"_id": "symposium"})
            assert [doc["confirmed"] for doc in inside] == [120]
        # Outside the transaction nothing shows until it commits.
        assert [d["confirmed"] for d in engine.find_matching("plenary_registration", "events", {})] == [118]
        engine.release_thread_snapshot()
        engine.commit_user_transaction(handle)
        engine.release_thread_snapshot()
        assert [d["confirmed"] for d in engine.find_matching("plenary_registration", "events", {})] == [120]
        assert [d["_id"] for d in engine.find_matching("plenary_registration", "registrations", {})] == ["r-120"]
    finally:
        engine.close()


def test_the_fixes_are_applied_once_however_often_they_are_asked_for() -> None:
    release_snapshot_after_ttl_sweeps()
    release_cursors_between_statements()
    sweep, use = Storage.prune_ttl_all_collections, Storage.use_user_transaction
    release_snapshot_after_ttl_sweeps()
    release_cursors_between_statements()
    assert Storage.prune_ttl_all_collections is sweep
    assert Storage.use_user_transaction is use
