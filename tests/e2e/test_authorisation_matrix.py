"""Who may call what: every endpoint of every service, called as six different callers, on the running stack.

The callers: anonymous; delegate A and delegate B (each with their own manage token); a door device
of event X (where A and B are registered) and one of event Y; the organiser. Each endpoint has an
access rule, and the rule says what each caller must get. Every route the services publish in
their OpenAPI must be in the table, so a new endpoint cannot go unchecked.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import httpx
import pytest
from journey import eventually, organiser, ticket_of

from plenary_stack.stack import EmbeddedStack

pytestmark = pytest.mark.timeout(300)

CALLERS = ("anonymous", "delegate_a", "delegate_b", "device_x", "device_y", "organiser")


class Access(Enum):
    PUBLIC = "anyone"
    ORGANISER = "the organiser only"
    OWN_REGISTRATION = "delegate A (it is A's) or the organiser"
    DOOR = "a device of event X or the organiser"
    DEVICE = "a device, about itself"


# What each caller gets, by access rule: "ok" is any success (2xx).
EXPECTED: dict[Access, dict[str, int | str]] = {
    Access.PUBLIC: dict.fromkeys(CALLERS, "ok"),
    Access.ORGANISER: {**dict.fromkeys(CALLERS, 401), "organiser": "ok"},
    Access.OWN_REGISTRATION: {**dict.fromkeys(CALLERS, 401), "delegate_b": 403, "delegate_a": "ok", "organiser": "ok"},
    Access.DOOR: {**dict.fromkeys(CALLERS, 401), "device_y": 403, "device_x": "ok", "organiser": "ok"},
    Access.DEVICE: {**dict.fromkeys(CALLERS, 401), "device_x": "ok", "device_y": "ok"},
}
# The checkin service knows device tokens: a device calling an organiser endpoint there has the
# right credentials for the wrong scope.
CHECKIN_ORGANISER = {**EXPECTED[Access.ORGANISER], "device_x": 403, "device_y": 403}


@dataclass
class World:
    """Ids of event X, its two delegates, their tickets and messages, and the two devices."""

    event_x: str
    event_slug: str
    a: dict[str, Any]
    b: dict[str, Any]
    ticket_a: dict[str, Any]
    message_a: str
    device_x: dict[str, Any]
    device_y: dict[str, Any]
    import_id: str
    headers: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    service: str
    method: str
    route: str
    access: Access
    path: Callable[[World], str]
    body: Callable[[World], Any] | None = None
    # Changes things: called by the allowed callers only after everyone else has been refused.
    mutates: bool = False
    content: tuple[str, bytes] | None = None

    def expected(self, caller: str) -> int | str:
        if self.service == "checkin" and self.access is Access.ORGANISER:
            return CHECKIN_ORGANISER[caller]
        return EXPECTED[self.access][caller]


def _person(tag: str) -> dict[str, Any]:
    return {
        "name": "Priya Patel",
        "email": f"priya.{tag}.{uuid.uuid4().hex[:8]}@huyton-academy.example",
        "organisation": "Huyton Academy",
        "role": "teacher",
        "consent": True,
    }


def _scan(world: World) -> dict[str, Any]:
    return {"code": world.ticket_a["code"], "gate": "Main entrance", "direction": "in", "nonce": uuid.uuid4().hex}


CALLS = [
    # Registration.
    Call("registration", "GET", "/api/v1/events", Access.PUBLIC, lambda w: f"/api/v1/events?slug={w.event_slug}"),
    Call("registration", "GET", "/api/v1/events/{event_id}", Access.PUBLIC, lambda w: f"/api/v1/events/{w.event_x}"),
    Call("registration", "POST", "/api/v1/events/{event_id}/registrations", Access.PUBLIC,
         lambda w: f"/api/v1/events/{w.event_x}/registrations", lambda w: _person("own")),
    Call("registration", "POST", "/api/v1/events/{event_id}/registrations/group", Access.PUBLIC,
         lambda w: f"/api/v1/events/{w.event_x}/registrations/group",
         lambda w: {"organisation": "Huyton Academy", "consent": True,
                    "booker": {"name": "Mohammed Khan", "email": f"booker.{uuid.uuid4().hex[:8]}@huyton.example"},
                    "delegates": [{k: v for k, v in _person("group").items() if k != "consent"}]}),
    Call("registration", "POST", "/api/v1/events", Access.ORGANISER, lambda w: "/api/v1/events",
         lambda w: {"slug": f"matrix-{uuid.uuid4().hex[:8]}", "title": "Governors' Forum", "venue": "Town Hall",
                    "starts_at": "2027-05-01T09:00:00+00:00", "ends_at": "2027-05-01T12:00:00+00:00",
                    "timezone": "Europe/London", "capacity": 20}, mutates=True),
    Call("registration", "PATCH", "/api/v1/events/{event_id}", Access.ORGANISER,
         lambda w: f"/api/v1/events/{w.event_x}", lambda w: {"venue": "Centre for Educational Leadership, Liverpool"},
         mutates=True),
    Call("registration", "POST", "/api/v1/events/{event_id}/close", Access.ORGANISER,
         lambda w: f"/api/v1/events/{w.event_x}/close", mutates=True),
    Call("registration", "POST", "/api/v1/events/{event_id}/open", Access.ORGANISER,
         lambda w: f"/api/v1/events/{w.event_x}/open", mutates=True),
    Call("registration", "GET", "/api/v1/events/{event_id}/registrations", Access.ORGANISER,
         lambda w: f"/api/v1/events/{w.event_x}/registrations"),
    Call("registration", "POST", "/api/v1/events/{event_id}/imports", Access.ORGANISER,
         lambda w: f"/api/v1/events/{w.event_x}/imports", mutates=True,
         content=("text/csv", b"name,email,organisation,role\nAnne-Marie Smith-Hughes,anne.marie@speke.example,"
                              b"Speke Primary,SENCO\n")),
    Call("registration", "GET", "/api/v1/imports/{import_id}", Access.ORGANISER,
         lambda w: f"/api/v1/imports/{w.import_id}"),
    Call("registration", "GET", "/api/v1/registrations/{registration_id}", Access.OWN_REGISTRATION,
         lambda w: f"/api/v1/registrations/{w.a['id']}"),
    Call("registration", "PATCH", "/api/v1/registrations/{registration_id}", Access.OWN_REGISTRATION,
         lambda w: f"/api/v1/registrations/{w.a['id']}", lambda w: {"dietary_needs": "vegetarian"}, mutates=True),
    Call("registration", "POST", "/api/v1/registrations/{registration_id}/resend", Access.OWN_REGISTRATION,
         lambda w: f"/api/v1/registrations/{w.a['id']}/resend", mutates=True),
    # No offer is open, so the allowed callers get 409; what matters is who gets past the door.
    Call("registration", "POST", "/api/v1/registrations/{registration_id}/accept-offer", Access.OWN_REGISTRATION,
         lambda w: f"/api/v1/registrations/{w.a['id']}/accept-offer", mutates=True),
    # Ticketing.
    Call("ticketing", "GET", "/api/v1/registrations/{registration_id}/ticket", Access.OWN_REGISTRATION,
         lambda w: f"/api/v1/registrations/{w.a['id']}/ticket"),
    Call("ticketing", "GET", "/api/v1/tickets/{ticket_id}/qr.png", Access.OWN_REGISTRATION,
         lambda w: f"/api/v1/tickets/{w.ticket_a['ticket_id']}/qr.png"),
    Call("ticketing", "GET", "/api/v1/tickets/{ticket_id}/qr.svg", Access.OWN_REGISTRATION,
         lambda w: f"/api/v1/tickets/{w.ticket_a['ticket_id']}/qr.svg"),
    Call("ticketing", "GET", "/api/v1/tickets/{ticket_id}/ticket.pdf", Access.OWN_REGISTRATION,
         lambda w: f"/api/v1/tickets/{w.ticket_a['ticket_id']}/ticket.pdf"),
    Call("ticketing", "GET", "/api/v1/events/{event_id}/keys", Access.PUBLIC,
         lambda w: f"/api/v1/events/{w.event_x}/keys"),
    Call("ticketing", "GET", "/api/v1/events/{event_id}/revocations", Access.ORGANISER,
         lambda w: f"/api/v1/events/{w.event_x}/revocations"),
    Call("ticketing", "POST", "/api/v1/events/{event_id}/keys/rotate", Access.ORGANISER,
         lambda w: f"/api/v1/events/{w.event_x}/keys/rotate", mutates=True),
    Call("ticketing", "POST", "/api/v1/registrations/{registration_id}/ticket/reissue", Access.ORGANISER,
         lambda w: f"/api/v1/registrations/{w.a['id']}/ticket/reissue", mutates=True),
    # Notifications.
    Call("notifications", "GET", "/api/v1/notifications", Access.ORGANISER,
         lambda w: f"/api/v1/notifications?registration_id={w.a['id']}"),
    Call("notifications", "POST", "/api/v1/notifications/{message_id}/resend", Access.ORGANISER,
         lambda w: f"/api/v1/notifications/{w.message_a}/resend", mutates=True),
    # Checkin.
    Call("checkin", "POST", "/api/v1/events/{event_id}/scans", Access.DOOR,
         lambda w: f"/api/v1/events/{w.event_x}/scans", _scan, mutates=True),
    Call("checkin", "GET", "/api/v1/events/{event_id}/snapshot", Access.DOOR,
         lambda w: f"/api/v1/events/{w.event_x}/snapshot"),
    Call("checkin", "GET", "/api/v1/events/{event_id}/scans", Access.ORGANISER,
         lambda w: f"/api/v1/events/{w.event_x}/scans"),
    Call("checkin", "GET", "/api/v1/events/{event_id}/attendance", Access.ORGANISER,
         lambda w: f"/api/v1/events/{w.event_x}/attendance"),
    Call("checkin", "GET", "/api/v1/events/{event_id}/attendance/stream", Access.ORGANISER,
         lambda w: f"/api/v1/events/{w.event_x}/attendance/stream"),
    Call("checkin", "GET", "/api/v1/events/{event_id}/alerts", Access.ORGANISER,
         lambda w: f"/api/v1/events/{w.event_x}/alerts"),
    Call("checkin", "GET", "/api/v1/events/{event_id}/no-shows", Access.ORGANISER,
         lambda w: f"/api/v1/events/{w.event_x}/no-shows"),
    Call("checkin", "GET", "/api/v1/events/{event_id}/devices", Access.ORGANISER,
         lambda w: f"/api/v1/events/{w.event_x}/devices"),
    Call("checkin", "POST", "/api/v1/events/{event_id}/devices", Access.ORGANISER,
         lambda w: f"/api/v1/events/{w.event_x}/devices", lambda w: {"name": "Spare phone", "gates": ["Side door"]},
         mutates=True),
    Call("checkin", "GET", "/api/v1/devices/me", Access.DEVICE, lambda w: "/api/v1/devices/me"),
    # Last, as they end what the calls above rely on: device Y, A's registration, B's data.
    Call("checkin", "POST", "/api/v1/devices/{device_id}/revoke", Access.ORGANISER,
         lambda w: f"/api/v1/devices/{w.device_y['device_id']}/revoke", mutates=True),
    Call("registration", "POST", "/api/v1/registrations/{registration_id}/cancel", Access.OWN_REGISTRATION,
         lambda w: f"/api/v1/registrations/{w.a['id']}/cancel", mutates=True),
    Call("registration", "POST", "/api/v1/registrations/{registration_id}/erase", Access.ORGANISER,
         lambda w: f"/api/v1/registrations/{w.b['id']}/erase", mutates=True),
    # Ticketing.
]
# Exchanging a one-time code needs no credentials at all (the code is the credential); it is
# tested with the enrolment itself. Its route is listed here so the completeness check knows it.
UNCREDENTIALED = {("checkin", "POST", "/api/v1/devices/enrol")}
# Refused before any change: the allowed callers of these get a domain answer, not a success.
DOMAIN_REFUSALS = {"/api/v1/registrations/{registration_id}/accept-offer": 409}


async def _world(http: httpx.AsyncClient, stack: EmbeddedStack) -> World:
    registration, checkin = stack.config.url("registration"), stack.config.url("checkin")
    admin = organiser(stack)
    events = []
    for title in ("Leading Inclusive Schools", "Governors' Forum"):
        slug = f"matrix-{uuid.uuid4().hex[:8]}"
        created = await http.post(
            f"{registration}/api/v1/events",
            headers=admin,
            json={"slug": slug, "title": title, "venue": "Foresight Centre, Liverpool",
                  "starts_at": "2027-04-20T09:00:00+00:00", "ends_at": "2027-04-20T16:00:00+00:00",
                  "timezone": "Europe/London", "capacity": 50},
        )
        assert created.status_code == 201, created.text
        events.append((created.json()["id"], slug))
    (event_x, slug_x), (event_y, _) = events
    delegates = []
    for tag in ("a", "b"):
        reply = await http.post(f"{registration}/api/v1/events/{event_x}/registrations", json=_person(tag))
        assert reply.status_code == 201, reply.text
        delegates.append(reply.json())
    ticket_a = await ticket_of(http, stack, delegates[0])
    await ticket_of(http, stack, delegates[1])

    async def message_of_a() -> str | None:
        log = await http.get(
            f"{stack.config.url('notifications')}/api/v1/notifications",
            params={"registration_id": delegates[0]["id"]}, headers=admin,
        )
        sent = [row for row in log.json() if row.get("status") == "sent"]
        return str(sent[0]["id"]) if sent else None

    message_a = await eventually(message_of_a, what="the confirmation in the delivery log")
    devices = []
    for event_id in (event_x, event_y):
        created = await http.post(
            f"{checkin}/api/v1/events/{event_id}/devices",
            headers=admin, json={"name": "Door phone", "gates": ["Main entrance"]},
        )
        assert created.status_code == 201, created.text
        devices.append(created.json())

    async def projected() -> bool:
        snapshot = await http.get(f"{checkin}/api/v1/events/{event_x}/snapshot", headers=admin)
        return len(snapshot.json()["tickets"]) == 2

    await eventually(projected, what="the door's ticket list")
    started = await http.post(
        f"{registration}/api/v1/events/{event_x}/imports", headers={**admin, "Content-Type": "text/csv"},
        content=b"name,email,organisation,role\n",
    )
    assert started.status_code == 202, started.text
    world = World(event_x, slug_x, delegates[0], delegates[1], ticket_a, message_a, devices[0], devices[1],
                  started.json()["import_id"])
    world.headers = {
        "anonymous": {},
        "delegate_a": {"X-Manage-Token": delegates[0]["manage_token"]},
        "delegate_b": {"X-Manage-Token": delegates[1]["manage_token"]},
        "device_x": {"Authorization": f"Bearer {devices[0]['token']}"},
        "device_y": {"Authorization": f"Bearer {devices[1]['token']}"},
        "organiser": admin,
    }
    return world


async def test_every_endpoint_answers_each_caller_as_its_access_rule_says(stack: EmbeddedStack) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(15.0, read=5.0)) as http:
        published = set()
        for service in ("registration", "ticketing", "notifications", "checkin"):
            schema = (await http.get(f"{stack.config.url(service)}/openapi.json")).json()
            published |= {(service, method.upper(), route) for route, ops in schema["paths"].items() for method in ops}
        listed = {(call.service, call.method, call.route) for call in CALLS} | UNCREDENTIALED
        assert published == listed, {"not in the matrix": published - listed, "no longer published": listed - published}

        world = await _world(http, stack)
        unexpected: list[str] = []

        async def attempt(call: Call, caller: str) -> None:
            url = stack.config.url(call.service) + call.path(world)
            headers = dict(world.headers[caller])
            options: dict[str, Any] = {}
            if call.body is not None:
                options["json"] = call.body(world)
            if call.content is not None:
                headers["Content-Type"], options["content"] = call.content
            async with http.stream(call.method, url, headers=headers, **options) as response:
                status = response.status_code
                if status >= 400:
                    await response.aread()
            wanted = call.expected(caller)
            allowed = wanted == "ok"
            if allowed and call.route in DOMAIN_REFUSALS:
                wanted = DOMAIN_REFUSALS[call.route]
            ok = (200 <= status < 300) if wanted == "ok" else status == wanted
            if not ok:
                rule = call.access.value
                unexpected.append(f"{caller:>10} {call.method} {call.route} ({rule}): {status}, wanted {wanted}")

        for call in CALLS:
            refused = [c for c in CALLERS if call.expected(c) != "ok"]
            allowed = [c for c in CALLERS if call.expected(c) == "ok"]
            # Everyone who must be refused first, so a change by an allowed caller cannot hide a hole.
            for caller in refused:
                await attempt(call, caller)
            # A change is made once, by the first caller allowed to (the delegate or device where there is one).
            for caller in allowed if not call.mutates else allowed[:1]:
                await attempt(call, caller)
        assert not unexpected, "\n" + "\n".join(unexpected)
