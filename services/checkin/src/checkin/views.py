"""What devices and organisers read: the offline snapshot, live attendance, no-shows and alerts."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from checkin import domain
from checkin.door import alert_public
from checkin.store import Store
from plenary_kit.logs import get_logger
from plenary_kit.mongo import Document

log = get_logger(__name__)


def _iso(value: datetime | None) -> str | None:
    return domain.to_millis(value).isoformat() if value is not None else None


def _key_text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Snapshots:
    """The event as a door device needs it offline: every ticket's holder and status, keys, admissions.

    Versions come from the event's counter, which ticket, registration and admission changes all
    take; a device sends back the version it has and gets only the tickets and admissions changed
    since.
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    async def snapshot(self, event_id: str, since: int) -> dict[str, Any]:
        # Read the version first: a change committed meanwhile comes again next time rather than never.
        version = await self._store.version(event_id)
        event = await self._store.event(event_id)
        tickets = [_ticket_public(row) for row in await self._store.tickets_for(event_id, since)]
        return {
            "event_id": event_id,
            "version": version,
            "complete": since == 0,
            "event": _event_public(event) if event else None,
            "keys": [
                {"key_id": key["key_id"], "public_key": _key_text(bytes(key["public_key"]))}
                for key in await self._store.public_keys(event_id)
            ],
            "tickets": tickets,
            "revocations": [ticket["ticket_id"] for ticket in tickets if ticket["status"] != "valid"],
            "admissions": [
                {
                    "ticket_id": row["_id"],
                    "first_at": _iso(row["first_at"]),
                    "first_gate": row["first_gate"],
                    "inside": row["inside"],
                }
                for row in await self._store.admissions_for(event_id, since)
            ],
        }

    async def no_shows(self, event_id: str) -> list[dict[str, Any]]:
        """Delegates still registered whose ticket has not been scanned in at any gate."""
        registrations = await self._store.counted_registrations(event_id)
        admitted = {row["_id"] for row in await self._store.admissions_for(event_id)}
        by_registration: dict[str, list[Document]] = {}
        for ticket in await self._store.tickets_of([row["_id"] for row in registrations]):
            by_registration.setdefault(ticket["registration_id"], []).append(ticket)
        absent = []
        for row in registrations:
            tickets = by_registration.get(row["_id"], [])
            if any(ticket["_id"] in admitted for ticket in tickets):
                continue
            valid = [ticket for ticket in tickets if ticket.get("ticket_type") and not ticket.get("revoked_at")]
            absent.append(
                {
                    "registration_id": row["_id"],
                    "ticket_id": valid[-1]["_id"] if valid else None,
                    "name": row.get("name", ""),
                    "organisation": row.get("organisation", ""),
                    "ticket_type": row.get("ticket_type", ""),
                }
            )
        return sorted(absent, key=lambda row: (row["name"].casefold(), row["registration_id"]))

    async def alerts(self, event_id: str, limit: int) -> list[dict[str, Any]]:
        return [alert_public(alert) for alert in await self._store.alerts_for(event_id, limit)]


def _ticket_public(row: Document) -> dict[str, Any]:
    registration = row.get("registration") or {}
    state = domain.state_at(
        row.get("ticket_type"), row.get("revoked_at"), registration.get("cancelled_at"), [], None
    )
    return {
        "ticket_id": row["_id"],
        "registration_id": row["registration_id"],
        "name": registration.get("name", ""),
        "organisation": registration.get("organisation", ""),
        "ticket_type": row.get("ticket_type", ""),
        "sessions": registration.get("sessions", []),
        "status": domain.ticket_status(state) if state else "revoked",
    }


def _event_public(event: Document) -> dict[str, Any]:
    return {
        "title": event["title"],
        "venue": event["venue"],
        "starts_at": _iso(event["starts_at"]),
        "ends_at": _iso(event["ends_at"]),
        "timezone": event["timezone"],
        "sessions": [
            {
                "code": session["code"],
                "title": session["title"],
                "starts_at": _iso(session["starts_at"]),
                "ends_at": _iso(session["ends_at"]),
            }
            for session in event.get("sessions", [])
        ],
    }


class LiveAttendance:
    """Pushes each event's attendance to its watchers within a second of a change.

    One reader per watched event, however many dashboards watch it. A scan decided in this process
    wakes the reader at once; scans decided by other replicas, and registrations arriving through
    the consumers, move the event's snapshot version, which the reader checks every POLL seconds
    (one document by id), and a full reading comes every REFRESH seconds whatever happened. The
    figures themselves are the incrementally kept counters.
    """

    POLL = 0.25
    REFRESH = 2.0
    # The least time between two readings: the first scan after a quiet spell is read at once, a
    # burst of scans costs a few readings a second rather than one per scan.
    MIN_INTERVAL = 0.25

    def __init__(self, store: Store) -> None:
        self._store = store
        self._watchers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._wakers: dict[str, asyncio.Event] = {}
        self._readers: dict[str, asyncio.Task[None]] = {}

    async def current(self, event_id: str) -> dict[str, Any]:
        figures = domain.attendance(await self._store.counters_for(event_id))
        return {**figures, "updated_at": datetime.now(UTC).isoformat()}

    def changed(self, event_id: str) -> None:
        """A scan of this event was just decided here."""
        waker = self._wakers.get(event_id)
        if waker is not None:
            waker.set()

    async def watch(self, event_id: str, keep_alive: float) -> AsyncIterator[dict[str, Any] | None]:
        """Attendance now, then again after every change, for as long as the caller listens.

        None comes after `keep_alive` seconds without a change, for the caller to show it is alive.
        """
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1)
        self._watchers.setdefault(event_id, set()).add(queue)
        if event_id not in self._readers:
            self._wakers[event_id] = asyncio.Event()
            self._readers[event_id] = asyncio.create_task(self._read(event_id))
        try:
            yield await self.current(event_id)
            while True:
                try:
                    yield await asyncio.wait_for(queue.get(), timeout=keep_alive)
                except TimeoutError:
                    yield None
        finally:
            watchers = self._watchers.get(event_id, set())
            watchers.discard(queue)
            if not watchers:
                self._watchers.pop(event_id, None)
                self._wakers.pop(event_id, None)
                reader = self._readers.pop(event_id, None)
                if reader is not None:
                    reader.cancel()

    async def _read(self, event_id: str) -> None:
        waker = self._wakers[event_id]
        loop = asyncio.get_running_loop()
        last_figures: str | None = None
        last_version: int | None = None
        last_read = 0.0
        while True:
            try:
                try:
                    await asyncio.wait_for(waker.wait(), timeout=self.POLL)
                    woken = True
                except TimeoutError:
                    woken = False
                waker.clear()
                if not woken:
                    # Scans decided in another process, and registrations counted, move the event's
                    # version: one read by id, however many scans the event has had.
                    latest = await self._store.version(event_id)
                    woken = latest != last_version
                    last_version = latest
                if not woken and loop.time() - last_read < self.REFRESH:
                    continue
                pause = self.MIN_INTERVAL - (loop.time() - last_read)
                if pause > 0:
                    await asyncio.sleep(pause)
                    waker.clear()
                last_read = loop.time()
                state = await self.current(event_id)
                figures = json.dumps({k: v for k, v in state.items() if k != "updated_at"}, sort_keys=True)
                if figures == last_figures:
                    continue
                last_figures = figures
                for queue in list(self._watchers.get(event_id, ())):
                    if queue.full():
                        queue.get_nowait()
                    queue.put_nowait(state)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database hiccup must not end the stream
                log.warning("attendance_read_failed", event_id=event_id, error=type(exc).__name__)
                await asyncio.sleep(1.0)
