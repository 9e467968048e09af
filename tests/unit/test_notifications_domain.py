"""Notification rules: registration status from facts in any order, backoff, failure classes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import aiosmtplib
import pytest

from notifications import domain
from notifications.domain import DeliveryFailure, Kind, RegistrationStatus, Status
from notifications.sender import classify
from plenary_kit import events

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SNAPSHOT = {
    "delegate": {"name": "Ada Olubayo", "email": "ada@school.example", "organisation": "Sefton", "role": "SENCO"},
    "event": {
        "id": "e1",
        "slug": "symposium",
        "title": "Symposium",
        "venue": "Hall",
        "starts_at": NOW,
        "ends_at": NOW + timedelta(hours=6),
        "timezone": "Europe/London",
    },
    "ticket_type": "delegate",
    "sessions": [],
}
TICKET = {"ticket_id": "t1", "code": "CODE"}


def test_message_key_is_registration_kind_and_version() -> None:
    assert domain.message_key("r1", Kind.CONFIRMATION, "t1") == "r1:confirmation:t1"
    assert domain.message_key("r1", Kind.CANCELLED) == "r1:cancelled:1"


def test_cancellation_outranks_confirmation_whatever_the_order() -> None:
    projection = {"_id": "r1", "confirmed_at": NOW, "cancelled_at": NOW - timedelta(minutes=1)}
    assert domain.registration_status(projection) == RegistrationStatus.CANCELLED
    assert domain.registration_status({"_id": "r1", "waitlisted_at": NOW, "confirmed_at": NOW}) == (
        RegistrationStatus.CONFIRMED
    )
    assert domain.registration_status({"_id": "r1", "ticket": TICKET}) is None


def test_confirmation_waits_for_both_registration_and_ticket() -> None:
    assert domain.confirmation_content({"_id": "r1", "ticket": TICKET}) is None
    assert domain.confirmation_content({"_id": "r1", "confirmed_at": NOW, "snapshot": SNAPSHOT}) is None
    content = domain.confirmation_content({"_id": "r1", "confirmed_at": NOW, "snapshot": SNAPSHOT, "ticket": TICKET})
    assert content is not None
    assert content.ticket is not None and content.ticket.code == "CODE"
    assert content.delegate.name == "Ada Olubayo"


def test_no_confirmation_for_a_cancelled_or_waiting_registration() -> None:
    base = {"_id": "r1", "snapshot": SNAPSHOT, "ticket": TICKET}
    assert domain.confirmation_content({**base, "confirmed_at": NOW, "cancelled_at": NOW}) is None
    assert domain.confirmation_content({**base, "waitlisted_at": NOW}) is None


def test_retry_delay_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(7)
    for attempts in range(1, 40):
        ceiling = min(domain.RETRY_CAP_SECONDS, domain.RETRY_BASE_SECONDS * 2 ** (attempts - 1))
        for _ in range(20):
            assert ceiling / 2 <= domain.retry_delay(attempts, rng) <= ceiling
    assert domain.retry_delay(1000, rng) <= domain.RETRY_CAP_SECONDS


def test_transient_failures_retry_within_a_day_then_fail() -> None:
    rng = random.Random(1)
    transient = DeliveryFailure("421 busy", permanent=False, code=421)
    retry = domain.after_failure(transient, 50, NOW - timedelta(hours=3), NOW, rng)
    assert retry.status == Status.RETRYING
    assert retry.next_attempt_at is not None and NOW < retry.next_attempt_at <= NOW + timedelta(minutes=5)
    late = domain.after_failure(transient, 3, NOW - timedelta(hours=24), NOW, rng)
    assert late == domain.Next(Status.FAILED, None)
    permanent = DeliveryFailure("550 no such mailbox", permanent=True, code=550)
    assert domain.after_failure(permanent, 1, NOW, NOW, rng).status == Status.FAILED


@pytest.mark.parametrize(
    ("error", "permanent", "code"),
    [
        (aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(421, "try later", "x@y")]), False, 421),
        (aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "no mailbox", "x@y")]), True, 550),
        (aiosmtplib.SMTPDataError(451, "local error"), False, 451),
        (aiosmtplib.SMTPDataError(554, "rejected"), True, 554),
        (aiosmtplib.SMTPConnectError("refused"), False, None),
        (aiosmtplib.SMTPServerDisconnected("gone"), False, None),
        (aiosmtplib.SMTPReadTimeoutError("slow"), False, None),
        (ConnectionRefusedError(111, "Connection refused"), False, None),
        (TimeoutError(), False, None),
        (ValueError("bad address"), True, None),
    ],
)
def test_smtp_failures_are_classified_by_whether_a_retry_can_help(
    error: Exception, permanent: bool, code: int | None
) -> None:
    failure = classify(error)
    assert failure.permanent is permanent
    assert failure.code == code


def test_manage_url_carries_the_registration_and_its_token() -> None:
    assert domain.manage_url("https://plenary.example/", "r1", "tok-en_1") == (
        "https://plenary.example/manage/r1?token=tok-en_1"
    )
    assert domain.manage_url("https://plenary.example", "r 1", "a+b/c") == (
        "https://plenary.example/manage/r%201?token=a%2Bb%2Fc"
    )
    assert domain.manage_url(None, "r1", "token") is None
    assert domain.manage_url("https://plenary.example", "r1", None) is None


def test_each_resend_request_and_each_offer_has_its_own_message_key() -> None:
    first = domain.message_key("r1", Kind.CONFIRMATION, domain.resend_version("t1", "request-1"))
    assert first == "r1:confirmation:t1:resend:request-1"
    assert first != domain.message_key("r1", Kind.CONFIRMATION, domain.resend_version("t1", "request-2"))
    expires = NOW + timedelta(hours=48)
    assert domain.offer_version(expires) == domain.offer_version(expires.astimezone(timezone(timedelta(hours=1))))
    assert domain.offer_version(expires) != domain.offer_version(expires + timedelta(hours=1))


def test_messages_carry_the_manage_link_once_the_token_is_known() -> None:
    projection = {"_id": "r1", "confirmed_at": NOW, "snapshot": SNAPSHOT, "ticket": TICKET}

    assert domain.content(projection, "https://plenary.example").manage_url is None
    with_token = {**projection, "manage_token": "secret"}
    assert domain.content(with_token, "https://plenary.example").manage_url == (
        "https://plenary.example/manage/r1?token=secret"
    )
    confirmation = domain.confirmation_content(with_token, "https://plenary.example")
    assert confirmation is not None and confirmation.manage_url == "https://plenary.example/manage/r1?token=secret"


def test_confirmation_names_the_type_its_ticket_was_issued_for() -> None:
    reissued = {**TICKET, "ticket_id": "t2", "ticket_type": "speaker"}
    content = domain.confirmation_content({"_id": "r1", "confirmed_at": NOW, "snapshot": SNAPSHOT, "ticket": reissued})
    assert content is not None and content.ticket_type == "speaker"
    older = domain.confirmation_content({"_id": "r1", "confirmed_at": NOW, "snapshot": SNAPSHOT, "ticket": TICKET})
    assert older is not None and older.ticket_type == "delegate"


def test_erased_delegate_gets_no_confirmation() -> None:
    projection = {"_id": "r1", "confirmed_at": NOW, "snapshot": SNAPSHOT, "ticket": TICKET, "erased_at": NOW}
    assert domain.is_erased(projection)
    assert domain.confirmation_content(projection) is None
    assert not domain.is_erased(None)


LEAD, DELAY = timedelta(hours=24), timedelta(hours=2)


def test_confirmed_delegate_is_reminded_before_the_start_and_thanked_after_the_end() -> None:
    scheduled = domain.schedule({"_id": "r1", "confirmed_at": NOW, "snapshot": SNAPSHOT}, LEAD, DELAY)

    assert [(s.kind, s.due_at) for s in scheduled] == [
        (Kind.REMINDER, NOW - LEAD),
        (Kind.THANK_YOU, NOW + timedelta(hours=8)),
    ]
    assert scheduled[0].version == str(int(NOW.timestamp()))


def test_only_confirmed_delegates_have_a_reminder_or_thank_you() -> None:
    base = {"_id": "r1", "snapshot": SNAPSHOT}
    assert domain.schedule({**base, "waitlisted_at": NOW}, LEAD, DELAY) == []
    assert domain.schedule({**base, "confirmed_at": NOW, "cancelled_at": NOW}, LEAD, DELAY) == []
    assert domain.schedule({**base, "confirmed_at": NOW, "erased_at": NOW}, LEAD, DELAY) == []


def test_a_rescheduled_event_gets_a_reminder_of_its_own() -> None:
    moved = {**SNAPSHOT, "event": {**SNAPSHOT["event"], "starts_at": NOW + timedelta(days=7)}}  # type: ignore[dict-item]
    before = domain.schedule({"_id": "r1", "confirmed_at": NOW, "snapshot": SNAPSHOT}, LEAD, DELAY)
    after = domain.schedule({"_id": "r1", "confirmed_at": NOW, "snapshot": moved}, LEAD, DELAY)
    assert before[0].version != after[0].version


def test_a_time_already_past_is_not_scheduled() -> None:
    event = events.EventSummary.model_validate(SNAPSHOT["event"])
    early = domain.due_times(event, LEAD, DELAY, NOW - LEAD - timedelta(minutes=1))
    assert early == {"reminder_due_at": NOW - LEAD, "thank_you_due_at": NOW + timedelta(hours=8)}
    late = domain.due_times(event, LEAD, DELAY, NOW - LEAD + timedelta(minutes=1))
    assert late == {"thank_you_due_at": NOW + timedelta(hours=8)}


def test_a_reminder_looked_at_after_the_start_is_not_sent() -> None:
    projection = {"_id": "r1", "confirmed_at": NOW, "snapshot": SNAPSHOT}
    reminder, thank_you = domain.schedule(projection, LEAD, DELAY)
    assert domain.still_timely(reminder, projection, NOW - timedelta(minutes=1))
    assert not domain.still_timely(reminder, projection, NOW + timedelta(minutes=1))
    assert domain.still_timely(thank_you, projection, thank_you.due_at + timedelta(days=6))
    assert not domain.still_timely(thank_you, projection, thank_you.due_at + timedelta(days=8))
