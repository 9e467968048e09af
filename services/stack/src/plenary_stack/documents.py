"""`python -m plenary_stack.documents ARGS`: the embedded document server (SecantusDB), tuned for the stack.

Takes SecantusDB's own command-line arguments and makes six changes before it starts:

- A shorter GIL switch interval. The server runs one thread per connection in one Python process.
  With the default interval (5 ms), a thread busy with one client's batch keeps every other client's
  short statement waiting up to 5 ms at each of its many I/O steps; under a surge a 2 ms lookup took
  hundreds.
- Its TTL sweeper lets go of its read snapshot after each sweep. The sweeper runs every 60 s on a
  thread of its own and then waits for the next sweep with its cursors still positioned, which keeps
  WiredTiger's oldest snapshot where the sweep left it. WiredTiger must then keep every version of
  every document changed since, so the pages of hot documents (counters, the outbox) grow past the
  size at which WiredTiger evicts them by force; the eviction cannot succeed while the snapshot is
  held, and each request that touches such a page sleeps and tries again. From the first sweep on,
  every request of every service slowed to hundreds of milliseconds and then seconds, until the next
  sweep released the snapshot and took a new one. The server releases a connection's snapshot after
  each request in the same way (`Storage.release_thread_snapshot`); the sweeper did not.
- A transaction lets go of its cursors' positions after each statement. A multi-document transaction
  has a WiredTiger session of its own, whose cursors stayed on the pages they last read from one
  statement to the next, while the client worked out its next step. A positioned cursor keeps its
  page from being evicted. When a hot page (the event's counters, an outbox) had grown to the size
  at which WiredTiger evicts it by force, some transaction was nearly always between statements with
  a cursor on it: the eviction failed over and over, a thousand times a second, and every request
  that touched the page waited on it. About a minute into a registration surge all four services
  stalled for one to three seconds at a time. Results never depend on a cursor's position between
  statements (a statement's results are read out in full before it answers), and the transaction's
  snapshot stays where it was, so releasing the positions changes nothing a client sees.
- A write reads a collection's index definitions once. SecantusDB reads them from its catalog table
  (a cursor walk and a BSON decode per index) four or five times for every document it inserts,
  updates or deletes: to check unique keys, to validate geo keys, to write and to delete index
  entries. In a registration surge that was a quarter of the server's time. Within one write
  statement the definitions cannot change: the statement holds the collection's lock, which every
  index change (create, drop, modify) takes too, and its snapshot is fixed. The one change a write
  makes itself, flagging an index multikey when a document holds an array, drops what was read.
  What is remembered is dropped when the statement ends, so the next statement, and a retry after
  a write conflict, read the catalog afresh.
- A filter on a list of ids, `{_id: {$in: [...]}, ...}`, is checked by looking the document's id up
  in a set. SecantusDB compares the id with each listed value in turn, with the care numbers and
  arrays need, and checks each document several times in one update; an outbox relay marking 40
  events sent spent half its time there. The set is used only where the answer is certain to be the
  same: no collation, the id condition first, every listed value a string or every one an ObjectId,
  and a document id of that same type (an id is never an array). The filter's other conditions are
  then checked as before; anything else is checked as before throughout.
- WiredTiger keys and values are packed and unpacked without re-reading their format each time.
  The storage engine's Python binding parses a table's format string ("SSq", "u", ...) for every
  key and value it writes or reads, with a generator per column; py-spy found a sixth of the
  server's time in a registration surge packing and unpacking. For formats of only NUL-terminated
  strings, byte strings and integers (every table SecantusDB makes), the same bytes are now made
  directly, with the binding's own integer encoding; any other format or value goes to the
  binding's own code.
"""

from __future__ import annotations

import contextlib
import functools
import runpy
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import secantus.query
import secantus.storage
import wiredtiger
from bson import ObjectId
from secantus.storage import Storage, UserTransactionHandle, _retry_write_conflicts
from wiredtiger.intpacking import pack_int, unpack_int

SWITCH_INTERVAL_SECONDS = 0.0005


def release_snapshot_after_ttl_sweeps() -> None:
    """Make every TTL sweep release the sweeping thread's WiredTiger snapshot when it ends."""
    sweep = Storage.prune_ttl_all_collections
    if getattr(sweep, "releases_snapshot", False):
        return

    def sweep_then_release(self: Storage, *args: Any, **kwargs: Any) -> int:
        try:
            return sweep(self, *args, **kwargs)
        finally:
            self.release_thread_snapshot()

    sweep_then_release.releases_snapshot = True  # type: ignore[attr-defined]
    Storage.prune_ttl_all_collections = sweep_then_release  # type: ignore[method-assign]


def release_cursors_between_statements() -> None:
    """Make every statement of a transaction reset the transaction's cursors when it ends."""
    use = Storage.use_user_transaction
    if getattr(use, "releases_cursors", False):
        return

    @contextlib.contextmanager
    def use_then_release(self: Storage, handle: UserTransactionHandle) -> Iterator[None]:
        try:
            with use(self, handle):
                yield
        finally:
            for cursor in list(handle.cursors.values()):
                # A reset only drops the position; the cursor stays open for the next statement,
                # which resets it again before its own search anyway.
                with contextlib.suppress(Exception):
                    cursor.reset()

    use_then_release.releases_cursors = True  # type: ignore[attr-defined]
    Storage.use_user_transaction = use_then_release  # type: ignore[method-assign,assignment]


# The write statements that read index definitions per document. Each is retried as a whole on a
# write conflict, after its transaction rolled back; what it remembers must not outlive an attempt.
WRITE_STATEMENTS = (
    "_insert_chunk",
    "_update_matching_single_txn",
    "_update_chunk",
    "_delete_matching_single_txn",
    "_delete_chunk",
)

IndexDefinition = tuple[str, dict[str, Any], dict[str, Any]]


class _Statement(threading.local):
    """The index definitions one thread's current write statement has read, by (db, collection)."""

    indexes: dict[tuple[str, str], list[IndexDefinition]] | None = None


_statement = _Statement()


def read_indexes_once_per_write() -> None:
    """Make each write statement read a collection's index definitions once, not once per document."""
    if getattr(Storage._iter_indexes, "remembers", False):
        return
    read = Storage._iter_indexes
    mark_multikey = Storage._maybe_mark_multikey

    def read_remembered(self: Storage, db: str, coll: str) -> Iterator[IndexDefinition]:
        remembered = _statement.indexes
        if remembered is None:
            return iter(read(self, db, coll))
        definitions = remembered.get((db, coll))
        if definitions is None:
            definitions = remembered[(db, coll)] = list(read(self, db, coll))
        # Callers get dicts of their own, as from a fresh read.
        return iter([(name, dict(key), dict(options)) for name, key, options in definitions])

    def mark_then_forget(
        self: Storage, db: str, coll: str, doc: Any, indexes: Any, already_multikey: set[str]
    ) -> set[str]:
        before = len(already_multikey)
        flagged = mark_multikey(self, db, coll, doc, indexes, already_multikey)
        remembered = _statement.indexes
        if remembered is not None and len(flagged) != before:
            # A definition may have been rewritten; the statement's next read sees the change.
            remembered.pop((db, coll), None)
        return flagged

    def statement(attempt: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(attempt)
        def remembering(self: Storage, *args: Any, **kwargs: Any) -> Any:
            outermost = _statement.indexes is None  # a statement inside another shares its reads
            if outermost:
                _statement.indexes = {}
            try:
                return attempt(self, *args, **kwargs)
            except BaseException:
                # Rolled back, perhaps with a multikey flag read after it was written: read afresh.
                if _statement.indexes is not None:
                    _statement.indexes.clear()
                raise
            finally:
                if outermost:
                    _statement.indexes = None

        return remembering

    for name in WRITE_STATEMENTS:
        # Unwrap the conflict retry, scope one attempt, and retry that: each attempt starts afresh.
        attempt = getattr(Storage, name).__wrapped__
        setattr(Storage, name, _retry_write_conflicts(statement(attempt)))
    read_remembered.remembers = True  # type: ignore[attr-defined]
    Storage._iter_indexes = read_remembered  # type: ignore[method-assign,assignment]
    Storage._maybe_mark_multikey = mark_then_forget  # type: ignore[method-assign]


# How a filter that starts with `_id: {$in: [...]}` is answered by a set: the ids' one type, the ids,
# and the filter's other conditions, checked as before once the id is found.
IdPlan = tuple[type, frozenset[Any], dict[str, Any]]


class _Planned(NamedTuple):
    """A filter planned, with its id list and the sizes of both at the time, and the plan."""

    query: dict[str, Any]
    values: list[Any]
    query_size: int
    values_size: int
    plan: IdPlan | None


class _LastIdFilter(threading.local):
    """The filter one thread last planned."""

    value: _Planned | None = None


_last_id_filter = _LastIdFilter()


def _id_plan(query: dict[str, Any]) -> IdPlan | None:
    """How to answer `query` from a set, or None where a set would not give SecantusDB's answers."""
    if next(iter(query)) != "_id":  # conditions are checked in order; the id's must come first
        return None
    condition = query["_id"]
    if type(condition) is not dict or len(condition) != 1 or type(values := condition.get("$in")) is not list:
        return None
    last = _last_id_filter.value
    # A statement checks many documents against one filter, which nothing changes meanwhile.
    if (
        last is not None
        and last.query is query
        and last.values is values
        and (last.query_size, last.values_size) == (len(query), len(values))
    ):
        return last.plan
    plan: IdPlan | None = None
    if values and (kind := type(values[0])) in (str, ObjectId) and all(type(value) is kind for value in values):
        plan = (kind, frozenset(values), {key: value for key, value in query.items() if key != "_id"})
    _last_id_filter.value = _Planned(query, values, len(query), len(values), plan)
    return plan


def match_id_lists_by_set() -> None:
    """Answer `{_id: {$in: [ids]}, ...}` by set membership where that is the same as SecantusDB's answer."""
    general = secantus.query.matches
    if getattr(general, "id_lists_by_set", False):
        return

    def matches(doc: Any, query: Any, *, vars: Any = None, collation: Any = None) -> bool:
        if collation is None and query and type(query) is dict:
            plan = _id_plan(query)
            if plan is not None and type(found := doc.get("_id")) is plan[0]:
                if found not in plan[1]:
                    return False
                return general(doc, plan[2], vars=vars) if plan[2] else True
        return general(doc, query, vars=vars, collation=collation)

    matches.id_lists_by_set = True  # type: ignore[attr-defined]
    matches.general = general  # type: ignore[attr-defined]
    # The storage engine imported the function by name; later imports take it from its module.
    secantus.query.matches = matches
    secantus.storage.matches = matches  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=64)
def _plain_columns(fmt: str) -> str | None:
    """The format itself if every column is S (string), u (bytes) or q (integer), else None."""
    return fmt if fmt and all(column in "Suq" for column in fmt) else None


def packers(
    general_pack: Callable[..., bytes], general_unpack: Callable[[str, Any], list[Any]]
) -> tuple[Callable[..., bytes], Callable[[str, Any], list[Any]]]:
    """`pack` and `unpack` as the binding's, made directly for plain formats (see `_plain_columns`)."""

    def pack(fmt: str, *values: Any) -> bytes:
        columns = _plain_columns(fmt)
        if columns is None or len(values) != len(columns):
            return general_pack(fmt, *values)
        if columns == "u" and type(values[0]) is bytes:
            return values[0]  # a value: the bytes as they are
        parts: list[bytes] = []
        last = len(columns) - 1
        for index, (column, value) in enumerate(zip(columns, values, strict=True)):
            if column == "S" and type(value) is str:
                # Up to the first NUL, then the terminating NUL.
                parts += (value.partition("\0")[0].encode(), b"\0")
            elif column == "u" and type(value) is bytes:
                if index != last:  # only the last byte string runs to the end unannounced
                    parts.append(pack_int(len(value)))
                parts.append(value)
            elif column == "q" and type(value) is int:
                parts.append(pack_int(value))
            else:
                return general_pack(fmt, *values)
        return b"".join(parts)

    def unpack(fmt: str, packed: Any) -> list[Any]:
        columns = _plain_columns(fmt)
        if columns is None or type(packed) is not bytes:
            return general_unpack(fmt, packed)
        if columns == "u":
            return [packed]
        rest: bytes = packed
        values: list[Any] = []
        last = len(columns) - 1
        for index, column in enumerate(columns):
            if column == "S":
                end = rest.find(b"\0")
                if end < 0:
                    return general_unpack(fmt, packed)
                values.append(rest[:end].decode())
                rest = rest[end + 1 :]
            elif column == "u" and index == last:
                values.append(rest)
                rest = b""
            elif column == "u":
                size, rest = unpack_int(rest)
                values.append(rest[:size])
                rest = rest[size:]
            else:
                value, rest = unpack_int(rest)
                values.append(value)
        return values

    return pack, unpack


def pack_plain_formats_directly() -> None:
    """Make the binding's cursors pack and unpack plain formats directly (see `packers`)."""
    binding = wiredtiger.Cursor.set_key.__globals__
    if getattr(binding["pack"], "plain_formats_directly", False):
        return
    pack, unpack = packers(binding["pack"], binding["unpack"])
    pack.plain_formats_directly = True  # type: ignore[attr-defined]
    binding["pack"], binding["unpack"] = pack, unpack


def main() -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    release_snapshot_after_ttl_sweeps()
    release_cursors_between_statements()
    read_indexes_once_per_write()
    match_id_lists_by_set()
    pack_plain_formats_directly()
    sys.argv = ["secantus", *sys.argv[1:]]
    runpy.run_module("secantus", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
