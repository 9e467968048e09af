"""Organisers' CSV imports: accepted at once, registered row by row in the background, progress in MongoDB.

The rows are kept in MongoDB until the import is done and each worker holds a lease on its job, so
an import whose process stopped is picked up again by the background loop; rows it had already
registered are recognised by their import id and still count as imported.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.errors import ConnectionFailure, ExecutionTimeout, PyMongoError, WTimeoutError

from plenary_kit.logs import get_logger
from plenary_kit.mongo import Document
from registration import csvfiles, domain
from registration.domain import RegistrationRejected
from registration.handlers import Registrations
from registration.store import Store

log = get_logger(__name__)

LEASE = timedelta(seconds=30)
# The database being unreachable, not anything wrong with a row: wait and carry on.
_OUTAGES = (ConnectionFailure, ExecutionTimeout, WTimeoutError)
# Progress is written every this many rows or seconds, whichever comes first.
FLUSH_ROWS = 25
FLUSH_SECONDS = 1.0
RESUME_POLL_SECONDS = 5.0


class Imports:
    def __init__(self, store: Store, registrations: Registrations) -> None:
        self._store = store
        self._registrations = registrations
        # This process's name on the leases it holds.
        self._owner = uuid.uuid4().hex
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, event_id: str, text: str) -> Document:
        """Check the file, keep its rows and start registering them; the job as GET /imports/{id} shows it."""
        event = await self._store.event(event_id)
        if event is None:
            raise domain.event_not_found()
        try:
            parsed = csvfiles.parse_import(text, event.get("questions", []))
        except csvfiles.ImportRefused as exc:
            raise RegistrationRejected(exc.status, exc.code, exc.message) from exc
        now = datetime.now(UTC)
        job: Document = {
            "_id": str(uuid.uuid4()),
            "event_id": event_id,
            "status": "running",
            "total": len(parsed.rows),
            "processed": 0,
            "imported": 0,
            "rejected": 0,
            "skipped": 0,
            "rows": [],
            "created_at": now,
            "updated_at": now,
            "lease_owner": self._owner,
            "lease_until": now + LEASE,
        }
        await self._store.insert_import(job, parsed.columns, parsed.rows)
        log.info("import_started", import_id=job["_id"], event_id=event_id, total=job["total"])
        self._spawn(job["_id"])
        return job

    async def resume_abandoned(self) -> int:
        """Take over imports whose worker stopped renewing its lease."""
        resumed = 0
        while True:
            now = datetime.now(UTC)
            job = await self._store.claim_abandoned_import(self._owner, now, now + LEASE)
            if job is None:
                return resumed
            log.info("import_resumed", import_id=job["_id"], processed=job["processed"])
            self._spawn(job["_id"])
            resumed += 1

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, import_id: str) -> None:
        task = asyncio.create_task(self._run(import_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, import_id: str) -> None:
        job = await self._store.import_job(import_id)
        if job is None or job["status"] != "running":
            return
        event = await self._store.event(job["event_id"])
        columns, rows = await self._store.import_rows(import_id)
        questions = event.get("questions", []) if event else []
        outcomes: list[Document] = []
        flushed = time.monotonic()
        for number, *cells in rows[job["processed"] :]:
            outcomes.append(await self._row(event, columns, number, cells, questions, import_id))
            if len(outcomes) >= FLUSH_ROWS or time.monotonic() - flushed >= FLUSH_SECONDS:
                if not await self._flush(import_id, outcomes):
                    return
                outcomes, flushed = [], time.monotonic()
        if outcomes and not await self._flush(import_id, outcomes):
            return
        await self._retrying(lambda: self._store.finish_import(import_id, self._owner, datetime.now(UTC)))
        log.info("import_done", import_id=import_id)

    async def _flush(self, import_id: str, outcomes: list[Document]) -> bool:
        async def record() -> bool:
            now = datetime.now(UTC)
            return await self._store.record_import_progress(import_id, self._owner, outcomes, now + LEASE, now)

        held = await self._retrying(record)
        if not held:
            log.warning("import_lease_lost", import_id=import_id)
        return held

    async def _row(
        self,
        event: Document | None,
        columns: list[str],
        number: int,
        cells: list[str],
        questions: list[Document],
        import_id: str,
    ) -> Document:
        if event is None:
            return {"row": number, "outcome": "rejected", "reason": "The event no longer exists."}
        try:
            request = csvfiles.row_request(columns, cells, questions)
        except ValueError as exc:
            return {"row": number, "outcome": "rejected", "reason": str(exc)}
        try:
            outcome = await self._retrying(lambda: self._registrations.import_registration(event, request, import_id))
        except RegistrationRejected as exc:
            return {"row": number, "outcome": "rejected", "reason": _reason(exc)}
        except Exception as exc:  # one row's failure must not stop the rest of the file
            log.exception("import_row_failed", import_id=import_id, row=number, error=type(exc).__name__)
            return {"row": number, "outcome": "rejected", "reason": "This row could not be imported; please retry it."}
        row: Document = {
            "row": number,
            "outcome": outcome.outcome,
            "registration_id": outcome.registration_id,
            "status": outcome.status,
        }
        if outcome.outcome == "skipped":
            row["reason"] = "This email address is already registered for this event."
        return row

    async def _retrying(self, step: Any) -> Any:
        """Wait out an unreachable database instead of failing rows that would have gone in."""
        backoff = 0.2
        while True:
            try:
                return await step()
            except _OUTAGES as exc:
                log.warning("import_retry", error=type(exc).__name__, retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)


async def resume_imports_forever(imports: Imports, poll_seconds: float = RESUME_POLL_SECONDS) -> None:
    while True:
        try:
            await imports.resume_abandoned()
        except PyMongoError as exc:
            log.warning("import_resume_retry", error=type(exc).__name__)
        except Exception as exc:  # keep looking for abandoned imports whatever one of them did
            log.exception("import_resume_failed", error=type(exc).__name__)
        await asyncio.sleep(poll_seconds)


def _reason(exc: RegistrationRejected) -> str:
    fields = exc.extra.get("fields")
    if fields:
        return "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return exc.message
