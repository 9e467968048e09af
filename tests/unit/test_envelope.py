"""The CloudEvents envelope and the typed event schemas every service relies on."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plenary_kit import events, topics
from plenary_kit.envelope import Envelope, MalformedEvent

SUMMARY = events.EventSummary(
    id=str(uuid.uuid4()),
    slug="education-leadership-challenging-times",
    title="Education Leadership in Challenging Times",
    venue="Centre for Educational Leadership, Liverpool",
    starts_at=datetime(2027, 3, 12, 9, 30, tzinfo=UTC),
    ends_at=datetime(2027, 3, 12, 16, 0, tzinfo=UTC),
    timezone="Europe/London",
)
DELEGATE = events.Delegate(
    name="Aoife Ó Súilleabháin", email="aoife@school.example", organisation="Knowsley SEN Academy", role="SENCO"
)


def confirmed() -> events.RegistrationConfirmed:
    return events.RegistrationConfirmed(
        registration_id=str(uuid.uuid4()), event=SUMMARY, delegate=DELEGATE, ticket_type="delegate"
    )


def test_envelope_round_trips_through_bytes_with_typed_data() -> None:
    data = confirmed()
    envelope = Envelope.new(data, source="registration", subject=data.registration_id, correlation_id="req-1")

    parsed = Envelope.from_bytes(envelope.to_bytes())

    assert parsed == envelope
    assert parsed.payload() == data
    assert parsed.type == "registration.confirmed"
    assert parsed.specversion == "1.0"
    assert parsed.dataversion == "1"


def test_envelope_is_cloudevents_structured_json() -> None:
    data = confirmed()
    raw = json.loads(Envelope.new(data, source="registration", subject="s", correlation_id="c").to_bytes())

    for attribute in ("specversion", "id", "type", "source", "time", "subject", "datacontenttype"):
        assert attribute in raw
    assert raw["correlationid"] == "c"
    assert raw["datacontenttype"] == "application/json"
    assert "causationid" not in raw  # an originating event has no cause


def test_follow_on_event_keeps_correlation_and_names_its_cause() -> None:
    cause = Envelope.new(confirmed(), source="registration", subject="r1", correlation_id="request-42")
    issued = events.TicketIssued(
        ticket_id=str(uuid.uuid4()),
        registration_id="r1",
        event_id=SUMMARY.id,
        ticket_type="delegate",
        code="ABC",
        key_id="0a1b2c3d",
        public_key="AAAA",
        issued_at=datetime.now(UTC),
    )

    effect = cause.caused(issued, source="ticketing", subject="r1")

    assert effect.correlationid == "request-42"
    assert effect.causationid == cause.id
    assert effect.id != cause.id
    assert topics.topic_for_event_type(effect.type) == topics.TICKETING


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b'{"specversion": "1.0"}',
        json.dumps(
            {
                "specversion": "1.0", "id": "x", "type": "registration.confirmed", "source": "registration",
                "time": "2026-11-25T10:00:00+00:00", "subject": "s", "correlationid": "c", "data": {"nope": 1},
            }
        ).encode(),
        json.dumps(
            {
                "specversion": "1.0", "id": "x", "type": "registration.exploded", "source": "registration",
                "time": "2026-11-25T10:00:00+00:00", "subject": "s", "correlationid": "c", "data": {},
            }
        ).encode(),
        json.dumps(
            {
                "specversion": "1.0", "id": "x", "type": "registration.confirmed", "source": "registration",
                "time": "2026-11-25T10:00:00", "subject": "s", "correlationid": "c", "data": {},
            }
        ).encode(),
    ],
    ids=["empty", "not-json", "array", "missing-attributes", "bad-data", "unknown-type", "naive-time"],
)
def test_malformed_messages_are_refused_with_a_reason(raw: bytes) -> None:
    with pytest.raises(MalformedEvent):
        Envelope.from_bytes(raw)


@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_crash_the_parser(raw: bytes) -> None:
    try:
        Envelope.from_bytes(raw)
    except MalformedEvent:
        pass


def test_every_event_type_has_a_model_a_version_and_a_topic() -> None:
    assert set(events.MODELS) == set(events.VERSIONS)
    for event_type in events.MODELS:
        assert topics.topic_for_event_type(event_type) in topics.ALL
    contract_types = {
        "registration.confirmed", "registration.waitlisted", "registration.promoted", "registration.cancelled",
        "ticket.issued", "ticket.revoked", "notification.sent", "notification.failed",
        "attendance.admitted", "attendance.exited", "attendance.rejected",
    }
    assert contract_types <= set(events.MODELS)


def test_dead_letter_topics_are_named_after_their_source() -> None:
    assert [topics.dead_letter(t) for t in topics.ALL] == [
        "registration.v1.dlq", "ticketing.v1.dlq", "notifications.v1.dlq", "checkin.v1.dlq",
    ]
