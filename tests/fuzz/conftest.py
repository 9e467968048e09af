"""Fixtures for fuzzing: the four services in-process on the real broker and document server, seeded.

Schemathesis drives each app over ASGI on an event loop of its own and runs the app's lifespan
there too: an app starts with the first request sent to it and stops when its test ends.
Every app runs the API role only: nothing the fuzzer causes is relayed to the broker other test
modules share, and no consumer joins their groups.

One delegate is registered first and her registration carried by hand through ticketing, checkin
and notifications, so path parameters sometimes name documents that exist, and the handlers behind
a 404 are reached too.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fuzzing import ADMIN_TOKEN, ORGANISER, Seeded, Seeds
from pymongo import AsyncMongoClient, MongoClient
from schemathesis.python import asgi

from checkin.handlers import Projection
from checkin.main import create_app as create_checkin
from checkin.store import Store as CheckinStore
from notifications.domain import Status
from notifications.handlers import Notifications
from notifications.main import create_app as create_notifications
from notifications.store import Store as NotificationStore
from plenary_kit import mongo, sealing, topics
from plenary_kit.consumer import Handler
from plenary_kit.envelope import Envelope
from plenary_kit.mongo import Document
from plenary_kit.outbox import Outbox
from plenary_kit.settings import ServiceSettings
from plenary_stack.stack import EmbeddedStack
from registration.main import create_app as create_registration
from ticketing.handlers import Tickets
from ticketing.main import create_app as create_ticketing
from ticketing.settings import TicketingSettings
from ticketing.store import Store as TicketingStore
from ticketing.vault import Vault

# The document server is shared by the whole run: these databases are the fuzz run's own.
DB_PREFIX = f"plenary_fuzz_{uuid.uuid4().hex[:8]}"
GROUP_SUFFIX = f"-fuzz-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def fuzz_settings(infrastructure: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> ServiceSettings:
    return ServiceSettings(
        plenary_consumer_group_suffix=GROUP_SUFFIX,
        kafka_bootstrap_servers=infrastructure.config.bootstrap,
        mongodb_uri=infrastructure.config.mongo,
        plenary_db_prefix=DB_PREFIX,
        plenary_var=tmp_path_factory.mktemp("fuzz-var"),
        plenary_admin_token=ADMIN_TOKEN,
        plenary_link_key=sealing.new_key_text(),
        plenary_rate_limits="off",
        plenary_roles="api",
    )


CREATE: dict[str, Callable[[ServiceSettings], FastAPI]] = {
    "registration": create_registration,
    "ticketing": create_ticketing,
    "notifications": create_notifications,
    "checkin": create_checkin,
}


@pytest.fixture(scope="session")
def new_app(fuzz_settings: ServiceSettings) -> Callable[[str], FastAPI]:
    """Makes a fresh app of one service, on the session's databases.

    Schemathesis's pytest plugin ends every ASGI app's lifespan when a test ends, and a service's
    runtime cannot start again once stopped (its MongoDB client is closed), so every test, one per
    API operation, gets an app of its own; the first request sent to it starts it.
    """

    def make(service: str) -> FastAPI:
        return CREATE[service](fuzz_settings)

    return make


def _wait_until_ready(client: asgi.ASGIClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready within {timeout:.0f} s")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def seeded(new_app: Callable[[str], FastAPI], fuzz_settings: ServiceSettings) -> Iterator[Seeded]:
    try:
        Seeds.current = _seed(new_app, fuzz_settings)
        yield Seeds.current
    finally:
        Seeds.current = None


def _seed(new_app: Callable[[str], FastAPI], settings: ServiceSettings) -> Seeded:
    """An event with a workshop, one delegate confirmed with her ticket and email, and a door device."""
    with _client(new_app("registration")) as registration, _client(new_app("checkin")) as checkin:
        _wait_until_ready(registration)
        _wait_until_ready(checkin)
        event = _created(
            registration.post(
                "/api/v1/events",
                headers=ORGANISER,
                json={
                    "slug": f"future-heads-{uuid.uuid4().hex[:8]}",
                    "title": "Future Heads Programme",
                    "venue": "Halton Lea Library, Runcorn",
                    "starts_at": "2027-03-12T09:30:00+00:00",
                    "ends_at": "2027-03-12T16:00:00+00:00",
                    "timezone": "Europe/London",
                    "capacity": 40,
                    "sessions": [
                        {
                            "code": "w1",
                            "title": "Leading through budget pressure",
                            "starts_at": "2027-03-12T11:00:00+00:00",
                            "ends_at": "2027-03-12T12:15:00+00:00",
                            "capacity": 20,
                        }
                    ],
                    "questions": [{"code": "hope", "label": "What do you hope to take away?", "kind": "text"}],
                },
            )
        )
        delegate = _created(
            registration.post(
                f"/api/v1/events/{event['id']}/registrations",
                json={
                    "name": "Zoë Olubayo-O'Neill",
                    "email": f"z.olubayo.{uuid.uuid4().hex[:8]}@birkenhead.sch.example",
                    "organisation": "Birkenhead Park Primary School",
                    "role": "Headteacher",
                    "sessions": ["w1"],
                    "consent": True,
                },
            )
        )
        carried = _run(_carry_downstream(settings, delegate["id"]))
        device = _created(
            checkin.post(
                f"/api/v1/events/{event['id']}/devices",
                headers=ORGANISER,
                json={"name": "Main entrance phone", "gates": ["main"]},
            )
        )
    # Started here, the two apps end with the first test's teardown; end them now instead.
    asgi.shutdown_lifespans()
    return Seeded(
        event_id=event["id"],
        registration_id=delegate["id"],
        manage_token=delegate["manage_token"],
        ticket_id=carried["ticket_id"],
        message_id=carried["message_id"],
        device_id=device["device_id"],
        device_token=device["token"],
    )


def _client(app: FastAPI) -> asgi.ASGIClient:
    """Schemathesis's own in-process client, so the app runs on the event loop the fuzzing uses."""
    return asgi.get_client(cast("asgi.ASGIApp", app))


def _created(reply: Any) -> dict[str, Any]:
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def _run(work: Any) -> Any:
    """A coroutine run to the end on an event loop of its own thread, leaving pytest's loop alone."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result()


def _outbox(settings: ServiceSettings, service: str, event_type: str, key: str) -> Envelope:
    """An event a service recorded, read from its outbox the way its relay would."""
    client: MongoClient[Document]
    with MongoClient(settings.mongodb_uri) as client:
        row = client[settings.database_name(service)]["outbox"].find_one({"type": event_type, "key": key})
    assert row is not None, f"{service} recorded no {event_type} for {key}"
    return Envelope.from_bytes(bytes(row["value"]))


async def _carry_downstream(settings: ServiceSettings, registration_id: str) -> dict[str, str]:
    """What the consumers would do with the registration: a ticket, its projection and its email."""
    confirmed = _outbox(settings, "registration", "registration.confirmed", registration_id)
    client = mongo.connect(settings.mongodb_uri)
    try:
        ticketing_db = client[settings.database_name("ticketing")]
        tickets = Tickets(
            TicketingStore(ticketing_db, Vault(TicketingSettings.of(settings).master_key())),
            Outbox(ticketing_db, topics.TICKETING),
            client,
        )
        await _handle(client, tickets.issue, confirmed)
        ticket_row = await ticketing_db["tickets"].find_one({"registration_id": registration_id})
        assert ticket_row is not None, "no ticket issued"
        issued = _outbox(settings, "ticketing", "ticket.issued", registration_id)

        projection = Projection(CheckinStore(client[settings.database_name("checkin")])).handlers()
        for envelope in (confirmed, issued):
            await _handle(client, projection[envelope.type], envelope)

        notifications_db = client[settings.database_name("notifications")]
        store = NotificationStore(notifications_db)
        handlers = Notifications(
            store,
            Outbox(notifications_db, topics.NOTIFICATIONS),
            link_key=settings.link_key(),
            public_url="https://register.plenary.example",
        ).subscriptions()
        for envelope in (confirmed, issued):
            await _handle(client, handlers[envelope.type], envelope)
        message = await store.messages.find_one({"registration_id": registration_id})
        assert message is not None, "no email queued"
        # As if the sender had delivered it (none runs here), so an organiser may ask for it again.
        now = datetime.now(UTC)
        await store.messages.update_one(
            {"_id": message["_id"]}, {"$set": {"status": Status.SENT, "sent_at": now, "updated_at": now}}
        )
        return {"ticket_id": str(ticket_row["_id"]), "message_id": str(message["_id"])}
    finally:
        await client.close()


async def _handle(client: AsyncMongoClient[Document], handler: Handler, envelope: Envelope) -> None:
    async def work(session: mongo.Session) -> None:
        await handler(envelope, envelope.payload(), session)

    await mongo.in_transaction(client, work)
