"""The registration API against the real document server: questions, event changes, workshops, waiting
lists and offers, self-service, group bookings, CSV import and export, erasure."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from plenary_kit import sealing
from plenary_kit.envelope import Envelope
from plenary_kit.mongo import Document, Session
from plenary_kit.settings import ServiceSettings
from plenary_stack.stack import EmbeddedStack
from registration import handlers
from registration.main import create_app
from registration.store import Store

ADMIN_TOKEN = "test-admin"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# The document server is shared by the whole run: this module's databases are its own.
DB_PREFIX = f"plenary_test_registration_{uuid.uuid4().hex[:8]}"
GROUP_SUFFIX = f"-test-{uuid.uuid4().hex[:8]}"

QUESTIONS = [
    {
        "code": "strand",
        "label": "Which strand will you follow?",
        "kind": "single_choice",
        "required": True,
        "options": ["Whole-school CPD", "Future heads", "Teacher educators"],
    },
    {
        "code": "interests",
        "label": "Topics of interest",
        "kind": "multiple_choice",
        "options": ["SEND", "Curriculum", "Wellbeing"],
    },
    {"code": "photo_ok", "label": "May we photograph you?", "kind": "yes_no", "required": True},
    {"code": "hope", "label": "What do you hope to take away?", "kind": "text"},
]
ANSWERS = {"strand": "Future heads", "photo_ok": True}


@dataclass(frozen=True)
class Registration:
    http: httpx.AsyncClient
    db: AsyncDatabase[Document]
    link_key: bytes
    registrations: handlers.Registrations


def service_settings(infrastructure: EmbeddedStack, var: Path, roles: str) -> ServiceSettings:
    """A registration service of this module's databases; no relay, so no event reaches the shared broker."""
    return ServiceSettings(
        plenary_consumer_group_suffix=GROUP_SUFFIX,
        kafka_bootstrap_servers=infrastructure.config.bootstrap,
        mongodb_uri=infrastructure.config.mongo,
        plenary_db_prefix=DB_PREFIX,
        plenary_var=var,
        plenary_admin_token=ADMIN_TOKEN,
        # Every request here comes from one client; tests/integration/test_rate_limits.py turns them on.
        plenary_rate_limits="off",
        plenary_roles=roles,
    )


@pytest.fixture(scope="module")
async def service(
    infrastructure: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Registration]:
    """The registration app with its background loops, reached in-process over ASGI.

    No relay: the events are read from the outbox, so none of them reach the broker other modules share.
    """
    settings = service_settings(infrastructure, tmp_path_factory.mktemp("registration-var"), "api,worker")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.runtime.prepared.wait(), 30)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registration", timeout=30) as http:
            yield Registration(
                http=http,
                db=app.state.runtime.db,
                link_key=settings.link_key(),
                registrations=app.state.registrations,
            )


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(0.05)


def an_event(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "slug": f"future-heads-{uuid.uuid4().hex[:8]}",
        "title": "Future Heads Programme",
        "venue": "Halton Lea Library, Runcorn",
        "starts_at": "2027-03-12T09:30:00+00:00",
        "ends_at": "2027-03-12T16:00:00+00:00",
        "timezone": "Europe/London",
        "capacity": 50,
    }
    body.update(overrides)
    return body


def workshop(code: str, capacity: int, title: str = "Leading through budget pressure") -> dict[str, Any]:
    return {
        "code": code,
        "title": title,
        "starts_at": "2027-03-12T11:00:00+00:00",
        "ends_at": "2027-03-12T12:15:00+00:00",
        "capacity": capacity,
    }


def a_delegate(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Zoë Olubayo-O'Neill",
        "email": f"z.olubayo.{uuid.uuid4().hex[:10]}@birkenhead.sch.example",
        "organisation": "Birkenhead Park Primary School",
        "role": "headteacher",
        "consent": True,
    }
    body.update(overrides)
    return body


async def create_event(service: Registration, **overrides: Any) -> dict[str, Any]:
    reply = await service.http.post("/api/v1/events", headers=ADMIN, json=an_event(**overrides))
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


async def register(service: Registration, event_id: str, **overrides: Any) -> dict[str, Any]:
    reply = await service.http.post(f"/api/v1/events/{event_id}/registrations", json=a_delegate(**overrides))
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


async def view(service: Registration, registration_id: str) -> dict[str, Any]:
    reply = await service.http.get(f"/api/v1/registrations/{registration_id}", headers=ADMIN)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


async def emitted(service: Registration, registration_id: str) -> list[Envelope]:
    """The events recorded for one registration, in the order the relay would publish them."""
    rows = await service.db["outbox"].find({"key": registration_id}).sort("_id", 1).to_list(None)
    return [Envelope.model_validate_json(bytes(row["value"])) for row in rows]


async def emitted_types(service: Registration, registration_id: str) -> list[str]:
    return [e.type for e in await emitted(service, registration_id)]


async def cancel(service: Registration, registration_id: str) -> None:
    reply = await service.http.post(f"/api/v1/registrations/{registration_id}/cancel", headers=ADMIN)
    assert reply.status_code == 200, reply.text


# Questions and what a registration records


async def test_registration_records_details_consent_and_seals_the_manage_token(service: Registration) -> None:
    event = await create_event(
        service, organiser_contact="cel@university.example", questions=QUESTIONS, sessions=[workshop("budgets", 10)]
    )
    assert [q["code"] for q in event["questions"]] == ["strand", "interests", "photo_ok", "hope"]
    accepted = await register(
        service,
        event["id"],
        name="Siobhán Ní Bhriain",
        phase="special",
        local_authority="Knowsley",
        dietary_needs="Halal",
        access_needs="Step-free access",
        sessions=["budgets"],
        answers={**ANSWERS, "interests": ["SEND"], "hope": "Practical ideas"},
    )
    registration = await view(service, accepted["id"])
    assert registration["status"] == "confirmed"
    assert (registration["phase"], registration["local_authority"]) == ("special", "Knowsley")
    assert (registration["dietary_needs"], registration["access_needs"]) == ("Halal", "Step-free access")
    assert registration["answers"] == {**ANSWERS, "interests": ["SEND"], "hope": "Practical ideas"}
    assert registration["consent"]["source"] == "delegate"
    assert registration["consent"]["notice_version"] == "2026-09"
    assert registration["consent"]["given_at"]

    (confirmed,) = await emitted(service, accepted["id"])
    data = confirmed.data
    assert confirmed.type == "registration.confirmed"
    assert data["delegate"]["phase"] == "special"
    assert data["delegate"]["local_authority"] == "Knowsley"
    assert data["event"]["organiser_contact"] == "cel@university.example"
    assert [s["code"] for s in data["event"]["sessions"]] == ["budgets"]
    assert sealing.unseal(data["manage_token_sealed"], service.link_key, accepted["id"]) == accepted["manage_token"]
    stored = await service.db["registrations"].find_one({"_id": accepted["id"]})
    assert stored is not None
    assert accepted["manage_token"] not in str(stored)


async def test_answers_are_checked_against_the_events_questions(service: Registration) -> None:
    event = await create_event(service, questions=QUESTIONS)
    reply = await service.http.post(
        f"/api/v1/events/{event['id']}/registrations",
        json=a_delegate(
            answers={
                "strand": "Golf",
                "photo_ok": "yes",
                "interests": ["SEND", "Knitting"],
                "hope": "x" * 1001,
                "shoe_size": 9,
            }
        ),
    )
    assert reply.status_code == 422
    body = reply.json()
    assert body["code"] == "validation_error"
    assert {f["field"] for f in body["fields"]} == {
        "answers.strand",
        "answers.photo_ok",
        "answers.interests",
        "answers.hope",
        "answers.shoe_size",
    }
    missing = await service.http.post(f"/api/v1/events/{event['id']}/registrations", json=a_delegate())
    assert {f["field"] for f in missing.json()["fields"]} == {"answers.strand", "answers.photo_ok"}
    assert await service.db["registrations"].count_documents({"event_id": event["id"]}) == 0


async def test_built_in_questions_are_validated(service: Registration) -> None:
    event = await create_event(service)
    reply = await service.http.post(
        f"/api/v1/events/{event['id']}/registrations",
        json=a_delegate(phase="sixth_form", local_authority="x" * 81, organisation="", role=None),
    )
    assert reply.status_code == 422
    assert {f["field"] for f in reply.json()["fields"]} >= {"phase", "local_authority", "organisation", "role"}


async def test_the_same_email_twice_is_already_registered_and_a_key_replays(service: Registration) -> None:
    event = await create_event(service)
    body = a_delegate()
    first = await service.http.post(
        f"/api/v1/events/{event['id']}/registrations", json=body, headers={"Idempotency-Key": "k-1"}
    )
    again = await service.http.post(
        f"/api/v1/events/{event['id']}/registrations", json=body, headers={"Idempotency-Key": "k-1"}
    )
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    twice = await service.http.post(
        f"/api/v1/events/{event['id']}/registrations", json={**body, "email": body["email"].upper()}
    )
    assert (twice.status_code, twice.json()["code"]) == (409, "already_registered")


# Event management


async def test_organiser_edits_an_event(service: Registration) -> None:
    event = await create_event(service, sessions=[workshop("budgets", 5)])
    reply = await service.http.patch(
        f"/api/v1/events/{event['id']}",
        headers=ADMIN,
        json={
            "title": "Future Heads: Leading Through Change",
            "venue": "Shakespeare North Playhouse, Prescot",
            "organiser_contact": "programmes@council.example",
            "offer_window_hours": 48,
            "registration_closes_at": "2027-03-01T17:00:00+00:00",
            "questions": QUESTIONS[:1],
            "ticket_types": [{"code": "speaker", "name": "Speaker", "capacity": 4}],
            "sessions": [workshop("inclusion", 8, title="Inclusion and SEND"), {"code": "budgets", "title": "Budgets"}],
        },
    )
    assert reply.status_code == 200, reply.text
    changed = reply.json()
    assert changed["title"] == "Future Heads: Leading Through Change"
    assert changed["organiser_contact"] == "programmes@council.example"
    assert changed["offer_window_hours"] == 48
    assert [q["code"] for q in changed["questions"]] == ["strand"]
    assert {t["code"]: t["places_left"] for t in changed["ticket_types"]} == {"delegate": None, "speaker": 4}
    assert {s["code"]: (s["title"], s["places_left"]) for s in changed["sessions"]} == {
        "budgets": ("Budgets", 5),
        "inclusion": ("Inclusion and SEND", 8),
    }
    unauthorised = await service.http.patch(f"/api/v1/events/{event['id']}", json={"title": "Hijacked"})
    assert unauthorised.status_code == 401
    invalid = await service.http.patch(f"/api/v1/events/{event['id']}", headers=ADMIN, json={"title": None})
    assert (invalid.status_code, invalid.json()["code"]) == (422, "validation_error")


async def test_capacity_cannot_drop_below_places_taken(service: Registration) -> None:
    event = await create_event(
        service, capacity=5, ticket_types=[{"code": "delegate", "name": "Delegate"}], sessions=[workshop("budgets", 3)]
    )
    for _ in range(3):
        await register(service, event["id"], sessions=["budgets"])
    for change, field in (
        ({"capacity": 2}, "capacity"),
        ({"ticket_types": [{"code": "delegate", "capacity": 2}]}, "ticket_types.delegate.capacity"),
        ({"sessions": [{"code": "budgets", "capacity": 2}]}, "sessions.budgets.capacity"),
    ):
        reply = await service.http.patch(f"/api/v1/events/{event['id']}", headers=ADMIN, json=change)
        assert reply.status_code == 409, reply.text
        assert reply.json()["code"] == "capacity_below_taken"
        assert reply.json()["field"] == field
    smaller = await service.http.patch(f"/api/v1/events/{event['id']}", headers=ADMIN, json={"capacity": 3})
    assert (smaller.json()["capacity"], smaller.json()["places_left"]) == (3, 0)
    limited = await service.http.patch(
        f"/api/v1/events/{event['id']}", headers=ADMIN, json={"ticket_types": [{"code": "delegate", "capacity": 4}]}
    )
    assert limited.json()["ticket_types"][0]["places_left"] == 1


async def test_more_capacity_promotes_the_waiting_list_in_order(service: Registration) -> None:
    event = await create_event(service, capacity=1)
    await register(service, event["id"])
    waiting = [await register(service, event["id"]) for _ in range(3)]
    assert [w["status"] for w in waiting] == ["waitlisted"] * 3
    reply = await service.http.patch(f"/api/v1/events/{event['id']}", headers=ADMIN, json={"capacity": 3})
    assert reply.json()["places_left"] == 0
    statuses = [(await view(service, w["id"]))["status"] for w in waiting]
    assert statuses == ["confirmed", "confirmed", "waitlisted"]
    assert await emitted_types(service, waiting[0]["id"]) == ["registration.waitlisted", "registration.promoted"]


async def test_closing_an_event_stops_registration_until_it_opens(service: Registration) -> None:
    event = await create_event(service)
    closed = await service.http.post(f"/api/v1/events/{event['id']}/close", headers=ADMIN)
    assert (closed.status_code, closed.json()["registration_open"], closed.json()["closed"]) == (200, False, True)
    refused = await service.http.post(f"/api/v1/events/{event['id']}/registrations", json=a_delegate())
    assert (refused.status_code, refused.json()["code"]) == (409, "registration_closed")
    opened = await service.http.post(f"/api/v1/events/{event['id']}/open", headers=ADMIN)
    assert opened.json()["registration_open"] is True
    await register(service, event["id"])
    assert (await service.http.post(f"/api/v1/events/{event['id']}/close")).status_code == 401


# Workshops and their waiting lists


async def test_a_full_workshop_confirms_the_delegate_and_queues_them_for_it(service: Registration) -> None:
    event = await create_event(service, sessions=[workshop("budgets", 1), workshop("inclusion", 5)])
    holder = await register(service, event["id"], sessions=["budgets"])
    waiter = await register(service, event["id"], sessions=["budgets", "inclusion"])
    later = await register(service, event["id"], sessions=["budgets"])
    assert waiter["status"] == "confirmed"
    registration = await view(service, waiter["id"])
    assert (registration["sessions"], registration["waiting_sessions"]) == (["inclusion"], ["budgets"])
    snapshot = (await emitted(service, waiter["id"]))[0].data
    assert snapshot["sessions"] == ["inclusion"]

    await cancel(service, holder["id"])
    moved = await view(service, waiter["id"])
    assert (sorted(moved["sessions"]), moved["waiting_sessions"]) == (["budgets", "inclusion"], [])
    updated = (await emitted(service, waiter["id"]))[-1]
    assert updated.type == "registration.updated"
    assert sorted(updated.data["sessions"]) == ["budgets", "inclusion"]
    assert updated.data["status"] == "confirmed"
    assert (await view(service, later["id"]))["waiting_sessions"] == ["budgets"]


async def test_forty_at_once_for_ten_workshop_places(service: Registration) -> None:
    event = await create_event(service, capacity=100, sessions=[workshop("budgets", 10)])
    replies = await asyncio.gather(
        *(
            service.http.post(f"/api/v1/events/{event['id']}/registrations", json=a_delegate(sessions=["budgets"]))
            for _ in range(40)
        )
    )
    assert [r.status_code for r in replies] == [201] * 40
    assert {r.json()["status"] for r in replies} == {"confirmed"}
    views = [await view(service, r.json()["id"]) for r in replies]
    holders = [v for v in views if v["sessions"] == ["budgets"]]
    waiters = [v for v in views if v["waiting_sessions"] == ["budgets"]]
    assert (len(holders), len(waiters)) == (10, 30)
    assert (await service.http.get(f"/api/v1/events/{event['id']}")).json()["sessions"][0]["places_left"] == 0
    queue = await service.db["session_waits"].find({"event_id": event["id"]}).sort("position", 1).to_list(None)
    assert [w["position"] for w in queue] == list(range(1, 31))
    assert {w["registration_id"] for w in queue} == {w["id"] for w in waiters}

    for holder in holders[:3]:
        await cancel(service, holder["id"])
    for entry in queue[:3]:
        assert (await view(service, entry["registration_id"]))["sessions"] == ["budgets"]
    for entry in queue[3:]:
        assert (await view(service, entry["registration_id"]))["waiting_sessions"] == ["budgets"]


@dataclass
class AdmissionReads:
    """What registering reads: the event to check a request before the desk (`checks`, by event id), and
    in the admission transactions the event and who is registered already."""

    checks: list[str] = dataclasses.field(default_factory=list)
    events: int = 0
    addresses: int = 0


@pytest.fixture
def admission_reads(monkeypatch: pytest.MonkeyPatch) -> AdmissionReads:
    reads = AdmissionReads()
    read_event, look_up = Store.event, Store.registered_email_keys

    async def event(store: Store, event_id: str, session: Session | None = None) -> Document | None:
        if session is None:
            reads.checks.append(event_id)
        else:
            reads.events += 1
        return await read_event(store, event_id, session)

    async def addresses(store: Store, event_id: str, keys: list[str], *args: Any, **kwargs: Any) -> set[str]:
        reads.addresses += kwargs.get("session") is not None
        return await look_up(store, event_id, keys, *args, **kwargs)

    monkeypatch.setattr(Store, "event", event)
    monkeypatch.setattr(Store, "registered_email_keys", addresses)
    return reads


async def test_registrations_arriving_together_read_the_event_once(
    service: Registration, admission_reads: AdmissionReads
) -> None:
    """Thirty delegates arrive while nothing of the event is remembered: one read checks them all."""
    event = await create_event(service, capacity=100)
    replies = await asyncio.gather(
        *(service.http.post(f"/api/v1/events/{event['id']}/registrations", json=a_delegate()) for _ in range(30))
    )
    assert [r.status_code for r in replies] == [201] * 30
    assert admission_reads.checks.count(event["id"]) == 1


async def registered_by_address(service: Registration, event_id: str, email: str) -> int:
    return await service.db["registrations"].count_documents({"event_id": event_id, "email": email})


async def test_batches_after_the_first_write_without_reading_first(
    service: Registration, admission_reads: AdmissionReads
) -> None:
    """While the desk alone changes an event, each batch starts from the event as the last one left it."""
    event = await create_event(service, capacity=3)
    for _ in range(5):
        await register(service, event["id"])
    assert (admission_reads.events, admission_reads.addresses) == (1, 0)
    stored = await service.db["events"].find_one({"_id": event["id"]})
    assert stored is not None
    assert (stored["places_left"], stored["waitlist_seq"]) == (0, 2)


async def test_a_place_taken_elsewhere_is_not_sold_again_from_the_desk_s_copy(
    service: Registration, admission_reads: AdmissionReads
) -> None:
    """Another registration service takes the last place after this desk's last batch: the desk's copy
    says one is left, the write refuses the copy, and the batch runs again from the event as it stands."""
    event = await create_event(service, capacity=2)
    first = await register(service, event["id"])
    assert first["status"] == "confirmed"
    # What another service's admission of someone else does to the event.
    await service.db["events"].update_one({"_id": event["id"]}, {"$inc": {"places_left": -1}})
    late = await register(service, event["id"])
    assert (late["status"], admission_reads.events) == ("waitlisted", 2)
    stored = await service.db["events"].find_one({"_id": event["id"]})
    assert stored is not None
    assert (stored["places_left"], stored["waitlist_seq"]) == (0, 1)
    assert (await view(service, late["id"]))["waitlist_position"] == 1


async def test_an_event_closed_elsewhere_refuses_what_the_desk_s_copy_would_admit(service: Registration) -> None:
    event = await create_event(service)
    await register(service, event["id"])
    # Another registration service closes the event: this one's copy (and its check's memory) still say open.
    await service.db["events"].update_one(
        {"_id": event["id"]}, {"$set": {"closed": True, "updated_at": datetime.now(UTC)}}
    )
    refused = await service.http.post(f"/api/v1/events/{event['id']}/registrations", json=a_delegate())
    assert (refused.status_code, refused.json()["code"]) == (409, "registration_closed")
    assert await service.db["registrations"].count_documents({"event_id": event["id"]}) == 1


async def test_an_address_already_registered_in_a_batch_is_refused_and_the_rest_admitted(
    service: Registration, admission_reads: AdmissionReads
) -> None:
    """The batch writes without looking addresses up; the unique index refuses the repeated one, and the
    batch runs again with the look-up, so only that delegate is turned away."""
    event = await create_event(service, capacity=20)
    early = a_delegate()
    await service.http.post(f"/api/v1/events/{event['id']}/registrations", json=early)
    route = f"/api/v1/events/{event['id']}/registrations"
    crowd = [a_delegate() for _ in range(8)]
    replies = await asyncio.gather(
        *(service.http.post(route, json=body) for body in [*crowd[:4], {**early, "name": "Again"}, *crowd[4:]])
    )
    statuses = [r.status_code for r in replies]
    assert statuses == [201] * 4 + [409] + [201] * 4
    assert replies[4].json()["code"] == "already_registered"
    assert admission_reads.addresses >= 1
    assert await registered_by_address(service, event["id"], early["email"]) == 1
    stored = await service.db["events"].find_one({"_id": event["id"]})
    assert stored is not None and stored["places_left"] == 20 - 9
    # The event's next batches look addresses up first for a while.
    looked_up = admission_reads.addresses
    await register(service, event["id"])
    assert admission_reads.addresses == looked_up + 1


async def test_the_desk_forgets_events_it_has_not_served_for_a_while(
    service: Registration, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = service.registrations
    monkeypatch.setattr(handlers, "VIGILANCE_KEPT", 2)
    monkeypatch.setattr(handlers, "WARY_SECONDS", 0.0)
    events = [await create_event(service) for _ in range(4)]
    for event in events:
        await register(service, event["id"])
    remembered = set(desk._vigilance)
    assert events[-1]["id"] in remembered
    assert not {e["id"] for e in events[:2]} & remembered


async def test_two_registration_services_share_an_event_without_selling_a_place_twice(
    service: Registration, infrastructure: EmbeddedStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two services' desks admit batches for one event at once: each one's copy of the event keeps going
    out of date under the other's writes, and every place and waiting-list position is given once."""
    outdated: list[str] = []
    spend = Store.spend_places_as_copied

    async def counted(store: Store, copy: Document, moves: dict[str, int], session: Session) -> Document | None:
        after = await spend(store, copy, moves, session)
        if after is None:
            outdated.append(copy["_id"])
        return after

    monkeypatch.setattr(Store, "spend_places_as_copied", counted)
    other = create_app(service_settings(infrastructure, tmp_path, "api"))
    event = await create_event(service, capacity=60, sessions=[workshop("budgets", 25)])
    route = f"/api/v1/events/{event['id']}/registrations"
    async with other.router.lifespan_context(other):
        await asyncio.wait_for(other.state.runtime.prepared.wait(), 30)
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://registration", timeout=60) as second:
            replies: list[httpx.Response] = []
            # Waves of twenty, ten to each service, so that each desk serves a batch in every wave.
            for _ in range(10):
                wave = [c.post(route, json=a_delegate(sessions=["budgets"])) for c in [service.http, second] * 10]
                replies += await asyncio.gather(*wave)
    assert [r.status_code for r in replies] == [201] * 200
    statuses = [r.json()["status"] for r in replies]
    assert (statuses.count("confirmed"), statuses.count("waitlisted")) == (60, 140)
    rows = await service.db["registrations"].find({"event_id": event["id"]}).to_list(None)
    assert len(rows) == 200 == len({r["email_key"] for r in rows})
    assert sorted(r["waitlist_position"] for r in rows if r["status"] == "waitlisted") == list(range(1, 141))
    confirmed = [r for r in rows if r["status"] == "confirmed"]
    assert sum(r["sessions"] == ["budgets"] for r in confirmed) == 25
    assert sum(r["waiting_sessions"] == ["budgets"] for r in confirmed) == 35
    queue = await service.db["session_waits"].find({"event_id": event["id"]}).to_list(None)
    assert sorted(w["position"] for w in queue) == list(range(1, 36))
    stored = await service.db["events"].find_one({"_id": event["id"]})
    assert stored is not None
    assert (stored["places_left"], stored["session_left"], stored["waitlist_seq"]) == (0, {"budgets": 0}, 140)
    assert outdated, "no desk ever met its copy out of date"


async def test_workshop_queue_follows_arrival_order(service: Registration) -> None:
    event = await create_event(service, sessions=[workshop("budgets", 1)])
    holder = await register(service, event["id"], sessions=["budgets"])
    first, second = [await register(service, event["id"], sessions=["budgets"]) for _ in range(2)]
    await cancel(service, holder["id"])
    assert (await view(service, first["id"]))["sessions"] == ["budgets"]
    assert (await view(service, second["id"]))["waiting_sessions"] == ["budgets"]
    larger = await service.http.patch(
        f"/api/v1/events/{event['id']}", headers=ADMIN, json={"sessions": [{"code": "budgets", "capacity": 2}]}
    )
    assert larger.json()["sessions"][0]["places_left"] == 0
    assert (await view(service, second["id"]))["sessions"] == ["budgets"]


# The event's waiting list and offers


async def test_promotion_skips_a_delegate_whose_ticket_type_is_full(service: Registration) -> None:
    event = await create_event(
        service,
        capacity=2,
        ticket_types=[{"code": "delegate", "name": "Delegate"}, {"code": "guest", "name": "Guest", "capacity": 1}],
    )
    guest = await register(service, event["id"], ticket_type="guest")
    delegate = await register(service, event["id"])
    second_guest = await register(service, event["id"], ticket_type="guest")
    second_delegate = await register(service, event["id"])
    assert (second_guest["status"], second_delegate["status"]) == ("waitlisted", "waitlisted")
    await cancel(service, delegate["id"])
    assert (await view(service, second_guest["id"]))["status"] == "waitlisted"
    assert (await view(service, second_delegate["id"]))["status"] == "confirmed"
    await cancel(service, guest["id"])
    assert (await view(service, second_guest["id"]))["status"] == "confirmed"


async def test_an_offer_not_accepted_in_time_passes_to_the_next_delegate(service: Registration) -> None:
    # 0.0005 h is 1.8 s: long enough to see the offer, short enough for the expiry loop to end it.
    event = await create_event(service, capacity=1, offer_window_hours=0.0005)
    holder = await register(service, event["id"])
    slow, quick, last = [await register(service, event["id"]) for _ in range(3)]
    await cancel(service, holder["id"])

    offered = await view(service, slow["id"])
    assert offered["status"] == "waitlisted"
    assert offered["offer"]["expires_at"]
    assert (await service.http.get(f"/api/v1/events/{event['id']}")).json()["places_left"] == 0
    offer_event = (await emitted(service, slow["id"]))[-1]
    assert offer_event.type == "registration.offered"
    assert offer_event.data["offer_expires_at"]
    # The next offer gets a window long enough to accept it in.
    await service.http.patch(f"/api/v1/events/{event['id']}", headers=ADMIN, json={"offer_window_hours": 1})

    async def passed_on() -> bool:
        return bool((await view(service, quick["id"]))["offer"])

    await eventually(passed_on, what="the expired offer passing to the next delegate")
    expired = await view(service, slow["id"])
    assert (expired["status"], expired["cancel_reason"]) == ("cancelled", "offer_expired")
    cancelled = (await emitted(service, slow["id"]))[-1]
    assert (cancelled.type, cancelled.data["reason"], cancelled.data["previous_status"]) == (
        "registration.cancelled",
        "offer_expired",
        "waitlisted",
    )
    too_late = await service.http.post(
        f"/api/v1/registrations/{slow['id']}/accept-offer", headers={"X-Manage-Token": slow["manage_token"]}
    )
    assert (too_late.status_code, too_late.json()["code"]) == (409, "offer_expired")
    no_offer = await service.http.post(
        f"/api/v1/registrations/{last['id']}/accept-offer", headers={"X-Manage-Token": last["manage_token"]}
    )
    assert (no_offer.status_code, no_offer.json()["code"]) == (409, "no_offer")

    accepted = await service.http.post(
        f"/api/v1/registrations/{quick['id']}/accept-offer", headers={"X-Manage-Token": quick["manage_token"]}
    )
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["status"], accepted.json()["offer"]) == ("confirmed", None)
    assert await emitted_types(service, quick["id"]) == [
        "registration.waitlisted",
        "registration.offered",
        "registration.promoted",
    ]
    assert (await view(service, last["id"]))["status"] == "waitlisted"


async def test_cancelling_an_offer_offers_the_place_to_the_next(service: Registration) -> None:
    event = await create_event(service, capacity=1, offer_window_hours=24)
    holder = await register(service, event["id"])
    first, second = [await register(service, event["id"]) for _ in range(2)]
    await cancel(service, holder["id"])
    assert (await view(service, first["id"]))["offer"]
    await cancel(service, first["id"])
    assert (await view(service, second["id"]))["offer"]
    assert (await service.http.get(f"/api/v1/events/{event['id']}")).json()["places_left"] == 0


# Delegate self-service


async def test_delegate_edits_details_answers_and_workshops(service: Registration) -> None:
    event = await create_event(
        service, questions=QUESTIONS, sessions=[workshop("budgets", 1), workshop("inclusion", 1)]
    )
    other = await register(service, event["id"], sessions=["inclusion"], answers=ANSWERS)
    mine = await register(service, event["id"], sessions=["budgets"], answers=ANSWERS)
    own = {"X-Manage-Token": mine["manage_token"]}
    reply = await service.http.patch(
        f"/api/v1/registrations/{mine['id']}",
        headers=own,
        json={
            "name": "Gráinne Ó Súilleabháin",
            "access_needs": "Hearing loop",
            "phase": "primary",
            "answers": {"hope": "Budget planning"},
            "sessions": ["inclusion"],
        },
    )
    assert reply.status_code == 200, reply.text
    edited = reply.json()
    assert edited["name"] == "Gráinne Ó Súilleabháin"
    assert (edited["access_needs"], edited["phase"]) == ("Hearing loop", "primary")
    assert edited["answers"] == {**ANSWERS, "hope": "Budget planning"}
    # Budgets is given up; inclusion is full, so the delegate waits for it.
    assert (edited["sessions"], edited["waiting_sessions"]) == ([], ["inclusion"])
    assert (await service.http.get(f"/api/v1/events/{event['id']}")).json()["sessions"][0]["places_left"] == 1
    updated = (await emitted(service, mine["id"]))[-1]
    assert (updated.type, updated.data["delegate"]["name"]) == ("registration.updated", "Gráinne Ó Súilleabháin")

    # Whoever holds inclusion moves to budgets, and the place they leave goes to the delegate waiting for it.
    moved = await service.http.patch(
        f"/api/v1/registrations/{other['id']}",
        headers={"X-Manage-Token": other["manage_token"]},
        json={"sessions": ["budgets"]},
    )
    assert moved.json()["sessions"] == ["budgets"]
    assert (await view(service, mine["id"]))["sessions"] == ["inclusion"]
    assert (await emitted(service, mine["id"]))[-1].data["sessions"] == ["inclusion"]

    cleared = await service.http.patch(
        f"/api/v1/registrations/{mine['id']}", headers=own, json={"access_needs": None, "answers": {"hope": None}}
    )
    assert cleared.json()["access_needs"] is None
    assert "hope" not in cleared.json()["answers"]
    bad = await service.http.patch(
        f"/api/v1/registrations/{mine['id']}", headers=own, json={"answers": {"strand": "Golf"}}
    )
    assert (bad.status_code, bad.json()["fields"][0]["field"]) == (422, "answers.strand")
    unknown = await service.http.patch(f"/api/v1/registrations/{mine['id']}", headers=own, json={"sessions": ["golf"]})
    assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_session")
    count = len(await emitted(service, mine["id"]))
    unchanged = await service.http.patch(
        f"/api/v1/registrations/{mine['id']}", headers=own, json={"name": "Gráinne Ó Súilleabháin"}
    )
    assert unchanged.status_code == 200
    assert len(await emitted(service, mine["id"])) == count


async def test_self_service_needs_the_right_token(service: Registration) -> None:
    event = await create_event(service)
    mine = await register(service, event["id"])
    theirs = await register(service, event["id"])
    path = f"/api/v1/registrations/{mine['id']}"
    assert (await service.http.patch(path, json={"name": "X"})).status_code == 401
    assert (await service.http.patch(path, headers={"X-Manage-Token": "guess"}, json={"name": "X"})).status_code == 401
    wrong = {"X-Manage-Token": theirs["manage_token"]}
    assert (await service.http.patch(path, headers=wrong, json={"name": "X"})).status_code == 403
    assert (await service.http.post(f"{path}/resend", headers=wrong)).status_code == 403
    assert (
        await service.http.post(f"{path}/erase", headers={"X-Manage-Token": mine["manage_token"]})
    ).status_code == 401
    assert (await service.http.patch(path, headers=ADMIN, json={"role": "deputy head"})).json()["role"] == "deputy head"


async def test_a_cancelled_registration_cannot_be_edited_or_resent(service: Registration) -> None:
    event = await create_event(service)
    mine = await register(service, event["id"])
    own = {"X-Manage-Token": mine["manage_token"]}
    await service.http.post(f"/api/v1/registrations/{mine['id']}/cancel", headers=own)
    edit = await service.http.patch(f"/api/v1/registrations/{mine['id']}", headers=own, json={"name": "X"})
    assert (edit.status_code, edit.json()["code"]) == (409, "registration_cancelled")
    resend = await service.http.post(f"/api/v1/registrations/{mine['id']}/resend", headers=own)
    assert (resend.status_code, resend.json()["code"]) == (409, "registration_cancelled")


async def test_resend_is_allowed_once_a_minute(service: Registration) -> None:
    event = await create_event(service)
    mine = await register(service, event["id"])
    own = {"X-Manage-Token": mine["manage_token"]}
    first = await service.http.post(f"/api/v1/registrations/{mine['id']}/resend", headers=own)
    assert first.status_code == 202
    again = await service.http.post(f"/api/v1/registrations/{mine['id']}/resend", headers=own)
    assert (again.status_code, again.json()["code"]) == (429, "resend_too_soon")
    assert 0 < int(again.headers["Retry-After"]) <= 60
    resends = [e for e in await emitted(service, mine["id"]) if e.type == "registration.resend_requested"]
    assert len(resends) == 1
    assert resends[0].data == {"registration_id": mine["id"], "event_id": event["id"]}
    assert (await emitted(service, mine["id"]))[-1].data.get("manage_token_sealed") is None


# Group bookings


def a_group(*emails: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "organisation": "Wirral Grammar School for Girls",
        "consent": True,
        "booker": {"name": "Tomás O'Neill", "email": "office@wirral.sch.example"},
        "delegates": [
            {"name": f"Colleague {i}", "email": email, "role": "teacher", "phase": "secondary"}
            for i, email in enumerate(emails)
        ],
    }
    body.update(overrides)
    return body


def mailbox(name: str) -> str:
    return f"{name}.{uuid.uuid4().hex[:8]}@wirral.sch.example"


async def test_a_group_booking_registers_each_colleague(service: Registration) -> None:
    event = await create_event(service, capacity=2)
    emails = [mailbox("lan.nguyen"), mailbox("ayo"), mailbox("zoe")]
    reply = await service.http.post(f"/api/v1/events/{event['id']}/registrations/group", json=a_group(*emails))
    assert reply.status_code == 201, reply.text
    booked = reply.json()["registrations"]
    assert [b["email"] for b in booked] == emails
    assert [b["status"] for b in booked] == ["confirmed", "confirmed", "waitlisted"]
    for entry in booked:
        own = await service.http.get(
            f"/api/v1/registrations/{entry['id']}", headers={"X-Manage-Token": entry["manage_token"]}
        )
        assert own.status_code == 200
        assert own.json()["organisation"] == "Wirral Grammar School for Girls"
        assert own.json()["consent"]["source"] == "group_booking"
        first = (await emitted(service, entry["id"]))[0]
        assert sealing.unseal(first.data["manage_token_sealed"], service.link_key, entry["id"]) == entry["manage_token"]


async def test_a_group_with_someone_already_registered_creates_nobody(service: Registration) -> None:
    event = await create_event(service)
    registered = mailbox("already")
    await register(service, event["id"], email=registered)
    fresh = mailbox("fresh")
    reply = await service.http.post(
        f"/api/v1/events/{event['id']}/registrations/group", json=a_group(fresh, registered.upper())
    )
    assert (reply.status_code, reply.json()["code"]) == (409, "already_registered")
    assert [e.casefold() for e in reply.json()["emails"]] == [registered]
    repeated = await service.http.post(f"/api/v1/events/{event['id']}/registrations/group", json=a_group(fresh, fresh))
    assert (repeated.status_code, repeated.json()["emails"]) == (409, [fresh])
    assert await service.db["registrations"].count_documents({"event_id": event["id"]}) == 1
    too_many = await service.http.post(
        f"/api/v1/events/{event['id']}/registrations/group", json=a_group(*[mailbox(f"d{i}") for i in range(31)])
    )
    assert too_many.status_code == 422


async def test_a_group_booking_with_a_key_is_made_once(service: Registration) -> None:
    event = await create_event(service)
    body = a_group(mailbox("a"), mailbox("b"))
    url = f"/api/v1/events/{event['id']}/registrations/group"
    first = await service.http.post(url, json=body, headers={"Idempotency-Key": "group-1"})
    again = await service.http.post(url, json=body, headers={"Idempotency-Key": "group-1"})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    other = await service.http.post(url, json=a_group(mailbox("c")), headers={"Idempotency-Key": "group-1"})
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_key_reused")
    assert await service.db["registrations"].count_documents({"event_id": event["id"]}) == 2


async def test_an_interrupted_group_booking_is_finished_by_its_retry(service: Registration) -> None:
    event = await create_event(service)
    body = a_group(mailbox("a"), mailbox("b"))
    url = f"/api/v1/events/{event['id']}/registrations/group"
    first = await service.http.post(url, json=body, headers={"Idempotency-Key": "group-2"})
    # As if the process had stopped after the first colleague: the second is gone, the reply not kept.
    second_id = first.json()["registrations"][1]["id"]
    await service.db["registrations"].delete_one({"_id": second_id})
    key = f"{event['id']}:group:group-2"
    stored = await service.db["idempotency_keys"].find_one({"_id": key})
    assert stored is not None
    plan = [
        {"registration_id": r["id"], "manage_token": r["manage_token"], "email": r["email"]}
        for r in first.json()["registrations"]
    ]
    await service.db["idempotency_keys"].update_one(
        {"_id": key}, {"$set": {"plan": plan}, "$unset": {"body": "", "status": ""}}
    )
    retried = await service.http.post(url, json=body, headers={"Idempotency-Key": "group-2"})
    assert retried.status_code == 201, retried.text
    assert retried.json() == first.json()
    assert (await view(service, second_id))["status"] == "confirmed"


# CSV import


IMPORT_HEADER = (
    "name,email,organisation,role,phase,local_authority,ticket_type,sessions,dietary_needs,access_needs,answer:photo_ok"
)


async def start_import(service: Registration, event_id: str, text: str) -> httpx.Response:
    return await service.http.post(
        f"/api/v1/events/{event_id}/imports", headers={**ADMIN, "Content-Type": "text/csv"}, content=text.encode()
    )


async def finished_import(service: Registration, import_id: str) -> dict[str, Any]:
    report: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal report
        reply = await service.http.get(f"/api/v1/imports/{import_id}", headers=ADMIN)
        report = reply.json()
        return bool(report["status"] == "done")

    await eventually(done, timeout=60, what="the import finishing")
    return report


async def test_csv_import_reports_every_row_and_is_safe_to_run_twice(service: Registration) -> None:
    event = await create_event(
        service,
        capacity=3,
        sessions=[workshop("budgets", 10)],
        questions=[{"code": "photo_ok", "label": "Photos?", "kind": "yes_no", "required": True}],
    )
    already = mailbox("already")
    await register(service, event["id"], email=already, answers={"photo_ok": True})
    lines = [
        IMPORT_HEADER,
        f'"Ní Bhriain, Siobhán",{mailbox("siobhan")},Knowsley Park Primary,SENCO,Primary,Knowsley,,budgets,,,yes',
        f"Nguyễn Thị Lan,{mailbox('lan')},St Helens College,teacher educator,FE,St Helens,,,Vegan,,no",
        "Ayo Olubayo,not-an-email,Sefton High,teacher,,,,,,,yes",
        f"Tomás O'Neill,{mailbox('tomas')},Halton Academy,headteacher,,,,golf,,,yes",
        f"Zoë Brown,{mailbox('zoe')},Wirral Grammar,deputy head,,,,,,,",
        f"Already There,{already},Liverpool College,governor,,,,,,,yes",
        f"Ó Súilleabháin,{mailbox('os')},Warrington Special School,headteacher,special,Warrington,,,,Wheelchair,yes",
    ]
    text = "\n".join(lines) + "\n"
    started = await start_import(service, event["id"], text)
    assert started.status_code == 202, started.text
    assert (started.json()["status"], started.json()["total"]) == ("running", 7)
    report = await finished_import(service, started.json()["import_id"])
    assert (report["total"], report["processed"]) == (7, 7)
    assert (report["imported"], report["rejected"], report["skipped"]) == (3, 3, 1)
    outcomes = {row["row"]: row for row in report["rows"]}
    assert [outcomes[n]["outcome"] for n in range(2, 9)] == [
        "imported",
        "imported",
        "rejected",
        "rejected",
        "rejected",
        "skipped",
        "imported",
    ]
    assert "email" in outcomes[4]["reason"]
    assert "golf" in outcomes[5]["reason"]
    assert "answers.photo_ok" in outcomes[6]["reason"]
    assert [outcomes[n]["status"] for n in (2, 3, 8)] == ["confirmed", "confirmed", "waitlisted"]

    imported = await view(service, outcomes[2]["registration_id"])
    assert (imported["name"], imported["phase"], imported["sessions"]) == (
        "Ní Bhriain, Siobhán",
        "primary",
        ["budgets"],
    )
    assert imported["consent"]["source"] == "organiser_import"
    assert imported["consent"]["given_at"] and imported["consent"]["notice_version"] == "2026-09"
    first = (await emitted(service, imported["id"]))[0]
    assert first.data["manage_token_sealed"]

    again = await start_import(service, event["id"], text)
    rerun = await finished_import(service, again.json()["import_id"])
    assert (rerun["imported"], rerun["skipped"], rerun["rejected"]) == (0, 4, 3)
    assert await service.db["registrations"].count_documents({"event_id": event["id"]}) == 4


async def test_csv_import_refuses_what_it_cannot_read(service: Registration) -> None:
    event = await create_event(service)
    wrong_type = await service.http.post(f"/api/v1/events/{event['id']}/imports", headers=ADMIN, json={"rows": []})
    assert (wrong_type.status_code, wrong_type.json()["code"]) == (415, "unsupported_media_type")
    unknown = await start_import(service, event["id"], "name,email,organisation,role,shoe_size\n")
    assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_column")
    huge = await start_import(service, event["id"], "name,email,organisation,role\n" + "x" * (5 * 1024 * 1024))
    assert (huge.status_code, huge.json()["code"]) == (413, "file_too_large")
    not_organiser = await service.http.post(
        f"/api/v1/events/{event['id']}/imports", headers={"Content-Type": "text/csv"}, content=b"name\n"
    )
    assert not_organiser.status_code == 401
    assert (await service.http.get("/api/v1/imports/nope", headers=ADMIN)).status_code == 404


async def test_an_abandoned_import_is_resumed(service: Registration) -> None:
    event = await create_event(service)
    text = (
        IMPORT_HEADER.removesuffix(",answer:photo_ok")
        + "\n"
        + "".join(f"Delegate {i},{mailbox(f'd{i}')},Halton Primary,teacher,,,,,,\n" for i in range(3))
    )
    started = await start_import(service, event["id"], text)
    import_id = started.json()["import_id"]
    await finished_import(service, import_id)
    # As if its worker had stopped after registering the rows but before reporting them.
    await service.db["imports"].update_one(
        {"_id": import_id},
        {
            "$set": {
                "status": "running",
                "processed": 0,
                "imported": 0,
                "rows": [],
                "lease_owner": "gone",
                "lease_until": datetime.now(UTC) - timedelta(minutes=5),
            }
        },
    )
    await service.db["import_files"].insert_one(
        {
            "_id": import_id,
            "columns": IMPORT_HEADER.split(",")[:10],
            "rows": [[i + 2, *line.split(",")] for i, line in enumerate(text.splitlines()[1:])],
        }
    )
    report = await finished_import(service, import_id)
    assert (report["imported"], report["skipped"]) == (3, 0)


# Export


async def test_export_gives_every_field_as_json_or_safe_csv(service: Registration) -> None:
    event = await create_event(service, questions=QUESTIONS, sessions=[workshop("budgets", 0)])
    risky = await register(
        service,
        event["id"],
        name='=HYPERLINK("http://evil.example")',
        local_authority="Wirral",
        sessions=["budgets"],
        answers={**ANSWERS, "interests": ["SEND", "Wellbeing"], "hope": "-1 day"},
    )
    as_json = await service.http.get(f"/api/v1/events/{event['id']}/registrations", headers=ADMIN)
    assert as_json.json()[0]["id"] == risky["id"]
    assert as_json.json()[0]["waiting_sessions"] == ["budgets"]
    for reply in (
        await service.http.get(f"/api/v1/events/{event['id']}/registrations", headers={**ADMIN, "Accept": "text/csv"}),
        await service.http.get(f"/api/v1/events/{event['id']}/registrations?format=csv", headers=ADMIN),
    ):
        assert reply.headers["content-type"].startswith("text/csv")
        (row,) = list(csv.DictReader(io.StringIO(reply.text)))
        assert row["name"] == '\'=HYPERLINK("http://evil.example")'
        assert row["answer:hope"] == "'-1 day"
        assert row["answer:interests"] == "SEND; Wellbeing"
        assert row["answer:photo_ok"] == "yes"
        assert (row["status"], row["waiting_sessions"], row["local_authority"]) == ("confirmed", "budgets", "Wirral")
        assert row["created_at"]
    forced_json = await service.http.get(
        f"/api/v1/events/{event['id']}/registrations?format=json", headers={**ADMIN, "Accept": "text/csv"}
    )
    assert forced_json.json()[0]["id"] == risky["id"]


# Erasure


async def test_erasure_anonymises_a_confirmed_delegate_and_keeps_the_counts(service: Registration) -> None:
    event = await create_event(service, capacity=2, questions=QUESTIONS, sessions=[workshop("budgets", 1)])
    email = mailbox("erase.me")
    mine = await register(
        service,
        event["id"],
        email=email,
        sessions=["budgets"],
        dietary_needs="Coeliac",
        answers={**ANSWERS, "hope": "my own words"},
    )
    reply = await service.http.post(f"/api/v1/registrations/{mine['id']}/erase", headers=ADMIN)
    assert reply.status_code == 200, reply.text
    erased = reply.json()
    assert (erased["status"], erased["sessions"], erased["erased"]) == ("confirmed", ["budgets"], True)
    assert (erased["name"], erased["email"], erased["dietary_needs"], erased["answers"]) == (
        "Erased delegate",
        "",
        None,
        {},
    )
    stored = await service.db["registrations"].find_one({"_id": mine["id"]})
    assert email not in str(stored) and "Coeliac" not in str(stored) and "my own words" not in str(stored)
    assert (await emitted(service, mine["id"]))[-1].type == "registration.erased"
    places = (await service.http.get(f"/api/v1/events/{event['id']}")).json()
    assert (places["places_left"], places["sessions"][0]["places_left"]) == (1, 0)
    gone = await service.http.get(
        f"/api/v1/registrations/{mine['id']}", headers={"X-Manage-Token": mine["manage_token"]}
    )
    assert gone.status_code == 401
    again = await service.http.post(f"/api/v1/registrations/{mine['id']}/erase", headers=ADMIN)
    assert again.status_code == 200
    assert [e.type for e in await emitted(service, mine["id"])].count("registration.erased") == 1
    await register(service, event["id"], email=email, answers=ANSWERS)


async def test_erasing_a_waiting_delegate_takes_them_off_the_list(service: Registration) -> None:
    event = await create_event(service, capacity=1)
    holder = await register(service, event["id"])
    waiting = await register(service, event["id"])
    behind = await register(service, event["id"])
    await service.http.post(f"/api/v1/registrations/{waiting['id']}/erase", headers=ADMIN)
    types = await emitted_types(service, waiting["id"])
    assert types[-2:] == ["registration.cancelled", "registration.erased"]
    cancelled = (await emitted(service, waiting["id"]))[-2]
    assert (cancelled.data["reason"], cancelled.data["delegate"]["name"]) == ("erased", "Erased delegate")
    await cancel(service, holder["id"])
    assert (await view(service, waiting["id"]))["status"] == "cancelled"
    assert (await view(service, behind["id"]))["status"] == "confirmed"


async def test_group_replies_naming_an_erased_delegate_are_forgotten(service: Registration) -> None:
    event = await create_event(service)
    reply = await service.http.post(
        f"/api/v1/events/{event['id']}/registrations/group",
        json=a_group(mailbox("kept"), mailbox("erased")),
        headers={"Idempotency-Key": "group-erase"},
    )
    erased_id = reply.json()["registrations"][1]["id"]
    await service.http.post(f"/api/v1/registrations/{erased_id}/erase", headers=ADMIN)
    assert await service.db["idempotency_keys"].count_documents({"registration_ids": erased_id}) == 0
