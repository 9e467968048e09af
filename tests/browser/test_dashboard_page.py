"""The organiser's dashboard in Chromium on a laptop and a tablet: live figures, breakdowns, door phones."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import zxingcpp
from browsing import PHONE, WORKSHOPS_OFFERED, assert_readable, page_in
from journey import eventually, organiser, ticket_of
from PIL import Image
from playwright.async_api import Browser, ConsoleMessage, Page, Route, expect

from plenary_stack.stack import EmbeddedStack

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NewEvent = Callable[..., Awaitable[dict[str, Any]]]

LAPTOP: dict[str, Any] = {
    "viewport": {"width": 1366, "height": 900},
    "device_scale_factor": 1,
    "locale": "en-GB",
    "timezone_id": "Europe/London",
    "accept_downloads": True,
}
TABLET: dict[str, Any] = {**PHONE, "viewport": {"width": 820, "height": 1180}, "timezone_id": "Europe/London"}
WORKSHOPS = WORKSHOPS_OFFERED
TICKET_TYPES = [{"code": "delegate", "name": "Delegate"}, {"code": "speaker", "name": "Speaker", "capacity": 5}]
DELEGATES = [
    {
        "name": "Zoë Olubayo-O'Neill",
        "organisation": "Birkenhead Park Primary School",
        "role": "headteacher",
        "phase": "primary",
        "local_authority": "Wirral",
        "ticket_type": "delegate",
        "sessions": ["curriculum"],
    },
    {
        "name": "Siobhán Ní Bhriain",
        "organisation": "Knowsley Park Secondary Academy",
        "role": "deputy headteacher",
        "phase": "secondary",
        "local_authority": "Knowsley",
        "ticket_type": "speaker",
        "sessions": ["curriculum", "wellbeing"],
    },
    {
        "name": "Nguyễn Thị Lan",
        "organisation": "St Helens Special School",
        "role": "SENCO",
        "phase": "special",
        "local_authority": "St Helens",
        "ticket_type": "delegate",
        "sessions": ["wellbeing"],
    },
]
# A function, not an expression: the page's CSP forbids eval, which Playwright uses for expressions.
ADMITTED = "(expected) => document.getElementById('admitted').textContent === expected"


@pytest.fixture
async def laptop(browser: Browser) -> AsyncIterator[Page]:
    async with page_in(browser, LAPTOP) as page:
        yield page


@pytest.fixture
async def tablet(browser: Browser) -> AsyncIterator[Page]:
    async with page_in(browser, TABLET) as page:
        yield page


def _watch_for_errors(page: Page) -> list[str]:
    """Script errors and policy violations the page runs into: there should be none."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            problems.append(message.text)

    page.on("console", console)
    return problems


async def _sign_in(page: Page, stack: EmbeddedStack, event_id: str) -> None:
    await page.goto(f"{stack.config.url('checkin')}/dashboard?event={event_id}")
    await expect(page.get_by_role("heading", name="Sign in to the attendance dashboard")).to_be_visible()
    await page.get_by_label("Organiser token").fill(stack.admin_token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#content")).to_be_visible()


async def _register(
    http: httpx.AsyncClient, stack: EmbeddedStack, event_id: str, who: dict[str, Any]
) -> dict[str, Any]:
    reply = await http.post(
        f"{stack.config.url('registration')}/api/v1/events/{event_id}/registrations",
        json={**who, "email": f"delegate.{uuid.uuid4().hex[:8]}@school.example", "consent": True},
    )
    assert reply.status_code == 201, reply.text
    registration: dict[str, Any] = reply.json()
    return registration


async def _scan(
    http: httpx.AsyncClient, stack: EmbeddedStack, event_id: str, code: str, gate: str, **extra: Any
) -> dict[str, Any]:
    reply = await http.post(
        f"{stack.config.url('checkin')}/api/v1/events/{event_id}/scans",
        headers=extra.pop("headers", organiser(stack)),
        json={"code": code, "gate": gate, "direction": "in", "nonce": uuid.uuid4().hex, **extra},
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def _assert_readable(page: Page, stack: EmbeddedStack) -> None:
    """Readable by everyone, and never showing the organiser token."""
    await assert_readable(page)
    assert stack.admin_token not in await page.content(), "the organiser token must never be on the page"


async def test_dashboard_shows_a_scan_within_a_second_without_reloading(
    laptop: Page, browser: Browser, stack: EmbeddedStack, new_event: NewEvent, http: httpx.AsyncClient,
    artefacts: Path, record_property: Callable[[str, object], None],
) -> None:
    checkin = stack.config.url("checkin")
    event = await new_event(sessions=WORKSHOPS, ticket_types=TICKET_TYPES)
    event_id = str(event["id"])
    registrations = [await _register(http, stack, event_id, who) for who in DELEGATES]
    codes = [str((await ticket_of(http, stack, registration))["code"]) for registration in registrations]

    async def projected() -> bool:
        reply = await http.get(f"{checkin}/api/v1/events/{event_id}/snapshot", headers=organiser(stack))
        return reply.status_code == 200 and len(reply.json()["tickets"]) == len(codes)

    await eventually(projected, timeout=60, what="the checkin projection seeing the tickets")

    problems = _watch_for_errors(laptop)
    await _sign_in(laptop, stack, event_id)
    await expect(laptop.locator("h1")).to_have_text("Education Leadership in Challenging Times")
    await expect(laptop.locator("#live")).to_have_text("Live")
    await expect(laptop.locator("#registered")).to_have_text("3")
    await expect(laptop.locator("#admitted")).to_have_text("0")
    await expect(laptop.locator("#no-shows-list")).to_contain_text("Zoë Olubayo-O'Neill")
    # Anything that reloads the page would lose this.
    await laptop.evaluate("window.stillTheSamePage = true")

    reply = await _scan(http, stack, event_id, codes[0], "Main entrance")
    answered = time.monotonic()
    assert reply["verdict"] == "admitted"
    await laptop.wait_for_function(ADMITTED, arg="1", timeout=1000)
    shown_after = time.monotonic() - answered
    record_property("scan_to_dashboard_ms", round(shown_after * 1000))
    assert shown_after < 1.0, f"the dashboard showed the scan {shown_after:.3f} s after the reply"

    assert (await _scan(http, stack, event_id, codes[1], "North door"))["verdict"] == "admitted"
    answered = time.monotonic()
    await laptop.wait_for_function(ADMITTED, arg="2", timeout=1000)
    assert time.monotonic() - answered < 1.0
    room = await _scan(http, stack, event_id, codes[0], "Room 2", session="curriculum")
    assert room["verdict"] == "admitted"

    # A door phone that lost the wifi let Zoë in again; its upload raises a double-entry alert.
    created = await http.post(
        f"{checkin}/api/v1/events/{event_id}/devices",
        headers=organiser(stack),
        json={"name": "North door phone", "gates": ["North door"]},
    )
    assert created.status_code == 201, created.text
    offline = await _scan(
        http, stack, event_id, codes[0], "North door",
        headers={"Authorization": f"Bearer {created.json()['token']}"},
        offline=True, scanned_at=datetime.now(UTC).isoformat(),
    )
    assert offline["verdict"] == "already_admitted"
    # That phone had its token straight from the organiser's call, not from an enrolment code: it is in use.
    north_phone = laptop.locator("#devices-list li", has_text="North door phone")
    await expect(north_phone).to_contain_text("Last seen", timeout=10_000)
    await expect(north_phone.locator(".tag")).to_have_text("Set up")

    alerts = laptop.locator("#alerts-panel")
    await expect(alerts).to_have_attribute("data-state", "raised")
    await expect(alerts).to_contain_text("Zoë Olubayo-O'Neill")
    await expect(alerts).to_contain_text("North door phone")
    await expect(laptop.locator("#inside")).to_have_text("2")
    await expect(laptop.locator("#no-shows")).to_have_text("1")
    await expect(laptop.locator("#admitted-note")).to_have_text("67% of those registered")
    await expect(laptop.locator("#by-gate tr[data-key='Main entrance']")).to_contain_text("1")
    await expect(laptop.locator("#by-gate tr[data-key='North door']")).to_contain_text("1")
    await expect(laptop.locator("#by-ticket-type tr[data-key='speaker']")).to_contain_text("Speaker1")
    await expect(laptop.locator("#by-phase tr[data-key='primary']")).to_contain_text("Primary1")
    await expect(laptop.locator("#by-phase tr[data-key='secondary']")).to_contain_text("Secondary1")
    await expect(laptop.locator("#by-local-authority tr[data-key='Wirral']")).to_contain_text("Wirral1")
    await expect(laptop.locator("#by-local-authority tr[data-key='Knowsley']")).to_contain_text("Knowsley1")
    await expect(laptop.locator("#by-session tr[data-key='curriculum']")).to_contain_text(
        "Leading curriculum change1of 2 booked"
    )
    await expect(laptop.locator("#by-session tr[data-key='wellbeing']")).to_contain_text(
        "Staff wellbeing in hard times0of 2 booked"
    )
    await expect(laptop.locator("#arrivals-summary")).to_contain_text("2 arrivals between")
    await expect(laptop.locator("#arrivals-table tr")).to_have_count(1)
    assert await laptop.locator("#arrivals-chart rect.column").count() >= 1

    latest = laptop.locator("#scans-list li").first
    await expect(latest).to_contain_text("Already admitted")
    await expect(latest).to_contain_text("Zoë Olubayo-O'Neill")
    await expect(latest).to_contain_text("uploaded later")
    await expect(laptop.locator("#scans-list li")).to_have_count(4)

    no_shows = laptop.locator("#no-shows-list")
    await expect(no_shows).to_contain_text("Nguyễn Thị Lan")
    await expect(no_shows).not_to_contain_text("Zoë")
    await expect(laptop.locator("#no-shows-summary")).to_have_text("1 delegate has not been scanned in yet.")
    async with laptop.expect_download() as download_info:
        await laptop.get_by_role("button", name="Download as CSV").click()
    download = await download_info.value
    assert download.suggested_filename == "no-shows-education-leadership-in-challenging-times.csv"
    text = await asyncio.to_thread(Path(await download.path()).read_text, encoding="utf-8-sig")
    exported = list(csv.DictReader(io.StringIO(text)))
    assert [row["name"] for row in exported] == ["Nguyễn Thị Lan"]
    assert exported[0]["organisation"] == "St Helens Special School"

    assert await laptop.evaluate("window.stillTheSamePage") is True
    await _assert_readable(laptop, stack)
    await laptop.screenshot(path=str(artefacts / "dashboard-live-laptop.png"), full_page=True)
    assert problems == []

    # A server without the stream still gets a working page, read every 2 seconds.
    async with page_in(browser, LAPTOP) as polling:

        async def no_stream(route: Route) -> None:
            await route.fulfill(status=404, json={"code": "not_found", "message": "There is nothing at this address."})

        await polling.route("**/attendance/stream", no_stream)
        await _sign_in(polling, stack, event_id)
        await expect(polling.locator("#live")).to_have_text("Live (every 2 seconds)")
        await expect(polling.locator("#admitted")).to_have_text("2")
        assert (await _scan(http, stack, event_id, codes[2], "Main entrance"))["verdict"] == "admitted"
        await polling.wait_for_function(ADMITTED, arg="3", timeout=3000)
        await expect(polling.locator("#no-shows-summary")).to_have_text("Everyone registered has arrived.")
    await laptop.wait_for_function(ADMITTED, arg="3", timeout=1000)


async def test_organiser_enrols_a_door_phone_from_its_qr_code_and_stops_it(
    tablet: Page, stack: EmbeddedStack, new_event: NewEvent, http: httpx.AsyncClient, artefacts: Path
) -> None:
    event_id = str((await new_event())["id"])
    problems = _watch_for_errors(tablet)
    await _sign_in(tablet, stack, event_id)
    await expect(tablet.locator("#live")).to_have_text("Live")
    await expect(tablet.locator("#devices-summary")).to_contain_text("No door phones yet")

    await tablet.get_by_role("textbox", name="Name", exact=True).fill("Main entrance phone 1")
    await tablet.get_by_role("textbox", name="Gates").fill("Main entrance,  Room 2 , Main entrance")
    async with tablet.expect_response(lambda r: r.url.endswith("/devices") and r.request.method == "POST") as info:
        await tablet.get_by_role("button", name="Create the enrolment code").click()
    created = await (await info.value).json()
    assert created["gates"] == ["Main entrance", "Room 2"]

    panel = tablet.locator("#enrolment")
    await expect(panel).to_be_visible()
    await expect(panel).to_contain_text("Set up Main entrance phone 1")
    await expect(panel).to_contain_text("Open the camera on the door phone and scan this code")
    qr = tablet.locator("#enrolment-qr")
    await expect(qr).to_have_attribute("src", re.compile(r"^data:image/svg\+xml;base64,"))
    await tablet.wait_for_function("() => document.getElementById('enrolment-qr').naturalWidth > 0")
    box = await qr.bounding_box()
    assert box is not None and box["width"] >= 250, "the code should be large enough to scan from a phone"

    image = Image.open(io.BytesIO(await qr.screenshot()))
    decoded = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode))
    assert len(decoded) == 1, "the enrolment QR should decode"
    url = decoded[0].text
    assert "/scan#enrol=" in url
    assert await tablet.locator("#enrolment-url").input_value() == url
    assert created["token"] not in await tablet.content(), "the device token must never be on the page"
    await _assert_readable(tablet, stack)
    await tablet.screenshot(path=str(artefacts / "dashboard-enrolment-tablet.png"), full_page=True)

    # The door phone swaps the code for its token; the dashboard sees it and takes the spent code down.
    enrolled = await http.post(
        f"{stack.config.url('checkin')}/api/v1/devices/enrol", json={"enrolment_code": url.partition("#enrol=")[2]}
    )
    assert enrolled.status_code == 200, enrolled.text
    phone_token = {"Authorization": f"Bearer {enrolled.json()['token']}"}
    me = await http.get(f"{stack.config.url('checkin')}/api/v1/devices/me", headers=phone_token)
    assert me.status_code == 200, me.text
    # The phone at work: a crumpled code is still a sign of life.
    assert (await _scan(http, stack, event_id, "NOT-A-TICKET", "Main entrance", headers=phone_token))[
        "verdict"
    ] == "malformed"
    await expect(tablet.locator("#enrolment-status")).to_have_text(
        "Main entrance phone 1 is set up and ready to scan.", timeout=10_000
    )
    await expect(qr).to_be_hidden()
    await tablet.get_by_role("button", name="Done").click()
    phone = tablet.locator("#devices-list li", has_text="Main entrance phone 1")
    await expect(phone).to_contain_text("Set up")
    await expect(phone).to_contain_text("Gates: Main entrance, Room 2")
    await expect(phone).to_contain_text("Last seen just now", timeout=20_000)

    await phone.get_by_role("button", name="Stop this phone").click()
    dialog = tablet.get_by_role("dialog")
    await expect(dialog).to_contain_text("Stop Main entrance phone 1 from scanning?")
    await dialog.get_by_role("button", name="Stop this phone").click()
    await expect(phone).to_contain_text("Stopped")
    await expect(phone.get_by_role("button")).to_have_count(0)
    refused = await http.get(f"{stack.config.url('checkin')}/api/v1/devices/me", headers=phone_token)
    assert refused.status_code == 401
    await tablet.screenshot(path=str(artefacts / "dashboard-devices-tablet.png"), full_page=True)
    assert problems == []


async def test_a_wrong_token_gets_a_clear_message_and_is_not_kept(
    laptop: Page, stack: EmbeddedStack, new_event: NewEvent, artefacts: Path
) -> None:
    event_id = str((await new_event())["id"])
    await laptop.goto(f"{stack.config.url('checkin')}/dashboard?event={event_id}")
    await laptop.get_by_label("Organiser token").fill("not-the-organiser-token")
    await laptop.get_by_role("button", name="Sign in").click()
    await expect(laptop.get_by_role("alert")).to_have_text(
        "That token was not accepted. Check you pasted the whole organiser token, then try again."
    )
    assert await laptop.evaluate("Object.keys(sessionStorage).length") == 0
    await expect(laptop.locator("#content")).to_be_hidden()
    await _assert_readable(laptop, stack)
    await laptop.screenshot(path=str(artefacts / "dashboard-sign-in-laptop.png"), full_page=True)

    # The first connection to the stream fails, as venue wifi does: the page tries again by itself.
    attempts: list[str] = []

    async def fail_once(route: Route) -> None:
        attempts.append(route.request.url)
        await (route.abort() if len(attempts) == 1 else route.continue_())

    await laptop.route("**/attendance/stream", fail_once)
    await laptop.get_by_label("Organiser token").fill(stack.admin_token)
    await laptop.get_by_role("button", name="Sign in").click()
    await expect(laptop.locator("#live")).to_have_text("Reconnecting…")
    await expect(laptop.locator("#live")).to_have_text("Live")
    assert len(attempts) == 2
    await laptop.unroute("**/attendance/stream")

    # Signed in, the token is kept for the tab: a reload goes straight to the figures.
    await laptop.reload()
    await expect(laptop.locator("#live")).to_have_text("Live")
    await expect(laptop.locator("#registered")).to_have_text("0")
    await laptop.get_by_role("button", name="Sign out").click()
    await expect(laptop.get_by_role("alert")).to_have_text("You have signed out. The token has been forgotten.")
    assert await laptop.evaluate("Object.keys(sessionStorage).length") == 0
