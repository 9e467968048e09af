"""A full run on a stack of its own, then every log line of every process read for personal data and secrets.

Registration, ticket, email, manage-link use, device enrolment, scans good and bad, cancellation
and revocation: each secret the run handles is collected, and none may appear in any log, nor
anything shaped like an email address or a ticket code.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from journey import create_event, eventually, messages_to, now, organiser, ticket_of

from plenary_stack.stack import EmbeddedStack

pytestmark = pytest.mark.timeout(300)

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
# Ticket codes are long runs of base32; ids, hashes and timestamps in the logs are not.
TICKET_CODE = re.compile(r"\b[A-Z2-7]{60,}\b")


async def test_a_full_run_logs_no_email_address_token_or_ticket_code(own_stack: EmbeddedStack) -> None:
    stack = own_stack
    registration, ticketing, checkin = (stack.config.url(s) for s in ("registration", "ticketing", "checkin"))
    secrets: dict[str, str] = {"organiser token": stack.admin_token}
    async with httpx.AsyncClient(timeout=30.0) as http:
        event_id = await create_event(http, stack)
        delegates = []
        for who in ("ngozi.okafor", "rhys.roberts"):
            address = f"{who}.{uuid.uuid4().hex[:6]}@wallasey-academy.example"
            reply = await http.post(
                f"{registration}/api/v1/events/{event_id}/registrations",
                headers={"Idempotency-Key": uuid.uuid4().hex},
                json={
                    "name": who.replace(".", " ").title(),
                    "email": address,
                    "organisation": "Wallasey Academy",
                    "role": "deputy headteacher",
                    "consent": True,
                },
            )
            assert reply.status_code == 201, reply.text
            body: dict[str, Any] = reply.json()
            secrets[f"email of {who}"] = address
            secrets[f"manage token of {who}"] = body["manage_token"]
            delegates.append({**body, "email": address})

        tickets = [await ticket_of(http, stack, delegate) for delegate in delegates]
        for delegate, ticket in zip(delegates, tickets, strict=True):
            secrets[f"ticket code of {delegate['id']}"] = ticket["code"]
            manage = {"X-Manage-Token": delegate["manage_token"]}
            assert (await http.get(f"{registration}/api/v1/registrations/{delegate['id']}", headers=manage)).is_success
            png = await http.get(f"{ticketing}/api/v1/tickets/{ticket['ticket_id']}/qr.png", headers=manage)
            assert png.status_code == 200
        for delegate in delegates:
            await eventually(lambda d=delegate: now(messages_to(stack, d["email"])), what="the confirmation email")

        created = await http.post(
            f"{checkin}/api/v1/events/{event_id}/devices",
            headers=organiser(stack),
            json={"name": "Foyer phone", "gates": ["Main entrance"]},
        )
        assert created.status_code == 201, created.text
        secrets["device token"] = created.json()["token"]
        secrets["enrolment code"] = created.json()["enrolment_code"]
        enrolled = await http.post(
            f"{checkin}/api/v1/devices/enrol", json={"enrolment_code": created.json()["enrolment_code"]}
        )
        assert enrolled.status_code == 200, enrolled.text
        secrets["enrolled device token"] = enrolled.json()["token"]
        door = {"Authorization": f"Bearer {enrolled.json()['token']}"}

        async def scan(code: str) -> str:
            reply = await http.post(
                f"{checkin}/api/v1/events/{event_id}/scans",
                headers=door,
                json={"code": code, "gate": "Main entrance", "direction": "in", "nonce": uuid.uuid4().hex},
            )
            assert reply.status_code == 200, reply.text
            return str(reply.json()["verdict"])

        async def projected() -> bool:
            snapshot = await http.get(f"{checkin}/api/v1/events/{event_id}/snapshot", headers=door)
            return len(snapshot.json()["tickets"]) == len(tickets)

        await eventually(projected, what="the door's ticket list")
        forged = tickets[0]["code"][:-3] + ("AAA" if not tickets[0]["code"].endswith("AAA") else "BBB")
        secrets["forged code"] = forged
        assert await scan(tickets[0]["code"]) == "admitted"
        assert await scan(forged) == "invalid_signature"
        assert await scan("https://example.org/not-a-ticket?email=someone@example.org") == "malformed"

        cancelled = await http.post(
            f"{registration}/api/v1/registrations/{delegates[1]['id']}/cancel",
            headers={"X-Manage-Token": delegates[1]["manage_token"]},
        )
        assert cancelled.status_code == 200, cancelled.text

        async def revoked() -> bool:
            # Ticketing revokes, and the door learns of it from the event: wait for both.
            ticket = await ticket_of(http, stack, delegates[1])
            snapshot = await http.get(f"{checkin}/api/v1/events/{event_id}/snapshot", headers=organiser(stack))
            return ticket["status"] == "revoked" and ticket["ticket_id"] in snapshot.json()["revocations"]

        await eventually(revoked, what="the cancelled delegate's revocation, at ticketing and at the door")
        assert await scan(tickets[1]["code"]) == "revoked"
        wrong = await http.get(
            f"{registration}/api/v1/registrations/{delegates[0]['id']}", headers={"X-Manage-Token": "guessed-token"}
        )
        assert wrong.status_code in (401, 403)

    logs = sorted((stack.config.var / "log").glob("*.log"))
    assert {path.stem for path in logs} >= {"registration", "ticketing", "notifications", "checkin"}
    found = []
    for path in logs:
        text = path.read_text(errors="replace")
        assert text.strip() or path.stem not in ("registration", "checkin"), f"{path.name} is empty"
        for what, secret in secrets.items():
            if secret in text:
                found.append(f"{what} in {path.name}")
        for pattern in (EMAIL, TICKET_CODE):
            found += [f"{match.group(0)[:12]}… in {path.name}" for match in pattern.finditer(text)]
    assert not found, found
