"""Helpers for end-to-end tests: drive the running stack the way delegates, door staff and organisers do."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import mailbox
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from email.message import EmailMessage
from typing import Any

import httpx
import zxingcpp
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from plenary_stack.stack import EmbeddedStack, StackConfig

# Short group timeouts: rebalances on the embedded broker wait about half the session timeout.
# Rate limits off: every request of a test comes from one address; tests of the limits turn them on.
TEST_SETTINGS = {
    "KAFKA_SESSION_TIMEOUT_MS": "2000",
    "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
    "CONSUMER_RETRY_BASE_SECONDS": "0.05",
    "CONSUMER_MAX_ATTEMPTS": "3",
    "PLENARY_RATE_LIMITS": "off",
}


def running_stack(config: StackConfig) -> Iterator[EmbeddedStack]:
    """The whole stack for a fixture to yield from: started, then stopped however the tests end."""
    running = EmbeddedStack(config)
    running.start()
    try:
        yield running
    finally:
        running.stop()

async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(0.1)


def organiser(stack: EmbeddedStack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.admin_token}"}


def messages_to(stack: EmbeddedStack, address: str) -> list[EmailMessage]:
    maildir = stack.config.maildir
    if not maildir.exists():
        return []
    found = []
    for message in mailbox.Maildir(maildir, create=False):
        parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        if address in str(parsed["To"]):
            found.append(parsed)
    return found


def decode_inline_qr(message: EmailMessage) -> str:
    for part in message.walk():
        if part.get_content_type() == "image/png" and part.get_content_disposition() == "inline":
            image = Image.open(io.BytesIO(part.get_content()))
            results = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
            assert len(results) == 1, "the inline image should hold exactly one readable QR code"
            return results[0].text
    raise AssertionError("no inline QR image in the confirmation email")


async def create_event(http: httpx.AsyncClient, stack: EmbeddedStack, capacity: int = 120, **details: Any) -> str:
    """A new event (the symposium, unless `details` say otherwise); returns its id."""
    reply = await http.post(
        f"{stack.config.url('registration')}/api/v1/events",
        headers=organiser(stack),
        json={
            "slug": f"leadership-symposium-{uuid.uuid4().hex[:8]}",
            "title": "Education Leadership in Challenging Times",
            "venue": "Centre for Educational Leadership, Liverpool",
            "starts_at": "2027-03-12T09:30:00+00:00",
            "ends_at": "2027-03-12T16:00:00+00:00",
            "timezone": "Europe/London",
            "capacity": capacity,
            **details,
        },
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


async def register(http: httpx.AsyncClient, stack: EmbeddedStack, event_id: str, address: str) -> dict[str, Any]:
    reply = await http.post(
        f"{stack.config.url('registration')}/api/v1/events/{event_id}/registrations",
        json={
            "name": "Zoë Olubayo-O'Neill",
            "email": address,
            "organisation": "Birkenhead Park Primary School",
            "role": "headteacher",
            "consent": True,
        },
    )
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    assert body["status"] == "confirmed"
    return body


async def ticket_of(
    http: httpx.AsyncClient, stack: EmbeddedStack, registration: dict[str, Any], timeout: float = 60.0
) -> dict[str, Any]:
    async def fetch() -> dict[str, Any] | None:
        reply = await http.get(
            f"{stack.config.url('ticketing')}/api/v1/registrations/{registration['id']}/ticket",
            headers={"X-Manage-Token": registration["manage_token"]},
        )
        return reply.json() if reply.status_code == 200 else None

    ticket: dict[str, Any] = await eventually(fetch, timeout=timeout, what="ticket issue")
    return ticket


async def scan(http: httpx.AsyncClient, stack: EmbeddedStack, event_id: str, code: str, gate: str) -> dict[str, Any]:
    reply = await http.post(
        f"{stack.config.url('checkin')}/api/v1/events/{event_id}/scans",
        headers=organiser(stack),
        json={"code": code, "gate": gate, "direction": "in", "nonce": uuid.uuid4().hex},
    )
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


async def attendance(http: httpx.AsyncClient, stack: EmbeddedStack, event_id: str) -> dict[str, Any]:
    reply = await http.get(
        f"{stack.config.url('checkin')}/api/v1/events/{event_id}/attendance", headers=organiser(stack)
    )
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


async def duplicates_seen(http: httpx.AsyncClient, stack: EmbeddedStack, service: str, event_type: str) -> float:
    text = (await http.get(f"{stack.config.url(service)}/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "plenary_events_handled_total"
        and sample.labels.get("type") == event_type
        and sample.labels.get("outcome") == "duplicate"
    )


def replay_everything(stack: EmbeddedStack) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack.config.bootstrap,
        "MONGODB_URI": stack.config.mongo,
        "PLENARY_DB_PREFIX": stack.config.db_prefix,
    }
    for service in ("registration", "ticketing", "notifications", "checkin"):
        subprocess.run(
            [sys.executable, "-m", "plenary_kit.replay", "--service", service],
            env=env, check=True, capture_output=True, timeout=60,
        )


async def now(value: Any) -> Any:
    return value


async def more_than(count: Awaitable[float], floor: float) -> bool:
    return await count > floor
