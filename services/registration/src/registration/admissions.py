"""The admission desk: registrations for one event are admitted in batches, one transaction per batch.

Every registration for an event changes the same counter document, and transactions that update one
document serialise: each one pays for its own round trips, commit and write conflicts. The desk
keeps one queue per event in this process. Whoever arrives while a batch is being admitted waits
for the next one, and the next batch takes everyone waiting (up to a limit). A quiet event admits
each registration on its own at once; a surge is admitted tens at a time, so the cost of the
transaction is shared and the counter document sees one writer per process.
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

# The most arrivals one transaction admits; more wait for the next batch.
MAX_BATCH = 100


@dataclass
class _Waiting(Generic[Item, Result]):
    item: Item
    reply: asyncio.Future[Result] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class AdmissionDesk(Generic[Item, Result]):
    """Queues items per key and hands each key's queue to `admit` in batches, one batch at a time.

    `admit` gets the items of one batch in arrival order and returns one outcome per item: a result,
    or the exception that item's caller should see. A failure of `admit` itself fails the whole batch.
    """

    def __init__(
        self,
        admit: Callable[[str, list[Item]], Awaitable[list[Result | Exception]]],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._admit = admit
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
                self._drain(key), name=f"admissions-{key}", context=contextvars.Context()
            )
        # The caller may go away (a dropped connection); its registration is still admitted.
        return await asyncio.shield(waiting.reply)

    async def _drain(self, key: str) -> None:
        try:
            while queue := self._queues.get(key):
                batch, rest = queue[: self._max_batch], queue[self._max_batch :]
                if rest:
                    self._queues[key] = rest
                else:
                    del self._queues[key]
                await self._admit_batch(key, batch)
        finally:
            del self._workers[key]

    async def _admit_batch(self, key: str, batch: list[_Waiting[Item, Result]]) -> None:
        try:
            outcomes = await self._admit(key, [w.item for w in batch])
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
