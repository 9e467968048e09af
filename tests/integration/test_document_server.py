"""The embedded document server as the stack starts it: nothing may hold a page or a snapshot while idle.

WiredTiger keeps every version of a document newer than the oldest snapshot still open. The
server's TTL sweeper used to keep the snapshot of its last sweep until the next one, a minute later;
meanwhile every update to a hot document (a counter, an outbox row) kept its old versions, the pages
holding them outgrew WiredTiger's limit, and requests waited on evictions that could not succeed.
These tests run the real storage engine in this process, with a sweep every second, and read
WiredTiger's own statistic of how many transaction ids the oldest snapshot holds back.

A transaction between two statements is idle too: while its client works out the next step, its
cursors must not stay on the pages they read, or a hot page that has to be evicted cannot be.

A write statement reads its collection's index definitions once, not once per document; what it
writes through the indexes must stay exactly what it was. A filter on a list of ids is answered from a
set, and must answer exactly as the engine's own matching does.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import secantus.query
from bson import Int64, ObjectId
from secantus.collation import parse as collation
from secantus.storage import Storage

from plenary_stack.documents import (
    match_id_lists_by_set,
    read_indexes_once_per_write,
    release_cursors_between_statements,
    release_snapshot_after_ttl_sweeps,
)

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
    storage.create_index("plenary_checkin", "outbox", "sent_at_ttl", {"sent_at": 1}, {"expireAfterSeconds": 30 * 86400})
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
    read_indexes_once_per_write()
    sweep, use, read = Storage.prune_ttl_all_collections, Storage.use_user_transaction, Storage._iter_indexes
    release_snapshot_after_ttl_sweeps()
    release_cursors_between_statements()
    read_indexes_once_per_write()
    assert Storage.prune_ttl_all_collections is sweep
    assert Storage.use_user_transaction is use
    assert Storage._iter_indexes is read


# A read of index definitions: SecantusDB keeps them in a table of their own, read by one method.
CATALOG = "_iter_indexes table:secantus_indexes"


@pytest.fixture
def indexed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Storage, list[str]]]:
    """A storage engine with the write fix, a registrations collection indexed as the service indexes
    it, and a list of every table a cursor is asked for."""
    read_indexes_once_per_write()
    opened: list[str] = []
    cursor = Storage._cursor

    def counted(self: Storage, table: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(f"{sys._getframe(1).f_code.co_name} {table}")
        return cursor(self, table, *args, **kwargs)

    monkeypatch.setattr(Storage, "_cursor", counted)
    engine = Storage(str(tmp_path / "db"), enable_oplog=False)
    engine.create_index(
        "plenary_registration", "registrations", "email", {"event_id": 1, "email_key": 1}, {"unique": True}
    )
    engine.create_index("plenary_registration", "registrations", "sessions", {"sessions": 1})
    engine.create_index(
        "plenary_registration",
        "registrations",
        "waiting",
        {"event_id": 1, "waitlist_position": 1},
        {"partialFilterExpression": {"status": "waitlisted"}},
    )
    try:
        yield engine, opened
    finally:
        engine.close()


def delegate(n: int, **fields: Any) -> dict[str, Any]:
    return {"_id": f"r-{n}", "event_id": "symposium", "email_key": f"delegate{n}@school.example", **fields}


def test_a_batch_of_registrations_reads_the_index_definitions_once(indexed: tuple[Storage, list[str]]) -> None:
    engine, opened = indexed
    opened.clear()
    inserted, errors = engine.insert(
        "plenary_registration", "registrations", [delegate(n, status="confirmed") for n in range(60)]
    )
    assert (inserted, errors) == (60, [])
    # Without the fix every document reads them four or five times (about 300 reads here).
    assert opened.count(CATALOG) <= 3, f"{opened.count(CATALOG)} catalog reads for one statement"

    opened.clear()
    engine.update_matching(
        "plenary_registration",
        "registrations",
        {"event_id": "symposium"},
        {"$set": {"status": "cancelled"}},
        multi=True,
    )
    assert opened.count(CATALOG) <= 6, f"{opened.count(CATALOG)} catalog reads for one update of 60"
    assert len(engine.find_matching("plenary_registration", "registrations", {"status": "cancelled"})) == 60


def test_indexes_written_by_a_batch_are_the_ones_a_read_finds(indexed: tuple[Storage, list[str]]) -> None:
    engine, _ = indexed
    docs = [
        delegate(1, status="confirmed", sessions="leading-learning"),
        # An array mid-batch makes the sessions index multikey, which the rest of the batch must see.
        delegate(2, status="waitlisted", waitlist_position=1, sessions=["leading-learning", "send-provision"]),
        delegate(3, status="waitlisted", waitlist_position=2, sessions=["send-provision", "curriculum"]),
        delegate(1, status="confirmed"),  # the same address again: the unique index refuses it
        delegate(4, status="confirmed", sessions=[]),
    ]
    docs[3]["_id"] = "r-1-again"
    inserted, errors = engine.insert("plenary_registration", "registrations", docs, ordered=False)
    assert inserted == 4
    assert [error["index"] for error in errors] == [3]

    def ids(query: dict[str, Any]) -> list[str]:
        return sorted(doc["_id"] for doc in engine.find_matching("plenary_registration", "registrations", query))

    assert ids({"sessions": "send-provision"}) == ["r-2", "r-3"]
    assert ids({"sessions": "leading-learning"}) == ["r-1", "r-2"]
    assert ids({"event_id": "symposium", "status": "waitlisted", "waitlist_position": 2}) == ["r-3"]
    multikey = {
        index["name"]: index.get("multikey", False)
        for index in engine.list_indexes("plenary_registration", "registrations")
    }
    assert multikey["sessions"] is True

    # An index made between two statements is maintained by the second.
    engine.create_index("plenary_registration", "registrations", "status", {"status": 1})
    engine.update_matching("plenary_registration", "registrations", {"_id": "r-1"}, {"$set": {"status": "cancelled"}})
    assert ids({"status": "cancelled"}) == ["r-1"]
    assert ids({"status": "confirmed"}) == ["r-4"]
    engine.delete_matching("plenary_registration", "registrations", {"_id": "r-3"})
    assert ids({"sessions": "send-provision"}) == ["r-2"]


def test_a_filter_on_a_list_of_ids_answers_as_the_engine_does() -> None:
    match_id_lists_by_set()
    matches = secantus.query.matches
    general = matches.general  # type: ignore[attr-defined]
    oid = [ObjectId() for _ in range(3)]
    ids: list[Any] = [
        "r-1",
        "r-2",
        "R-1",
        oid[0],
        oid[1],
        1,
        1.0,
        Int64(1),
        True,
        None,
        {"event": "e", "n": 1},
        [1, 2],
        "",
    ]
    docs: list[dict[str, Any]] = [{"_id": value, "status": "confirmed"} for value in ids] + [{"status": "no id"}]
    lists: list[list[Any]] = [
        ["r-1", "r-3"],
        [oid[0], oid[2]],
        [],
        ["r-1", oid[0]],
        [1, 2],
        [1.0],
        [True],
        [None],
        ["r-1", None],
        [[1, 2]],
        [{"event": "e", "n": 1}],
        [oid[1]] * 3,
        [""],
        ["R-1"],
    ]
    case_blind = collation({"locale": "en", "strength": 2})
    for values in lists:
        for query in (
            {"_id": {"$in": values}},
            {"_id": {"$in": values}, "status": "confirmed"},
            {"_id": {"$in": values}, "$or": [{"status": "no id"}, {"status": {"$in": ["confirmed", "sent"]}}]},
            {"_id": {"$in": values}, "status": "waitlisted"},
            {"status": "confirmed", "_id": {"$in": values}},
        ):
            for doc in docs:
                for how in (None, case_blind):
                    expected = general(doc, query, collation=how)
                    assert matches(doc, query, collation=how) is expected, (doc, query, how)


def test_an_outbox_relay_marks_exactly_the_events_it_names(tmp_path: Path) -> None:
    match_id_lists_by_set()
    read_indexes_once_per_write()
    engine = Storage(str(tmp_path / "db"), enable_oplog=False)
    try:
        engine.create_index("plenary_ticketing", "outbox", "sent_at_1__id_1", {"sent_at": 1, "_id": 1})
        rows = [{"_id": ObjectId(), "type": "ticket.issued", "sent_at": None} for _ in range(60)]
        engine.insert("plenary_ticketing", "outbox", rows)
        engine.release_thread_snapshot()
        published = [row["_id"] for row in rows[:25]] + [ObjectId(), "not-an-event"]
        engine.update_matching(
            "plenary_ticketing",
            "outbox",
            {"_id": {"$in": published}},
            {"$set": {"sent_at": datetime.now(UTC)}},
            multi=True,
        )
        engine.release_thread_snapshot()
        unsent = engine.find_matching("plenary_ticketing", "outbox", {"sent_at": None})
        assert sorted(row["_id"] for row in unsent) == sorted(row["_id"] for row in rows[25:])
    finally:
        engine.close()
