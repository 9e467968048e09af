"""A desk that serves requests in batches: one queue per key, one batch at a time, one transaction per batch.

Work that touches the same documents for one key (an event's capacity counters for registrations,
its attendance counters and admissions for scans) serialises in the database anyway: each
transaction pays for its own round trips, commit and write conflicts. The desk keeps one queue per
key in this process. Whoever arrives while a batch is being served waits for the next one, and the
next batch takes everyone waiting (up to a limit). A quiet key serves each request on its own at
once; a surge is served tens at a time, so the cost of a transaction is shared and the hot documents
see one writer per process.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from plenary_kit.logs import get_logger

log = get_logger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

# The most requests one batch serves; more wait for the next batch.
MAX_BATCH = 100


@dataclass
class _Waiting(Generic[Item, Result]):
    item: Item
    reply: asyncio.Future[Result] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class BatchDesk(Generic[Item, Result]):
    """Queues items per key and hands each key's queue to `serve` in batches, one batch at a time.

    `serve` gets the items of one batch in arrival order and returns one outcome per item: a result,
    or the exception that item's caller should see. A failure of `serve` itself fails the whole batch.
    """

    def __init__(
        self,
        serve: Callable[[str, list[Item]], Awaitable[list[Result | Exception]]],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._serve = serve
        self._max_batch = max_batch
        self._queues: dict[str, list[_Waiting[Item, Result]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    async def submit(self, key: str, item: Item) -> Result:
        waiting: _Waiting[Item, Result] = _Waiting(item)
        # Retrieve the outcome even when nobody awaits it any more, so a failure is not reported as lost.
        waiting.reply.add_done_callback(lambda reply: reply.cancelled() or reply.exception())
        self._queues.setdefault(key, []).append(waiting)
        if key not in self._workers:
            # A context of its own: the batch serves many requests, not the one that happened to start it.
            self._workers[key] = asyncio.create_task(
                self._drain(key), name=f"desk-{key}", context=contextvars.Context()
            )
        # The caller may go away (a dropped connection); its request is still served.
        return await asyncio.shield(waiting.reply)

    async def _drain(self, key: str) -> None:
        try:
            while queue := self._queues.get(key):
                batch, rest = queue[: self._max_batch], queue[self._max_batch :]
                if rest:
                    self._queues[key] = rest
                else:
                    del self._queues[key]
                await self._serve_batch(key, batch)
        finally:
            del self._workers[key]

    async def _serve_batch(self, key: str, batch: list[_Waiting[Item, Result]]) -> None:
        try:
            outcomes = await self._serve(key, [w.item for w in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(outcomes)} outcomes for a batch of {len(batch)}")
        except BaseException as exc:
            for waiting in batch:
                if not waiting.reply.done():
                    waiting.reply.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if waiting.reply.done():
                continue
            if isinstance(outcome, Exception):
                waiting.reply.set_exception(outcome)
            else:
                waiting.reply.set_result(outcome)
