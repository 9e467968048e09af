"""Check-in rules without I/O: reading codes, deciding verdicts, moving counters, shaping replies."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from checkin import domain
from checkin.domain import Admission, Attendee, Decision, Direction, Movement, TicketState, Verdict
from plenary_kit import events, ticketcode

EVENT_ID = str(uuid.uuid4())
KEY = Ed25519PrivateKey.generate()
PUBLIC = ticketcode.public_bytes(KEY)
DELEGATE = TicketState(ticket_type="delegate", revoked=False)
FIRST = Admission(first_at=datetime(2026, 10, 8, 8, 30, 0, 123000, tzinfo=UTC), first_gate="North", inside=True)


def _code(event_id: str = EVENT_ID) -> str:
    return ticketcode.encode(event_id, str(uuid.uuid4()), "delegate", KEY)


def _flip(text: str, index: int) -> str:
    raw = bytearray(base64.b32decode(text + "=" * (-len(text) % 8)))
    raw[index] ^= 0x01
    return base64.b32encode(bytes(raw)).decode().rstrip("=")


def test_genuine_code_for_this_event_passes() -> None:
    code = domain.parse_code(_code())
    assert domain.check_code(code, EVENT_ID, PUBLIC) is None


@pytest.mark.parametrize("text", ["", "   ", "hello", "https://example.org/ticket", "A" * 1000])
def test_unreadable_text_is_malformed(text: str) -> None:
    assert domain.check_code(domain.parse_code(text), EVENT_ID, PUBLIC) is Verdict.MALFORMED


def test_code_for_another_event_is_wrong_event() -> None:
    code = domain.parse_code(_code(str(uuid.uuid4())))
    assert domain.check_code(code, EVENT_ID, PUBLIC) is Verdict.WRONG_EVENT


def test_code_of_another_event_whose_key_we_do_not_hold_is_wrong_event() -> None:
    code = domain.parse_code(_code(str(uuid.uuid4())))
    assert domain.check_code(code, EVENT_ID, None) is Verdict.WRONG_EVENT


def test_altered_event_id_fails_signature_rather_than_reading_as_another_event() -> None:
    code = domain.parse_code(_flip(_code(), 5))
    assert code is not None and code.event_id != EVENT_ID
    assert domain.check_code(code, EVENT_ID, PUBLIC) is Verdict.INVALID_SIGNATURE


def test_tampered_ticket_id_fails_signature() -> None:
    code = domain.parse_code(_flip(_code(), 20))
    assert code is not None
    assert domain.check_code(code, EVENT_ID, PUBLIC) is Verdict.INVALID_SIGNATURE


def test_tampered_signature_fails_signature() -> None:
    text = _code()
    code = domain.parse_code(_flip(text, len(base64.b32decode(text + "=" * (-len(text) % 8))) - 1))
    assert domain.check_code(code, EVENT_ID, PUBLIC) is Verdict.INVALID_SIGNATURE


def test_unknown_key_fails_signature() -> None:
    assert domain.check_code(domain.parse_code(_code()), EVENT_ID, None) is Verdict.INVALID_SIGNATURE


def test_another_keys_signature_fails() -> None:
    other = ticketcode.public_bytes(Ed25519PrivateKey.generate())
    assert domain.check_code(domain.parse_code(_code()), EVENT_ID, other) is Verdict.INVALID_SIGNATURE


def test_first_entry_admits() -> None:
    assert domain.decide(DELEGATE, None, Direction.IN) == Decision(Verdict.ADMITTED, Movement.FIRST_ENTRY)


def test_second_scan_reports_first_admission() -> None:
    decision = domain.decide(DELEGATE, FIRST, Direction.IN)
    assert decision == Decision(Verdict.ALREADY_ADMITTED, Movement.NONE, FIRST)


def test_exit_then_entry_readmits() -> None:
    assert domain.decide(DELEGATE, FIRST, Direction.OUT) == Decision(Verdict.EXITED, Movement.EXIT)
    outside = Admission(FIRST.first_at, FIRST.first_gate, inside=False)
    assert domain.decide(DELEGATE, outside, Direction.IN) == Decision(Verdict.ADMITTED, Movement.REENTRY)


def test_exit_of_someone_outside_changes_nothing() -> None:
    assert domain.decide(DELEGATE, None, Direction.OUT) == Decision(Verdict.EXITED)
    outside = Admission(FIRST.first_at, FIRST.first_gate, inside=False)
    assert domain.decide(DELEGATE, outside, Direction.OUT) == Decision(Verdict.EXITED)


def test_unknown_ticket_is_refused_either_way() -> None:
    assert domain.decide(None, None, Direction.IN).verdict is Verdict.UNKNOWN_TICKET
    assert domain.decide(None, None, Direction.OUT).verdict is Verdict.UNKNOWN_TICKET


@pytest.mark.parametrize(
    "ticket",
    [TicketState("delegate", revoked=True), TicketState("delegate", revoked=False, cancelled=True)],
)
def test_revoked_or_cancelled_ticket_does_not_admit(ticket: TicketState) -> None:
    assert domain.decide(ticket, None, Direction.IN) == Decision(Verdict.REVOKED)
    outside = Admission(FIRST.first_at, FIRST.first_gate, inside=False)
    assert domain.decide(ticket, outside, Direction.IN) == Decision(Verdict.REVOKED)
    assert domain.decide(ticket, FIRST, Direction.IN) == Decision(Verdict.REVOKED)


def test_revoked_holder_inside_can_still_leave() -> None:
    revoked = TicketState("delegate", revoked=True)
    assert domain.decide(revoked, FIRST, Direction.OUT) == Decision(Verdict.EXITED, Movement.EXIT)
    assert domain.decide(revoked, None, Direction.OUT) == Decision(Verdict.REVOKED)


def test_first_entry_moves_every_figure_and_reentry_only_inside() -> None:
    speaker = domain.Profile("speaker", phase="secondary", local_authority="Wirral")
    at = datetime(2026, 10, 8, 8, 31, 42, 500000, tzinfo=UTC)
    assert domain.counter_changes(Movement.FIRST_ENTRY, "North", speaker, at) == {
        ("admitted", ""): 1,
        ("inside", ""): 1,
        ("gate", "North"): 1,
        ("ticket_type", "speaker"): 1,
        ("phase", "secondary"): 1,
        ("local_authority", "Wirral"): 1,
        ("minute", "2026-10-08T08:31:00+00:00"): 1,
    }
    assert domain.counter_changes(Movement.REENTRY, "South", speaker, at) == {("inside", ""): 1}
    assert domain.counter_changes(Movement.EXIT, "South", speaker, at) == {("inside", ""): -1}
    assert domain.counter_changes(Movement.NONE, "South", speaker, at) == {}


def test_unanswered_phase_and_authority_are_counted_as_not_given() -> None:
    changes = domain.counter_changes(Movement.FIRST_ENTRY, "North", domain.Profile("delegate"))
    assert changes[("phase", domain.NOT_GIVEN)] == changes[("local_authority", domain.NOT_GIVEN)] == 1


def test_attendance_adds_up_counter_rows() -> None:
    rows = [
        ("registered", "", 3),
        ("registered", "", -1),
        ("admitted", "", 2),
        ("inside", "", 1),
        ("gate", "South", 1),
        ("gate", "North", 1),
        ("ticket_type", "delegate", 2),
        ("session", "W1", 1),
        ("phase", "primary", 2),
        ("local_authority", "Knowsley", 1),
        ("local_authority", "Sefton", 1),
        ("minute", "2026-10-08T08:31:00+00:00", 1),
        ("minute", "2026-10-08T08:30:00+00:00", 1),
        ("minute", "2026-10-08T08:30:00+00:00", 1),
        ("alerts", "", 1),
    ]
    assert domain.attendance(rows) == {
        "registered": 2,
        "admitted": 2,
        "inside": 1,
        "no_shows": 0,
        "by_gate": {"North": 1, "South": 1},
        "by_ticket_type": {"delegate": 2},
        "by_session": {"W1": 1},
        "by_phase": {"primary": 2},
        "by_local_authority": {"Knowsley": 1, "Sefton": 1},
        "arrivals_per_minute": [
            {"minute": "2026-10-08T08:30:00+00:00", "admitted": 2},
            {"minute": "2026-10-08T08:31:00+00:00", "admitted": 1},
        ],
        "alerts": 1,
    }
    assert domain.attendance([("registered", "", 5), ("admitted", "", 2)])["no_shows"] == 3
    empty = domain.attendance([])
    assert empty["registered"] == empty["admitted"] == empty["no_shows"] == 0
    assert empty["arrivals_per_minute"] == [] and empty["by_session"] == {}


def test_offline_scan_is_judged_as_the_ticket_stood_when_scanned() -> None:
    scanned = datetime(2026, 10, 8, 9, 0, tzinfo=UTC)
    revoked = scanned + timedelta(minutes=20)
    assert domain.state_at("delegate", revoked, None, [], scanned) == TicketState("delegate", revoked=False)
    assert domain.state_at("delegate", revoked, None, [], None) == TicketState("delegate", revoked=True)
    assert domain.state_at("delegate", None, scanned - timedelta(seconds=1), [], scanned) == TicketState(
        "delegate", revoked=False, cancelled=True
    )
    # Not yet issued (its revocation arrived first): nothing to admit.
    assert domain.state_at(None, revoked, None, [], None) is None


def test_workshop_room_admits_only_its_own_delegates_once() -> None:
    entitled = TicketState("delegate", revoked=False, sessions=("W1", "W3"))
    assert domain.decide_room(entitled, "W1", None, Direction.IN) == Decision(Verdict.ADMITTED, Movement.FIRST_ENTRY)
    assert domain.decide_room(entitled, "W2", None, Direction.IN) == Decision(Verdict.NOT_ENTITLED)
    assert domain.decide_room(entitled, "W1", FIRST, Direction.IN) == Decision(
        Verdict.ALREADY_ADMITTED, first_admitted=FIRST
    )
    revoked = TicketState("delegate", revoked=True, sessions=("W1",))
    assert domain.decide_room(revoked, "W1", None, Direction.IN) == Decision(Verdict.REVOKED)
    assert domain.decide_room(None, "W1", None, Direction.IN) == Decision(Verdict.UNKNOWN_TICKET)
    assert domain.decide_room(entitled, "W1", FIRST, Direction.OUT) == Decision(Verdict.EXITED)
    assert domain.room_changes(Movement.FIRST_ENTRY, "W1") == {("session", "W1"): 1}
    assert domain.room_changes(Movement.NONE, "W1") == {}


def test_double_entry_is_an_offline_admission_of_someone_another_device_let_in() -> None:
    base = domain.ScanRequest(code="x", gate="North", direction=Direction.IN, nonce="n" * 8)
    offline = base.model_copy(update={"offline": True})
    let_in_by_a = Admission(FIRST.first_at, "North", inside=True, last_device_id="device-a")
    inside = Decision(Verdict.ALREADY_ADMITTED, first_admitted=let_in_by_a)
    assert domain.is_double_entry(offline, inside, "device-b")
    # The same device uploading again, an online scan, or a device that itself refused: no alert.
    assert not domain.is_double_entry(offline, inside, "device-a")
    assert not domain.is_double_entry(base, inside, "device-b")
    refused = offline.model_copy(update={"offline_verdict": Verdict.ALREADY_ADMITTED})
    assert not domain.is_double_entry(refused, inside, "device-b")
    assert not domain.is_double_entry(offline, Decision(Verdict.ADMITTED, Movement.FIRST_ENTRY), "device-b")


def test_reply_names_attendee_and_first_admission() -> None:
    body = domain.reply(
        Decision(Verdict.ALREADY_ADMITTED, first_admitted=FIRST), Attendee("Siobhán Ní Bhriain", "delegate"), "s1"
    )
    assert body == {
        "verdict": "already_admitted",
        "scan_id": "s1",
        "attendee": {"name": "Siobhán Ní Bhriain", "ticket_type": "delegate"},
        "first_admitted": {"at": "2026-10-08T08:30:00.123000+00:00", "gate": "North"},
    }
    assert domain.reply(Decision(Verdict.MALFORMED), None, "s2") == {"verdict": "malformed", "scan_id": "s2"}


def test_online_scan_time_is_ours_offline_is_the_devices() -> None:
    received = datetime(2026, 10, 8, 9, 0, 0, 987654, tzinfo=UTC)
    device_clock = datetime(2026, 10, 8, 9, 55, tzinfo=timezone(timedelta(hours=1)))
    online = domain.ScanRequest(code="x", gate="North", direction=Direction.IN, nonce="n" * 8, scanned_at=device_clock)
    offline = online.model_copy(update={"offline": True})
    assert domain.scan_time(online, received) == datetime(2026, 10, 8, 9, 0, 0, 987000, tzinfo=UTC)
    assert domain.scan_time(offline, received) == datetime(2026, 10, 8, 8, 55, tzinfo=UTC)


def _event_for(verdict: Verdict) -> events.EventData:
    return domain.attendance_event(
        verdict, scan_id="s1", event_id=EVENT_ID, ticket_id=None, gate="North",
        direction=Direction.IN, scanned_at=FIRST.first_at, device_id=None,
    )


def test_scan_outcomes_map_to_attendance_events() -> None:
    assert isinstance(_event_for(Verdict.ADMITTED), events.AttendanceAdmitted)
    assert isinstance(_event_for(Verdict.EXITED), events.AttendanceExited)
    rejected = _event_for(Verdict.ALREADY_ADMITTED)
    assert isinstance(rejected, events.AttendanceRejected)
    assert rejected.verdict == "already_admitted"


@pytest.mark.parametrize(
    "change",
    [{"gate": ""}, {"gate": "G" * 41}, {"nonce": "short"}, {"nonce": "n" * 101}, {"code": "C" * 1001},
     {"direction": "sideways"}, {"scanned_at": "2026-10-08T09:00:00"}],
)
def test_scan_request_limits(change: dict[str, object]) -> None:
    valid = {"code": "ABC", "gate": "North", "direction": "in", "nonce": "nonce-123"}
    domain.ScanRequest.model_validate(valid)
    with pytest.raises(ValidationError):
        domain.ScanRequest.model_validate({**valid, **change})


def test_device_gates_are_distinct_and_present() -> None:
    assert domain.DeviceCreate(name="Foyer phone", gates=["North", "South"]).gates == ["North", "South"]
    with pytest.raises(ValidationError):
        domain.DeviceCreate(name="Foyer phone", gates=[])
    with pytest.raises(ValidationError):
        domain.DeviceCreate(name="Foyer phone", gates=["North", "North"])


def test_public_key_must_match_its_key_id() -> None:
    encoded = base64.urlsafe_b64encode(PUBLIC).decode().rstrip("=")
    key_id = ticketcode.key_id_of(PUBLIC)
    assert domain.public_key_bytes(encoded, key_id) == PUBLIC
    with pytest.raises(ValueError):
        domain.public_key_bytes(encoded, "00000000")
    with pytest.raises(ValueError):
        domain.public_key_bytes("not base64!", key_id)


def test_projection_keeps_phase_and_local_authority_for_attendance_breakdowns() -> None:
    delegate = events.Delegate(
        name="Zoë O'Neill", email="zoe@st-helens.example", organisation="St Helens Nursery School",
        role="early years lead", phase="early years", local_authority="St Helens",
    )

    assert domain.delegate_fields(delegate, erased=False) == {
        "name": "Zoë O'Neill",
        "organisation": "St Helens Nursery School",
        "role": "early years lead",
        "phase": "early years",
        "local_authority": "St Helens",
    }


def test_erased_delegate_gets_nothing_written_back() -> None:
    delegate = events.Delegate(name="Zoë O'Neill", email="zoe@school.example", organisation="Halton", role="SENCO")

    assert domain.delegate_fields(delegate, erased=True) == {}
