"""Reminders, permanent failures and the organiser's resend, on a whole stack driven over HTTP.

The stack is this module's own: the notifications service is killed and started again, and
the Maildir is counted per recipient.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import journey
import pytest
from aiokafka import AIOKafkaConsumer
from journey import TEST_SETTINGS, eventually, organiser, register, running_stack
from pymongo import AsyncMongoClient

from plenary_kit import topics
from plenary_kit.envelope import Envelope
from plenary_stack.stack import EmbeddedStack, StackConfig

pytestmark = pytest.mark.timeout(600)

TITLE = "Stepping Up to Senior Leadership: Session 3"
VENUE = "Lancashire Leadership Centre, Preston"
CONTACT = "programmes@lancashire-leadership.example"
REMINDER_LEAD = timedelta(hours=24)
# The sink rejects every address at this domain for good (plenary_stack.smtp_sink).
NO_SUCH_MAILBOX = "no-such-mailbox.example"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    config = StackConfig.isolated(
        tmp_path_factory.mktemp("schedules"),
        "test",
        {
            **TEST_SETTINGS,
            "NOTIFICATIONS_REMINDER_LEAD_HOURS": "24",
        },
    )
    yield from running_stack(config)





def mails_to(maildir: Path, address: str) -> list[EmailMessage]:
    found = []
    for folder in ("new", "cur"):
        directory = maildir / folder
        for path in sorted(directory.iterdir()) if directory.is_dir() else []:
            parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            if address in [str(value).strip() for value in parsed.get_all("Delivered-To", [])]:
                found.append(parsed)
    return found


def subjects(maildir: Path, address: str) -> list[str]:
    return sorted(str(mail["Subject"]).strip() for mail in mails_to(maildir, address))


async def create_event(http: httpx.AsyncClient, stack: EmbeddedStack, starts_at: datetime) -> str:
    return await journey.create_event(
        http, stack, capacity=30, slug=f"stepping-up-{uuid.uuid4().hex[:8]}", title=TITLE, venue=VENUE,
        starts_at=starts_at.isoformat(), ends_at=(starts_at + timedelta(hours=3)).isoformat(),
        organiser_contact=CONTACT,
    )


async def delivery_log(http: httpx.AsyncClient, stack: EmbeddedStack, registration_id: str) -> list[dict[str, Any]]:
    reply = await http.get(
        f"{stack.config.url('notifications')}/api/v1/notifications",
        params={"registration_id": registration_id},
        headers=organiser(stack),
    )
    assert reply.status_code == 200, reply.text
    rows: list[dict[str, Any]] = reply.json()
    return rows


async def due_times(stack: EmbeddedStack, registration_id: str) -> dict[str, datetime]:
    """The reminder and thank-you times the notifications service keeps for a registration."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.config.mongo, tz_aware=True)
    try:
        registrations = client[f"{stack.config.db_prefix}_notifications"]["registrations"]
        projection = await registrations.find_one({"_id": registration_id}) or {}
        return {field: projection[field] for field in ("reminder_due_at", "thank_you_due_at") if field in projection}
    finally:
        await client.close()


def restart_notifications(stack: EmbeddedStack) -> None:
    """Kill the service as a crash would, then start it again and wait until it is ready."""
    service = stack.services["notifications"]
    service.kill()
    service.start()
    stack.wait_ready(120)


async def test_reminder_scheduled_before_a_restart_is_sent_after_it_once(stack: EmbeddedStack) -> None:
    maildir = stack.config.maildir
    reminder_subject = f"See you soon at {TITLE}: a reminder"
    # The reminder falls due a minute from now: after the restart, well within the test.
    starts_at = (datetime.now(UTC) + REMINDER_LEAD + timedelta(seconds=60)).replace(microsecond=0)
    async with httpx.AsyncClient(timeout=30.0) as http:
        event_id = await create_event(http, stack, starts_at)
        staying = f"grainne.{uuid.uuid4().hex[:8]}@ormskirk.example"
        leaving = f"tomasz.{uuid.uuid4().hex[:8]}@ormskirk.example"
        kept, cancelled = await register(http, stack, event_id, staying), await register(
            http, stack, event_id, leaving
        )

        async def confirmed_by_email() -> bool:
            return len(mails_to(maildir, leaving)) == 1

        await eventually(confirmed_by_email, 60, "the leaving delegate's confirmation")
        reply = await http.post(
            f"{stack.config.url('registration')}/api/v1/registrations/{cancelled['id']}/cancel",
            headers={"X-Manage-Token": cancelled["manage_token"]},
        )
        assert reply.status_code == 200, reply.text

        async def reminder_scheduled() -> dict[str, datetime]:
            return await due_times(stack, kept["id"])

        scheduled = await eventually(reminder_scheduled, 60, "the reminder to be scheduled")
        assert scheduled["reminder_due_at"] == starts_at - REMINDER_LEAD

        async def cancellation_told() -> bool:
            return len(mails_to(maildir, leaving)) == 2

        await eventually(cancellation_told, 60, "the cancelled delegate's confirmation and cancellation")
        assert "reminder" not in [row["kind"] for row in await delivery_log(http, stack, cancelled["id"])]
        assert await due_times(stack, cancelled["id"]) == {}

        await asyncio.to_thread(restart_notifications, stack)
        assert datetime.now(UTC) < starts_at - REMINDER_LEAD, "the restart took longer than the reminder's lead"
        assert reminder_subject not in subjects(maildir, staying)

        async def reminded() -> bool:
            return reminder_subject in subjects(maildir, staying)

        await eventually(reminded, 120, "the reminder after the restart")
        assert datetime.now(UTC) >= starts_at - REMINDER_LEAD

        async def logged_sent() -> bool:
            rows = await delivery_log(http, stack, kept["id"])
            return any(row["kind"] == "reminder" and row["status"] == "sent" for row in rows)

        await eventually(logged_sent, 30, "the delivery log to show the reminder sent")
        # A second sender, or the next poll, would have sent a copy by now if one were due.
        await asyncio.sleep(2)
        assert subjects(maildir, staying).count(reminder_subject) == 1
        assert reminder_subject not in subjects(maildir, leaving)
        (mail,) = [m for m in mails_to(maildir, staying) if str(m["Subject"]).strip() == reminder_subject]
        plain = mail.get_body(preferencelist=("plain",))
        assert plain is not None
        assert VENUE in plain.get_content() and CONTACT in plain.get_content()


async def notification_events(stack: EmbeddedStack, registration_id: str, event_type: str) -> list[Envelope]:
    reader = AIOKafkaConsumer(
        topics.NOTIFICATIONS, bootstrap_servers=stack.config.bootstrap, auto_offset_reset="earliest"
    )
    await reader.start()
    try:
        found: list[Envelope] = []
        deadline = time.monotonic() + 30
        while not found and time.monotonic() < deadline:
            batches = await reader.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    assert record.value is not None
                    envelope = Envelope.from_bytes(record.value)
                    if envelope.type == event_type and envelope.subject == registration_id:
                        found.append(envelope)
        return found
    finally:
        await reader.stop()


async def test_rejected_address_fails_for_good_and_shows_in_the_delivery_log(stack: EmbeddedStack) -> None:
    async with httpx.AsyncClient(timeout=30.0) as http:
        event_id = await create_event(http, stack, datetime.now(UTC) + timedelta(days=30))
        registration = await register(http, stack, event_id, f"old.address.{uuid.uuid4().hex[:6]}@{NO_SUCH_MAILBOX}")

        async def failed() -> list[dict[str, Any]]:
            rows = await delivery_log(http, stack, registration["id"])
            return [row for row in rows if row["kind"] == "confirmation" and row["status"] == "failed"]

        (row,) = await eventually(failed, 60, "the confirmation to fail")
        assert row["last_error"].startswith("550")
        assert row["attempts"] == 1
        (event,) = await notification_events(stack, registration["id"], "notification.failed")
        assert event.data["message_id"] == row["id"]
        assert event.data["kind"] == "confirmation"

        # Resending a failed message is allowed; the address still bounces, and says so again.
        reply = await http.post(
            f"{stack.config.url('notifications')}/api/v1/notifications/{row['id']}/resend", headers=organiser(stack)
        )
        assert reply.status_code == 202, reply.text

        async def resend_failed() -> bool:
            rows = await delivery_log(http, stack, registration["id"])
            return any(r["id"] == reply.json()["id"] and r["status"] == "failed" for r in rows)

        await eventually(resend_failed, 60, "the resent message to fail as well")


async def test_organiser_resend_sends_once_per_request(stack: EmbeddedStack) -> None:
    maildir = stack.config.maildir
    address = f"adaeze.{uuid.uuid4().hex[:8]}@knowsley-primary.example"
    async with httpx.AsyncClient(timeout=30.0) as http:
        event_id = await create_event(http, stack, datetime.now(UTC) + timedelta(days=30))
        registration = await register(http, stack, event_id, address)

        async def confirmation_sent() -> list[dict[str, Any]]:
            rows = await delivery_log(http, stack, registration["id"])
            return [row for row in rows if row["kind"] == "confirmation" and row["status"] == "sent"]

        (sent,) = await eventually(confirmation_sent, 60, "the confirmation to be sent")
        url = f"{stack.config.url('notifications')}/api/v1/notifications/{sent['id']}/resend"

        unauthorised = await http.post(url)
        assert unauthorised.status_code == 401
        assert unauthorised.json()["code"] == "unauthenticated"
        unknown = await http.post(url.replace(sent["id"], "no-such-message"), headers=organiser(stack))
        assert unknown.status_code == 404
        assert unknown.json()["code"] == "not_found"

        request = {**organiser(stack), "Idempotency-Key": uuid.uuid4().hex}
        first, again = await http.post(url, headers=request), await http.post(url, headers=request)
        assert first.status_code == again.status_code == 202
        assert first.json()["id"] == again.json()["id"] != sent["id"]

        async def two_mails() -> bool:
            return len(mails_to(maildir, address)) >= 2

        await eventually(two_mails, 60, "the resent confirmation")

        async def all_sent() -> bool:
            rows = await delivery_log(http, stack, registration["id"])
            return all(row["status"] == "sent" for row in rows if row["kind"] == "confirmation")

        await eventually(all_sent, 30, "both confirmations to be logged as sent")
        mails = mails_to(maildir, address)
        assert len(mails) == 2
        assert mails[0]["Message-ID"] != mails[1]["Message-ID"]
