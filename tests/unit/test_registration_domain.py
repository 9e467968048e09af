"""Registration rules without I/O: questions and answers, event changes, offers, workshop moves, erasure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from registration import domain
from registration.domain import RegistrationRejected

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)

QUESTIONS: list[dict[str, Any]] = [
    {
        "code": "strand",
        "label": "Which strand?",
        "kind": "single_choice",
        "required": True,
        "options": ["Whole-school CPD", "Future heads", "Teacher educators"],
    },
    {
        "code": "interests",
        "label": "Interests",
        "kind": "multiple_choice",
        "options": ["SEND", "Curriculum", "Wellbeing"],
    },
    {"code": "photo_ok", "label": "May we photograph you?", "kind": "yes_no", "required": True},
    {"code": "hope", "label": "What do you hope to take away?", "kind": "text"},
]


def an_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "_id": "ev-1",
        "slug": "future-heads",
        "title": "Future Heads Programme",
        "venue": "Halton Lea Library",
        "starts_at": datetime(2027, 3, 12, 9, 30, tzinfo=UTC),
        "ends_at": datetime(2027, 3, 12, 16, 0, tzinfo=UTC),
        "timezone": "Europe/London",
        "capacity": 100,
        "places_left": 40,
        "ticket_types": [
            {"code": "delegate", "name": "Delegate", "capacity": None},
            {"code": "speaker", "name": "Speaker", "capacity": 10},
        ],
        "ticket_left": {"speaker": 4},
        "sessions": [
            {
                "code": "budgets",
                "title": "Budgets",
                "capacity": 30,
                "starts_at": datetime(2027, 3, 12, 11, tzinfo=UTC),
                "ends_at": datetime(2027, 3, 12, 12, tzinfo=UTC),
            }
        ],
        "session_left": {"budgets": 5},
        "questions": QUESTIONS,
    }
    event.update(overrides)
    return event


def fields_of(exc: RegistrationRejected) -> dict[str, str]:
    return {f["field"]: f["message"] for f in exc.extra["fields"]}


def test_complete_answers_are_cleaned() -> None:
    answers = domain.check_answers(
        QUESTIONS,
        {"strand": "Future heads", "interests": ["SEND", "SEND", "Wellbeing"], "photo_ok": False, "hope": "  ideas "},
    )
    assert answers == {"strand": "Future heads", "interests": ["SEND", "Wellbeing"], "photo_ok": False, "hope": "ideas"}


def test_every_faulty_answer_is_named_under_answers() -> None:
    with pytest.raises(RegistrationRejected) as caught:
        domain.check_answers(
            QUESTIONS, {"interests": ["Golf"], "photo_ok": "yes", "hope": "x" * 1001, "shoe_size": "9"}
        )
    assert caught.value.status == 422
    assert caught.value.code == "validation_error"
    assert set(fields_of(caught.value)) == {
        "answers.strand",
        "answers.interests",
        "answers.photo_ok",
        "answers.hope",
        "answers.shoe_size",
    }
    assert fields_of(caught.value)["answers.strand"] == "An answer is required."


def test_blank_optional_answers_count_as_unanswered() -> None:
    answers = domain.check_answers(
        QUESTIONS, {"strand": "Future heads", "photo_ok": True, "hope": " ", "interests": []}
    )
    assert answers == {"strand": "Future heads", "photo_ok": True}


def test_an_edit_keeps_other_answers_and_drops_withdrawn_questions() -> None:
    stored = {"strand": "Future heads", "photo_ok": True, "old_question": "gone"}
    merged = domain.merge_answers(QUESTIONS, stored, {"photo_ok": False, "hope": "Networking"})
    assert merged == {"strand": "Future heads", "photo_ok": False, "hope": "Networking"}


def test_choice_questions_need_options_and_others_refuse_them() -> None:
    with pytest.raises(ValidationError):
        domain.QuestionSpec(code="strand", label="Strand", kind=domain.QuestionKind.SINGLE_CHOICE)
    with pytest.raises(ValidationError):
        domain.QuestionSpec(code="ok", label="OK?", kind=domain.QuestionKind.YES_NO, options=["yes"])


def test_registration_takes_unicode_names_and_optional_details() -> None:
    request = domain.RegistrationCreate(
        name="Siobhán Ní Bhriain",
        email="s.nibhriain@knowsley.sch.example",
        organisation="Knowsley Park Primary",
        role="SENCO",
        phase="special",
        local_authority="Knowsley",
        dietary_needs="",
        access_needs=" Step-free ",
        consent=True,
    )
    assert request.phase == domain.Phase.SPECIAL
    assert request.dietary_needs is None
    assert request.access_needs == "Step-free"


def test_registration_refuses_unknown_phase_and_long_local_authority() -> None:
    with pytest.raises(ValidationError) as caught:
        domain.RegistrationCreate(
            name="Zoë Olubayo",
            email="z@school.example",
            organisation="Sefton High",
            role="teacher",
            phase="sixth_form",
            local_authority="L" * 81,
            consent=True,
        )
    assert {e["loc"][0] for e in caught.value.errors()} == {"phase", "local_authority"}


def test_registration_without_consent_is_refused() -> None:
    with pytest.raises(ValidationError):
        domain.RegistrationCreate(name="A", email="a@b.example", organisation="O", role="R", consent=False)


@pytest.mark.parametrize(
    ("written", "phase"),
    [
        ("Primary", domain.Phase.PRIMARY),
        ("early years", domain.Phase.EARLY_YEARS),
        ("Special (SEN)", domain.Phase.SPECIAL),
        ("further-education", domain.Phase.FURTHER_EDUCATION),
        ("SEN", domain.Phase.SPECIAL),
        ("", None),
    ],
)
def test_phase_is_read_as_people_write_it(written: str, phase: domain.Phase | None) -> None:
    assert domain.phase_from_text(written) == phase


def test_group_delegates_take_the_group_organisation_unless_they_give_their_own() -> None:
    group = domain.GroupRegistrationCreate(
        organisation="Wirral Grammar School",
        consent=True,
        booker={"name": "Tomás O'Neill", "email": "office@wirral.sch.example"},
        delegates=[
            {"name": "Nguyễn Thị Lan", "email": "lan@wirral.sch.example", "role": "teacher"},
            {"name": "Ayo Olubayo", "email": "ayo@trust.example", "role": "trust CEO", "organisation": "Mersey Trust"},
        ],
    )
    assert [r.organisation for r in group.registrations()] == ["Wirral Grammar School", "Mersey Trust"]


def test_a_group_holds_at_most_thirty() -> None:
    delegate = {"name": "A", "email": "a@b.example", "role": "teacher"}
    with pytest.raises(ValidationError):
        domain.GroupRegistrationCreate(
            organisation="O",
            consent=True,
            booker={"name": "B", "email": "b@b.example"},
            delegates=[{**delegate, "email": f"a{i}@b.example"} for i in range(31)],
        )


def test_capacity_change_moves_counter_by_delta() -> None:
    plan = domain.plan_event_update(an_event(), domain.EventUpdate(capacity=80), {})
    assert plan.inc == {"places_left": -20}
    assert plan.floors == {"places_left": 20}
    assert plan.set["capacity"] == 80
    assert not plan.places_freed


def test_capacity_below_places_taken_is_refused() -> None:
    with pytest.raises(RegistrationRejected) as caught:
        domain.plan_event_update(an_event(), domain.EventUpdate(capacity=59), {})
    assert (caught.value.status, caught.value.code, caught.value.extra["taken"]) == (409, "capacity_below_taken", 60)


def test_larger_capacity_frees_places_for_the_waiting_list() -> None:
    plan = domain.plan_event_update(an_event(), domain.EventUpdate(capacity=120), {})
    assert plan.inc == {"places_left": 20}
    assert plan.places_freed


def test_ticket_type_limits_follow_places_taken() -> None:
    update = domain.EventUpdate(
        ticket_types=[
            {"code": "speaker", "capacity": 6},
            {"code": "delegate", "capacity": 70},
            {"code": "guest", "name": "Guest"},
        ]
    )
    plan = domain.plan_event_update(an_event(), update, {"delegate": 55})
    assert plan.inc["ticket_left.speaker"] == -4
    assert plan.floors["ticket_left.speaker"] == 4
    assert plan.set["ticket_left.delegate"] == 15
    assert plan.inc["limits_version"] == 1
    assert [t["code"] for t in plan.set["ticket_types"]] == ["delegate", "speaker", "guest"]


def test_ticket_type_limit_below_places_taken_is_refused() -> None:
    with pytest.raises(RegistrationRejected) as caught:
        domain.plan_event_update(an_event(), domain.EventUpdate(ticket_types=[{"code": "speaker", "capacity": 5}]), {})
    assert caught.value.extra["field"] == "ticket_types.speaker.capacity"
    update = domain.EventUpdate(ticket_types=[{"code": "delegate", "capacity": 10}])
    assert domain.newly_limited_ticket_types(an_event(), update) == ["delegate"]
    with pytest.raises(RegistrationRejected):
        domain.plan_event_update(an_event(), update, {"delegate": 11})


def test_larger_workshop_frees_places_for_those_waiting_for_it() -> None:
    plan = domain.plan_event_update(an_event(), domain.EventUpdate(sessions=[{"code": "budgets", "capacity": 32}]), {})
    assert plan.inc == {"session_left.budgets": 2}
    assert plan.sessions_freed == ["budgets"]


def test_a_new_session_needs_its_title_times_and_capacity() -> None:
    with pytest.raises(RegistrationRejected) as caught:
        domain.plan_event_update(
            an_event(), domain.EventUpdate(sessions=[{"code": "inclusion", "title": "Inclusion"}]), {}
        )
    assert "sessions.inclusion.capacity" in fields_of(caught.value)


def test_event_update_keeps_times_in_order() -> None:
    with pytest.raises(RegistrationRejected):
        domain.plan_event_update(an_event(), domain.EventUpdate(ends_at=datetime(2027, 3, 12, 8, tzinfo=UTC)), {})
    with pytest.raises(ValidationError):
        domain.EventUpdate(title=None)


def test_offer_is_accepted_only_while_open() -> None:
    offered = {"status": "waitlisted", "offer": {"expires_at": NOW + timedelta(hours=1)}}
    assert domain.check_offer(offered, NOW) == NOW + timedelta(hours=1)
    with pytest.raises(RegistrationRejected) as late:
        domain.check_offer(offered, NOW + timedelta(hours=2))
    assert late.value.code == "offer_expired"
    with pytest.raises(RegistrationRejected) as none:
        domain.check_offer({"status": "waitlisted"}, NOW)
    assert none.value.code == "no_offer"
    with pytest.raises(RegistrationRejected) as passed_on:
        domain.check_offer({"status": "cancelled", "cancel_reason": "offer_expired"}, NOW)
    assert passed_on.value.code == "offer_expired"


def test_offer_holds_a_place_and_has_the_event_window() -> None:
    assert domain.holds_place({"status": "waitlisted", "offer": {"expires_at": NOW}})
    assert not domain.holds_place({"status": "waitlisted"})
    assert domain.offer_expiry({"offer_window_hours": 48}, NOW) == NOW + timedelta(hours=48)
    assert domain.offer_expiry({}, NOW) is None


def test_resend_waits_a_minute() -> None:
    assert domain.resend_wait(None, NOW) == 0
    assert domain.resend_wait(NOW - timedelta(seconds=20), NOW) == 40
    assert domain.resend_wait(NOW - timedelta(seconds=60), NOW) == 0


def test_cancelled_and_erased_registrations_cannot_change() -> None:
    with pytest.raises(RegistrationRejected) as cancelled:
        domain.check_changeable({"status": "cancelled"})
    assert cancelled.value.code == "registration_cancelled"
    with pytest.raises(RegistrationRejected) as erased:
        domain.check_changeable({"status": "confirmed", "erased_at": NOW})
    assert erased.value.code == "registration_erased"


def test_workshop_moves_release_dropped_places_and_keep_the_rest() -> None:
    moves = domain.session_moves(
        held=["budgets", "inclusion"],
        waiting=["retention", "wellbeing"],
        wanted=["inclusion", "wellbeing", "curriculum"],
    )
    assert moves.release == ["budgets"]
    assert moves.stop_waiting == ["retention"]
    assert moves.add == ["curriculum"]
    assert moves.keep_held == ["inclusion"]
    assert moves.keep_waiting == ["wellbeing"]


def test_erasure_leaves_nothing_that_names_the_delegate() -> None:
    erased = domain.erased_details("reg-1")
    assert erased["name"] == domain.ERASED_NAME
    assert erased["email"] == ""
    assert erased["answers"] == {}
    assert erased["manage_token_hash"] == "erased:reg-1"
    assert all(erased[k] is None for k in ("phase", "local_authority", "dietary_needs", "access_needs"))


def test_event_summary_carries_contact_and_sessions() -> None:
    summary = domain.summary(an_event(organiser_contact="cel@university.example"))
    assert summary.organiser_contact == "cel@university.example"
    assert [s.code for s in summary.sessions] == ["budgets"]


def test_delegate_carries_phase_and_local_authority() -> None:
    delegate = domain.delegate(
        {
            "name": "Ó Súilleabháin",
            "email": "o@x.example",
            "organisation": "St Helens College",
            "role": "teacher",
            "phase": "further_education",
            "local_authority": "St Helens",
        }
    )
    assert (delegate.phase, delegate.local_authority) == ("further_education", "St Helens")


# Places: a batch of arrivals spends the event's counters in memory, by the same rules as one at a time.


def _event_counters(**overrides: Any) -> dict[str, Any]:
    return {
        "places_left": 2,
        "ticket_left": {"speaker": 1},
        "session_left": {"w1": 1, "w2": 5},
        "waitlist_seq": 4,
        "session_wait_seq": {"w1": 2},
        **overrides,
    }


def test_places_go_in_arrival_order_then_the_waiting_list_continues_its_numbering() -> None:
    places = domain.Places.of(_event_counters())
    first, second, third = (places.allocate("delegate", []) for _ in range(3))
    assert first.waitlist_position is None and second.waitlist_position is None
    assert third.waitlist_position == 5
    assert places.places_left == 0


def test_a_full_workshop_queues_the_delegate_without_costing_them_the_event_place() -> None:
    places = domain.Places.of(_event_counters())
    first = places.allocate("delegate", ["w1", "w2"])
    second = places.allocate("delegate", ["w1", "w2"])
    assert first.sessions == ["w1", "w2"] and first.waiting_sessions == {}
    assert second.waitlist_position is None
    assert second.sessions == ["w2"] and second.waiting_sessions == {"w1": 3}


def test_a_capped_ticket_type_waitlists_its_delegates_while_other_types_still_get_places() -> None:
    places = domain.Places.of(_event_counters(places_left=5))
    assert places.allocate("speaker", []).waitlist_position is None
    assert places.allocate("speaker", []).waitlist_position == 5
    assert places.allocate("delegate", []).waitlist_position is None


def test_spent_places_become_one_conditional_increment() -> None:
    places = domain.Places.of(_event_counters())
    before = places.copy()
    places.allocate("speaker", ["w1"])
    places.allocate("delegate", ["w1"])
    places.allocate("delegate", [])
    moves, floors = places.spent_since(before)
    assert moves == {
        "places_left": -2,
        "waitlist_seq": 1,
        "ticket_left.speaker": -1,
        "session_left.w1": -1,
        "session_wait_seq.w1": 1,
    }
    assert floors == {"places_left": 2, "ticket_left.speaker": 1, "session_left.w1": 1}
    assert before.places_left == 2, "the copy is untouched"


@pytest.mark.parametrize("zone", ["Europe", "Europe/Londn", "GMT+25", "", "../etc/passwd"])
def test_an_event_needs_a_time_zone_that_exists(zone: str) -> None:
    spec = {
        "slug": "leadership-symposium",
        "title": "Education Leadership in Challenging Times",
        "venue": "Centre for Educational Leadership, Liverpool",
        "starts_at": "2027-03-12T09:30:00+00:00",
        "ends_at": "2027-03-12T16:00:00+00:00",
        "capacity": 120,
    }
    assert domain.EventCreate.model_validate({**spec, "timezone": "Europe/London"}).timezone == "Europe/London"
    with pytest.raises(ValidationError, match="time zone"):
        domain.EventCreate.model_validate({**spec, "timezone": zone})
