"""`python -m plenary_stack.documents ARGS`: the embedded document server (SecantusDB), tuned for the stack.

Takes SecantusDB's own command-line arguments and makes three changes before it starts:

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
"""

from __future__ import annotations

import contextlib
import runpy
import sys
from collections.abc import Iterator
from typing import Any

from secantus.storage import Storage, UserTransactionHandle

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


def main() -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    release_snapshot_after_ttl_sweeps()
    release_cursors_between_statements()
    sys.argv = ["secantus", *sys.argv[1:]]
    runpy.run_module("secantus", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
