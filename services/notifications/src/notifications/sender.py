"""Delivers queued messages over SMTP: claim, send, then record the outcome with its event.

Each message is a document keyed by its idempotency key (registration, kind, version),
written in the same transaction as the consumed event that caused it, so a redelivered
or replayed event finds the key taken and queues nothing. Its states:

    pending --claim--> sending --250--> sent               (+ notification.sent)
                          |----4xx, refused, timeout--> retrying --due--> sending ...
                          '----5xx, or past domain.RETRY_WINDOW--> failed  (+ notification.failed)

A sender claims a due message with one conditional update that sets it to "sending"
under a lease (domain.LEASE) and a claim id of its own; only the holder of that claim
can record the outcome. Once the SMTP server has accepted the message, the "sent" mark
and the `notification.sent` event are written in one transaction straight away.
Retry times live in the message document, so retries survive restarts.

The one narrow window in which a delegate can get a message twice: the SMTP server
has answered 250 to the message's data, and the process dies (or MongoDB stays
unreachable for the rest of the lease) before the "sent" mark commits. The message
is then still "sending"; when its lease runs out another sender takes it and sends it
again. The window is one database round trip long in the normal case. It cannot be
closed: SMTP has no way to ask a server whether it already has a message, and marking
the message sent before handing it over would turn the same crash into a lost email,
which is worse. The copy carries the same Message-ID (compose.Composer.message_id),
so mail clients that collapse duplicates show it once. Every other path — redelivered
events, replays, restarts, a sender that is merely slow (the SMTP timeout is well
inside the lease) — leaves exactly one email per idempotency key.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import parseaddr

import aiosmtplib
import structlog
from prometheus_client import Counter, Histogram
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from notifications import domain, smtp
from notifications.compose import Composer
from notifications.domain import DeliveryFailure, Kind, MessageContent, Status
from notifications.rate import SendRate
from notifications.settings import NotificationSettings
from notifications.store import Store
from plenary_kit import events
from plenary_kit.envelope import Envelope
from plenary_kit.logs import get_logger
from plenary_kit.mongo import Document, Session, in_transaction
from plenary_kit.outbox import Outbox

log = get_logger(__name__)

SOURCE = "notifications"

# How long a message named by the consumer is tried by key, from its first try, before it is left
# to the search (its transaction may not have committed when it was named).
NAMED_SECONDS = 2.0
# How soon a named message not claimable yet is tried again.
NAMED_RETRY_SECONDS = 0.02
# While named messages keep the sender busy, it still searches for every due message this often
# (retries, reminders, other senders' leftovers). The search reads every due message, so not often.
SEARCH_SECONDS = 5.0

MESSAGES = Counter("plenary_notifications_total", "Delivery attempts by kind and outcome", ["kind", "outcome"])
DELIVERY_SECONDS = Histogram(
    "plenary_notification_delivery_seconds",
    "Time from a message being queued to the SMTP server accepting it",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
)
UNMARKED_SECONDS = Histogram(
    "plenary_notification_unmarked_seconds",
    "Time from the SMTP server accepting a message to its sent mark committing: the window in which a crash"
    " sends it twice",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)


def classify(exc: BaseException) -> DeliveryFailure:
    """Whether trying again later can help: SMTP 4xx and connection trouble can, 5xx and bad input cannot."""
    reply: aiosmtplib.SMTPResponseException | None = None
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        reply = exc.recipients[0]
    elif isinstance(exc, aiosmtplib.SMTPResponseException):
        reply = exc
    reason = type(exc).__name__
    if reply is not None:
        text = f"{reply.code} {reply.message}"[:300]
        return DeliveryFailure(text, permanent=reply.code >= 500, code=reply.code, reason=reason)
    # Refused connections, disconnects and timeouts (aiosmtplib's included) are all OSErrors.
    return DeliveryFailure(f"{reason}: {exc}"[:300], permanent=not isinstance(exc, OSError), reason=reason)


def _lap(stages: dict[str, float], stage: str, since: float) -> float:
    """Record the milliseconds since `since` as `stage`; returns now, the start of the next stage."""
    now = time.monotonic()
    stages[stage] = round((now - since) * 1000, 1)
    return now


def _due_since(message: Document) -> datetime:
    """When the message became due: its scheduled time for a reminder, else when it was queued."""
    due_at: datetime | None = message.get("due_at")
    return due_at or message["created_at"]


class Sender:
    """The background loop that sends due messages, up to `concurrency` at a time.

    A message is claimed as soon as a place is free: one slow delivery (a mark waiting for the
    database, a slow SMTP answer) holds up only itself, not the messages claimed with it.
    """

    def __init__(
        self,
        client: AsyncMongoClient[Document],
        store: Store,
        outbox: Outbox,
        composer: Composer,
        settings: NotificationSettings,
        rate: SendRate,
        *,
        concurrency: int = 16,
        poll_seconds: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._store = store
        self._outbox = outbox
        self._composer = composer
        self._settings = settings
        self._rate = rate
        self._concurrency = concurrency
        self._poll = poll_seconds
        self._rng = rng or random.Random()
        self._envelope_from = parseaddr(settings.mail_from)[1]
        self._wake = asyncio.Event()
        # Messages queued in this process, by key, in the order named, with when each was first tried
        # (None: not yet): claimed by key before anything is searched for.
        self._named: dict[str, float | None] = {}
        self._last_search = 0.0
        self._in_flight: set[asyncio.Task[None]] = set()
        # Whether the last claim took every free place, so more may be waiting when a place frees.
        self._full = False

    def nudge(self, keys: Iterable[str] = ()) -> None:
        """Messages were queued (these, where the caller knows them): look now rather than at the next poll."""
        for key in keys:
            self._named.setdefault(key, None)
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.2
        try:
            while True:
                try:
                    await self.send_due()
                    backoff = 0.2
                except PyMongoError as exc:
                    log.warning("sender_waiting_for_database", error=type(exc).__name__, retry_in=backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                except Exception as exc:
                    # A bug must not silence every later email; the message it hit is retried after its lease.
                    log.exception("sender_error", error=type(exc).__name__)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), NAMED_RETRY_SECONDS if self._named else self._poll)
                except TimeoutError:
                    pass
        finally:
            # Stopping: a delivery cut short stays "sending" until its lease runs out, then goes again.
            for task in self._in_flight:
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def send_due(self) -> None:
        """Claim due messages into the free places and start delivering them."""
        # Cleared before looking, so a nudge that arrives while we look is not lost.
        self._wake.clear()
        free = self._concurrency - len(self._in_flight)
        if free <= 0:
            return
        claimed = await self._claim_batch(free)
        self._full = len(claimed) == free
        for message in claimed:
            task = asyncio.create_task(self._deliver_logged(message))
            self._in_flight.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._full:
            self._wake.set()

    async def _deliver_logged(self, message: Document) -> None:
        try:
            await self._deliver(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # That message stays "sending" until its lease runs out, then is tried again.
            log.error("delivery_error", message_id=message["_id"], error=type(exc).__name__, exc_info=exc)

    async def _claim_batch(self, limit: int) -> list[Document]:
        """Up to `limit` messages: those named by this process's consumer first, by key; the search for
        every due message when none is named, and at least every SEARCH_SECONDS so retries and other
        senders' leftovers go too.

        A name arrives before its transaction commits, so one not claimable yet is tried again
        shortly (NAMED_RETRY_SECONDS) for up to NAMED_SECONDS; after that the search finds it like any other.
        """
        now = datetime.now(UTC)
        lease_until, claim = now + domain.LEASE, str(uuid.uuid4())
        claimed: list[Document] = []
        started = time.monotonic()
        named = list(self._named)[:limit]
        if named:
            claimed = await self._store.claim(named, now, lease_until, claim)
            taken = {message["_id"] for message in claimed}
            for key in named:
                tried = self._named.pop(key)
                # Not claimable yet: to the back of the line, until it has been tried for NAMED_SECONDS.
                if key not in taken and (tried is None or started - tried < NAMED_SECONDS):
                    self._named[key] = started if tried is None else tried
        if len(claimed) < limit and (not named or started - self._last_search >= SEARCH_SECONDS):
            self._last_search = started
            claimed += await self._store.claim_due(now, lease_until, claim, limit - len(claimed))
            for message in claimed:
                self._named.pop(message["_id"], None)
        return claimed

    async def _deliver(self, message: Document) -> None:
        with structlog.contextvars.bound_contextvars(
            correlation_id=message.get("correlation_id"),
            causation_id=message.get("causation_id"),
            message_id=message["_id"],
            kind=message["kind"],
            attempt=message["attempts"],
        ):
            if message.get("due_at") is not None:
                current = await self._still_due(message)
                if current is None:
                    if await self._store.withdraw_claimed(message["_id"], message["claim"]):
                        log.info("notification_withdrawn", why="no_longer_due")
                    return
                message = {**message, "content": current.model_dump()}
            # Where a message's time goes, in the sent log line: building it, waiting for the send
            # rate, the SMTP exchange and the sent mark.
            stages: dict[str, float] = {}
            mark = time.monotonic()
            try:
                # Building a message with its QR image is tens of milliseconds of CPU: in a thread,
                # so the consumer sharing this event loop keeps queuing meanwhile.
                email, recipient = await asyncio.to_thread(self._compose, message)
            except Exception as exc:
                # A message that cannot be built never will be: fail it rather than retry for a day.
                failure = DeliveryFailure(f"not composed: {type(exc).__name__}", permanent=True, reason="compose")
                await self._settle(message, lambda: self._record_failure(message, failure))
                return
            mark = _lap(stages, "compose_ms", mark)
            # A database hiccup here leaves the message claimed; it is tried again when the lease ends.
            await self._rate.acquire()
            mark = _lap(stages, "rate_wait_ms", mark)
            try:
                mail = await smtp.hand_over(email, self._envelope_from, recipient, self._settings)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure = classify(exc)
                await self._settle(message, lambda: self._record_failure(message, failure))
                return
            # From here until the mark commits, a crash sends this message twice: mark first, QUIT after.
            accepted = _lap(stages, "smtp_ms", mark)
            try:
                await self._settle(message, lambda: self._record_sent(message, stages, accepted))
                UNMARKED_SECONDS.observe(time.monotonic() - accepted)
            finally:
                await mail.close()

    async def _still_due(self, message: Document) -> MessageContent | None:
        """A reminder or thank-you as the registration stands now; None if it is no longer due.

        Checked when it falls due, not only when it was scheduled: the delegate may have
        cancelled since, and their ticket or details may have changed.
        """
        projection = await self._store.projection(message["registration_id"])
        if projection is None:
            return None
        settings = self._settings
        due = domain.schedule(projection, settings.reminder_lead, settings.thank_you_delay)
        if message["_id"] not in [domain.message_key(projection["_id"], item.kind, item.version) for item in due]:
            return None
        public_url = settings.plenary_public_url
        return domain.confirmation_content(projection, public_url) or domain.content(projection, public_url)

    def _compose(self, message: Document) -> tuple[EmailMessage, str]:
        content = MessageContent.model_validate(message["content"])
        email = self._composer.compose(
            message["_id"],
            Kind(message["kind"]),
            content,
            created_at=message["created_at"],
            now=datetime.now(UTC),
        )
        return email, content.delegate.email

    async def _settle(self, message: Document, record: Callable[[], Awaitable[None]]) -> None:
        """Record an outcome, retrying through a database hiccup for as long as the claim lasts."""
        lease_ends = message["next_attempt_at"]
        backoff = 0.2
        while True:
            try:
                await record()
                return
            except PyMongoError as exc:
                if datetime.now(UTC) + timedelta(seconds=backoff) >= lease_ends:
                    log.error("notification_outcome_unrecorded", error=type(exc).__name__)
                    return
                log.warning("notification_outcome_retry", error=type(exc).__name__, retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _record_sent(self, message: Document, stages: dict[str, float], accepted: float) -> None:
        now = datetime.now(UTC)

        async def work(session: Session) -> bool:
            changes = {"sent_at": now, "last_error": None, "updated_at": now}
            if not await self._store.settle(message["_id"], message["claim"], Status.SENT, changes, session):
                return False
            data = events.NotificationSent(
                message_id=message["_id"], registration_id=message["registration_id"], kind=message["kind"], sent_at=now
            )
            await self._outbox.add(session, self._event(message, data))
            return True

        if not await in_transaction(self._client, work):
            log.warning("notification_claim_lost")
            return
        self._outbox.nudge()
        MESSAGES.labels(message["kind"], "sent").inc()
        waited = (now - _due_since(message)).total_seconds()
        DELIVERY_SECONDS.observe(waited)
        _lap(stages, "mark_ms", accepted)
        log.info("notification_sent", since_queued_ms=round(waited * 1000), **stages)

    async def _record_failure(self, message: Document, failure: DeliveryFailure) -> None:
        now = datetime.now(UTC)
        next_step = domain.after_failure(failure, message["attempts"], _due_since(message), now, self._rng)
        changes: Document = {"last_error": failure.error, "updated_at": now}
        if next_step.status == Status.RETRYING:
            changes["next_attempt_at"] = next_step.next_attempt_at
            if not await self._store.settle(message["_id"], message["claim"], Status.RETRYING, changes):
                log.warning("notification_claim_lost")
                return
            MESSAGES.labels(message["kind"], "retrying").inc()
            log.warning(
                "notification_retrying",
                error=failure.reason,
                smtp_status=failure.code,
                retry_at=str(next_step.next_attempt_at),
            )
            return

        async def work(session: Session) -> bool:
            changes["failed_at"] = now
            if not await self._store.settle(message["_id"], message["claim"], Status.FAILED, changes, session):
                return False
            data = events.NotificationFailed(
                message_id=message["_id"],
                registration_id=message["registration_id"],
                kind=message["kind"],
                error=failure.error,
            )
            await self._outbox.add(session, self._event(message, data))
            return True

        if not await in_transaction(self._client, work):
            log.warning("notification_claim_lost")
            return
        self._outbox.nudge()
        MESSAGES.labels(message["kind"], "failed").inc()
        log.error(
            "notification_failed", error=failure.reason, smtp_status=failure.code, permanent=failure.permanent
        )

    @staticmethod
    def _event(message: Document, data: events.EventData) -> Envelope:
        return Envelope.new(
            data,
            source=SOURCE,
            subject=message["registration_id"],
            correlation_id=message.get("correlation_id") or str(uuid.uuid4()),
            causation_id=message.get("causation_id"),
        )
