"""A booking-opens surge on the whole stack: 1,000 delegates for 100 places, then ten cancellations."""

from __future__ import annotations

import asyncio
import email.policy
import io
import json
import random
import re
import unicodedata
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import zxingcpp
from PIL import Image
from pymongo import AsyncMongoClient

from notifications.compose import SUBJECTS
from notifications.domain import Kind
from plenary_stack.stack import EmbeddedStack

pytestmark = pytest.mark.timeout(600)

DELEGATES = 1000
CAPACITY = 100
IN_FLIGHT = 64
CANCELLING = 10
SURGE_OUTCOME = {"confirmed": CAPACITY, "waitlisted": DELEGATES - CAPACITY}
TITLE = "Education Leadership in Challenging Times"

GIVEN_NAMES = (
    "Siobhán", "Aoife", "Zoë", "Ngozi", "Oluwaseun", "Priya", "Fatima", "Yusuf", "Mei", "Thanh", "Agnieszka",
    "Rhys", "Seren", "Noémie", "José", "Ayşe", "Kwame", "Saoirse", "Tadhg", "Mohammed", "Anne-Marie", "Sinéad",
)
SURNAMES = (
    "Ní Bhriain", "O'Neill", "Olubayo", "Ó Súilleabháin", "Nguyễn", "Okafor", "Patel", "Khan", "Kowalska",
    "Jones", "Roberts", "McAllister", "Smith-Hughes", "Chen", "Murphy", "Doherty", "Mensah", "Müller",
)
PLACES = ("Birkenhead Park", "Bootle", "Everton", "Halewood", "Huyton", "Kirkby", "Runcorn", "Southport",
          "Speke", "Wallasey", "Widnes", "Woolton", "Prescot", "Rainhill", "Eccleston")
SCHOOL_KINDS = ("Primary School", "Catholic High School", "Academy", "Nursery School", "Special School")
ROLES = ("headteacher", "deputy headteacher", "SENCO", "subject leader", "early years lead", "teacher", "governor")

T = TypeVar("T")


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", folded.replace("'", "")).strip("-")


def crowd(tag: str) -> list[dict[str, Any]]:
    """Distinct delegates from 75 schools: the same surname and school turn up again and again."""
    rng = random.Random(1000)
    schools = [f"{place} {kind}" for place in PLACES for kind in SCHOOL_KINDS]
    people = []
    for index in range(DELEGATES):
        given, surname, school = rng.choice(GIVEN_NAMES), rng.choice(SURNAMES), rng.choice(schools)
        people.append(
            {
                "name": f"{given} {surname}",
                "email": f"{_ascii(given)}.{_ascii(surname)}.{index}.{tag}@{_ascii(school)}.example",
                "organisation": school,
                "role": rng.choice(ROLES),
                "consent": True,
            }
        )
    return people


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float, what: str) -> T:
    """Poll `check` until it returns something truthy, or fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(0.25)


class Mailroom:
    """The stack's Maildir, read as it fills; only the watched recipients' messages are parsed in full."""

    def __init__(self, maildir: Path, watched: set[str]) -> None:
        self._maildir = maildir
        self._watched = watched
        self._seen: set[str] = set()
        self.messages: dict[str, list[EmailMessage]] = {}

    def refresh(self) -> dict[str, list[EmailMessage]]:
        for folder in ("new", "cur"):
            directory = self._maildir / folder
            for path in sorted(directory.iterdir()) if directory.is_dir() else []:
                unique = path.name.split(":", 1)[0]
                if unique in self._seen:
                    continue
                raw = path.read_bytes()
                self._seen.add(unique)
                recipient = str(BytesHeaderParser(policy=email.policy.default).parsebytes(raw)["Delivered-To"])
                if recipient.strip().lower() in self._watched:
                    message = BytesParser(policy=email.policy.default).parsebytes(raw)
                    assert isinstance(message, EmailMessage)
                    self.messages.setdefault(recipient.strip().lower(), []).append(message)
        return self.messages


def _unfolded(text: str) -> str:
    return " ".join(text.split())


def kinds(messages: list[EmailMessage]) -> Counter[str]:
    """How many emails of each kind, told apart by the subject the notifications service gives each."""
    subjects = {_unfolded(SUBJECTS[kind].format(title=TITLE)): str(kind) for kind in Kind}
    found = [_unfolded(str(message["Subject"])) for message in messages]
    return Counter(subjects.get(subject, subject) for subject in found)


def inline_qr(message: EmailMessage) -> str:
    for part in message.walk():
        if part.get_content_type() == "image/png" and part.get_content_disposition() == "inline":
            image = Image.open(io.BytesIO(part.get_content()))
            barcodes = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
            assert len(barcodes) == 1, "the inline image should hold exactly one readable QR code"
            return str(barcodes[0].text)
    raise AssertionError("no inline QR image in the confirmation email")


ATTEMPTS = 3


async def post_as_a_phone_does(http: httpx.AsyncClient, url: str, person: dict[str, Any]) -> httpx.Response:
    """One registration with an Idempotency-Key, sent again with the same key if the connection drops
    or the service answers 503 (its database did not answer in time), after the Retry-After it gives."""
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    for attempt in range(1, ATTEMPTS + 1):
        try:
            reply = await http.post(url, json=person, headers=headers)
        except httpx.TransportError:
            if attempt == ATTEMPTS:
                raise
            await asyncio.sleep(0.5)
            continue
        if reply.status_code != 503 or attempt == ATTEMPTS:
            return reply
        await asyncio.sleep(float(reply.headers.get("Retry-After", "1")))
    raise AssertionError("unreachable")


async def register_all(http: httpx.AsyncClient, url: str, people: list[dict[str, Any]]) -> list[httpx.Response]:
    """Everyone at once, IN_FLIGHT requests at a time, as a booking-opens rush looks to the server."""
    replies: dict[int, httpx.Response] = {}
    waiting = iter(enumerate(people))

    async def phone() -> None:
        for index, person in waiting:
            replies[index] = await post_as_a_phone_does(http, url, person)

    await asyncio.gather(*(phone() for _ in range(IN_FLIGHT)))
    return [replies[index] for index in range(len(people))]


async def test_surge_fills_exactly_the_places_and_cancellations_promote_the_next_in_line(
    stack: EmbeddedStack,
) -> None:
    registration, ticketing = stack.config.url("registration"), stack.config.url("ticketing")
    organiser = {"Authorization": f"Bearer {stack.admin_token}"}
    people = crowd(uuid.uuid4().hex[:6])
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    # The document server drops connections idle for five minutes; a surge can last longer.
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.config.mongo, tz_aware=True, maxIdleTimeMS=60_000)
    async with mongo, httpx.AsyncClient(timeout=120.0, limits=limits) as http:
        created = await http.post(
            f"{registration}/api/v1/events",
            headers=organiser,
            json={
                "slug": f"leadership-surge-{uuid.uuid4().hex[:8]}",
                "title": TITLE,
                "venue": "Centre for Educational Leadership, Liverpool",
                "starts_at": "2027-03-12T09:30:00+00:00",
                "ends_at": "2027-03-12T16:00:00+00:00",
                "timezone": "Europe/London",
                "capacity": CAPACITY,
            },
        )
        assert created.status_code == 201, created.text
        event_id = created.json()["id"]

        # The surge: every delegate gets an answer, and exactly the places there are get confirmed.
        replies = await asyncio.wait_for(
            register_all(http, f"{registration}/api/v1/events/{event_id}/registrations", people), timeout=300
        )
        refused = [(reply.status_code, reply.text[:200]) for reply in replies if reply.status_code != 201]
        assert not refused, f"{len(refused)} registrations refused, e.g. {refused[:3]}"
        accepted = [reply.json() for reply in replies]
        assert Counter(body["status"] for body in accepted) == SURGE_OUTCOME
        assert len({body["id"] for body in accepted}) == DELEGATES
        assert len({body["manage_token"] for body in accepted}) == DELEGATES
        by_id = {body["id"]: {**body, "email": person["email"]} for body, person in zip(accepted, people, strict=True)}

        async def organiser_list() -> dict[str, dict[str, Any]]:
            listed = await http.get(f"{registration}/api/v1/events/{event_id}/registrations", headers=organiser)
            assert listed.status_code == 200, listed.text
            return {row["id"]: row for row in listed.json()}

        listed = await organiser_list()
        assert set(listed) == set(by_id)
        assert Counter(row["status"] for row in listed.values()) == SURGE_OUTCOME
        assert all(listed[rid]["status"] == body["status"] for rid, body in by_id.items())
        event = (await http.get(f"{registration}/api/v1/events/{event_id}")).json()
        assert event["places_left"] == 0

        # The waiting list is one unbroken queue, and the organiser sees the positions the
        # registration service announced when each delegate joined it.
        positions = {rid: row["waitlist_position"] for rid, row in listed.items() if row["status"] == "waitlisted"}
        assert sorted(positions.values()) == list(range(1, DELEGATES - CAPACITY + 1))
        outbox = mongo[f"{stack.config.db_prefix}_registration"]["outbox"]
        announced = {}
        async for row in outbox.find({"type": "registration.waitlisted", "key": {"$in": list(positions)}}):
            data = json.loads(bytes(row["value"]))["data"]
            announced[data["registration_id"]] = data["position"]
        assert announced == positions

        # Every confirmed delegate has a ticket before anyone cancels, so the cancelled ones' are revoked.
        tickets = mongo[f"{stack.config.db_prefix}_ticketing"]["tickets"]

        async def all_tickets_issued() -> bool:
            return await tickets.count_documents({"event_id": event_id}) == CAPACITY

        await eventually(all_tickets_issued, timeout=180, what="a ticket for every confirmed delegate")

        confirmed = [rid for rid, body in by_id.items() if body["status"] == "confirmed"]
        cancelling = random.Random(10).sample(confirmed, CANCELLING)
        for rid in cancelling:
            cancelled = await http.post(
                f"{registration}/api/v1/registrations/{rid}/cancel",
                headers={"X-Manage-Token": by_id[rid]["manage_token"]},
            )
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["status"] == "cancelled"

        next_in_line = sorted(positions, key=positions.__getitem__)[:CANCELLING]

        async def promoted() -> dict[str, dict[str, Any]] | None:
            rows = await organiser_list()
            return rows if all(rows[rid]["status"] == "confirmed" for rid in next_in_line) else None

        listed = await eventually(promoted, timeout=60, what="promotion of the next ten in line")
        now_confirmed = {rid for rid, row in listed.items() if row["status"] == "confirmed"}
        assert now_confirmed == (set(confirmed) - set(cancelling)) | set(next_in_line)
        assert {rid for rid, row in listed.items() if row["status"] == "cancelled"} == set(cancelling)
        assert sum(row["status"] == "waitlisted" for row in listed.values()) == DELEGATES - CAPACITY - CANCELLING
        assert (await http.get(f"{registration}/api/v1/events/{event_id}")).json()["places_left"] == 0

        async def ticket(rid: str, status: str) -> dict[str, Any] | None:
            reply = await http.get(
                f"{ticketing}/api/v1/registrations/{rid}/ticket",
                headers={"X-Manage-Token": by_id[rid]["manage_token"]},
            )
            return reply.json() if reply.status_code == 200 and reply.json()["status"] == status else None

        promoted_tickets = {
            rid: await eventually(partial(ticket, rid, "valid"), timeout=120, what="a promoted delegate's ticket")
            for rid in next_in_line
        }
        assert all(t["event_id"] == event_id for t in promoted_tickets.values())
        for rid in cancelling:
            await eventually(partial(ticket, rid, "revoked"), timeout=120, what="a cancelled delegate's revocation")

        # Each promoted delegate hears that a place came up, then gets the ticket itself, once each.
        addresses = {by_id[rid]["email"].lower(): rid for rid in next_in_line}
        mailroom = Mailroom(stack.config.maildir, set(addresses))

        async def promotion_and_ticket_emails() -> dict[str, list[EmailMessage]] | None:
            mail = await asyncio.to_thread(mailroom.refresh)
            arrived = all(
                {str(Kind.PROMOTED), str(Kind.CONFIRMATION)} <= set(kinds(mail.get(address, [])))
                for address in addresses
            )
            return mail if arrived else None

        mail = await eventually(promotion_and_ticket_emails, timeout=240, what="promotion and ticket emails")
        for address, rid in addresses.items():
            received = kinds(mail[address])
            # The waiting-list email may have gone out before the promotion, or been overtaken by it.
            assert received[str(Kind.PROMOTED)] == received[str(Kind.CONFIRMATION)] == 1, received
            assert set(received) <= {str(Kind.WAITLISTED), str(Kind.PROMOTED), str(Kind.CONFIRMATION)}, received
            assert received[str(Kind.WAITLISTED)] <= 1, received
            [confirmation] = [m for m in mail[address] if kinds([m]) == {str(Kind.CONFIRMATION): 1}]
            assert inline_qr(confirmation) == promoted_tickets[rid]["code"]

        # Nobody else moved while the pipeline caught up.
        settled = await organiser_list()
        assert {rid for rid, row in settled.items() if row["status"] == "confirmed"} == now_confirmed
