"""The door app (/scan) at phone size in Chromium, on the whole stack, with a fake camera showing real tickets.

Each camera is a Y4M video made from a picture (the QR code emailed to a delegate, or a forged one),
which Chromium plays as the phone's camera; a separate browser is launched per video.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import zxingcpp
from browsing import CHROMIUM, CHROMIUM_ARGS, PHONE, WORKSHOPS_OFFERED, assert_readable
from camera import framed, write_y4m
from journey import attendance, create_event, decode_inline_qr, eventually, messages_to, organiser, scan
from PIL import Image
from playwright.async_api import Browser, BrowserContext, Locator, Page, async_playwright, expect

from plenary_kit import qr
from plenary_stack.stack import EmbeddedStack

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

GATE = "Main entrance"
CAMERA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
# Long enough for a verdict, the return to scanning and the re-read quiet time, and no longer.
VERDICT_TIMEOUT_MS = 20_000
# A camera pointed at the hall, with no ticket in sight.
EMPTY_HALL = Image.new("L", (640, 480), 90)

# What the camera sees: each picture for so many frames, in turn, looping.
Footage = Sequence[tuple[Image.Image, int]]
Phone = Callable[[Footage], Awaitable[Page]]
NewEvent = Callable[..., Awaitable[dict[str, Any]]]
WORKSHOPS = WORKSHOPS_OFFERED


@pytest.fixture
async def phone_with_camera(tmp_path: Path) -> AsyncIterator[Phone]:
    """Opens a phone-sized page in a Chromium whose camera plays the given footage; all closed afterwards.

    Any uncaught error in the app fails the test.
    """
    async with async_playwright() as playwright:
        browsers: list[Browser] = []
        contexts: list[BrowserContext] = []
        uncaught: list[str] = []

        async def open_phone(footage: Footage) -> Page:
            video = write_y4m(tmp_path / f"camera-{len(browsers)}.y4m", footage)
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=[*CHROMIUM_ARGS, *CAMERA_ARGS, f"--use-file-for-fake-video-capture={video}"],
            )
            browsers.append(browser)
            context = await browser.new_context(**PHONE, permissions=["camera"])
            context.set_default_timeout(15_000)
            contexts.append(context)
            page = await context.new_page()
            page.on("pageerror", lambda error: uncaught.append(str(error)))
            return page

        try:
            yield open_phone
        finally:
            for context in contexts:
                await context.close()
            for browser in browsers:
                await browser.close()
        assert uncaught == []


def _address(who: str) -> str:
    return f"{who}.{uuid.uuid4().hex[:8]}@school.example"


async def _register(
    http: httpx.AsyncClient, stack: EmbeddedStack, event_id: str, name: str, address: str, sessions: list[str]
) -> None:
    reply = await http.post(
        f"{stack.config.url('registration')}/api/v1/events/{event_id}/registrations",
        json={
            "name": name,
            "email": address,
            "organisation": "Birkenhead Park Primary School",
            "role": "headteacher",
            "sessions": sessions,
            "consent": True,
        },
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["status"] == "confirmed"


async def _confirmation(stack: EmbeddedStack, address: str) -> EmailMessage:
    """The delegate's confirmation email, once it carries the ticket's QR code."""

    async def arrived() -> EmailMessage | None:
        for message in messages_to(stack, address):
            if any(part.get_content_type() == "image/png" for part in message.walk()):
                return message
        return None

    message: EmailMessage = await eventually(arrived, timeout=60, what="confirmation email with the ticket")
    return message


def _inline_png(message: EmailMessage) -> bytes:
    for part in message.walk():
        if part.get_content_type() == "image/png" and part.get_content_disposition() == "inline":
            content = part.get_content()
            assert isinstance(content, bytes)
            return content
    raise AssertionError("no inline QR image in the confirmation email")


async def _delegate(
    http: httpx.AsyncClient, stack: EmbeddedStack, event_id: str, name: str, sessions: list[str] | None = None
) -> tuple[str, bytes]:
    """Registers a delegate; returns their ticket's code text and the QR PNG from their email."""
    address = _address(name.split()[0].lower())
    await _register(http, stack, event_id, name, address, sessions or [])
    message = await _confirmation(stack, address)
    return decode_inline_qr(message), _inline_png(message)


async def _device(
    http: httpx.AsyncClient, stack: EmbeddedStack, event_id: str, name: str, gates: list[str] | None = None
) -> dict[str, Any]:
    reply = await http.post(
        f"{stack.config.url('checkin')}/api/v1/events/{event_id}/devices",
        headers=organiser(stack),
        json={"name": name, "gates": gates or [GATE]},
    )
    assert reply.status_code == 201, reply.text
    device: dict[str, Any] = reply.json()
    return device


async def _listed(
    http: httpx.AsyncClient,
    stack: EmbeddedStack,
    event_id: str,
    *names: str,
    sessions: dict[str, list[str]] | None = None,
) -> list[tuple[str, bytes]]:
    """Registers each delegate, booked on their `sessions` if any, and waits until they are on the ticket list.

    The ticket list is checkin's snapshot, what a phone downloads. Returns each delegate's ticket code
    text and the QR PNG from their email, in the order given.
    """
    tickets = [await _delegate(http, stack, event_id, name, (sessions or {}).get(name)) for name in names]

    async def listed() -> bool:
        reply = await http.get(
            f"{stack.config.url('checkin')}/api/v1/events/{event_id}/snapshot", headers=organiser(stack)
        )
        return reply.status_code == 200 and set(names) <= {ticket["name"] for ticket in reply.json()["tickets"]}

    await eventually(listed, timeout=60, what="the tickets reaching checkin's snapshot")
    return tickets


async def _enrol(
    page: Page, http: httpx.AsyncClient, stack: EmbeddedStack, event_id: str, name: str, gates: list[str] | None = None
) -> None:
    """Creates a door phone and opens its enrolment link on the page, as the dashboard's QR code would."""
    device = await _device(http, stack, event_id, name, gates)
    await page.goto(f"{stack.config.url('checkin')}/scan#enrol={device['enrolment_code']}")
    await expect(page.locator("#scan-screen")).to_be_visible()
    await expect(page.locator("#where")).to_have_text(f"{name} · {GATE}")
    assert "enrol" not in page.url


async def _ticket_list_loaded(page: Page, tickets: int) -> None:
    await expect(page.locator("body")).to_have_attribute("data-tickets", str(tickets))


async def _screenshot(page: Page, artefacts: Path, state: str, *, readable: bool = True) -> None:
    """Keeps a picture of the page in this state, having checked first (unless told not to) that it is readable."""
    if readable:
        await assert_readable(page)
    await page.screenshot(path=str(artefacts / f"scanner-{state}.png"))


VERDICT = "#verdict"


async def _verdict(page: Page, verdict: str, *texts: str | re.Pattern[str]) -> Locator:
    """Waits for the verdict screen for `verdict`, and checks it shows each of `texts`."""
    shown = page.locator(f"{VERDICT}[data-verdict='{verdict}']")
    await expect(shown).to_be_visible(timeout=VERDICT_TIMEOUT_MS)
    screen = page.locator(VERDICT)
    for text in texts:
        await expect(screen).to_contain_text(text)
    return screen


async def _back_to_scanning(page: Page) -> None:
    await expect(page.locator(VERDICT)).to_be_hidden(timeout=VERDICT_TIMEOUT_MS)


async def _wedge(page: Page, text: str) -> None:
    """What a hardware scanner does: types the code into the focused field and presses Enter."""
    await page.locator("#code").fill(text)
    await page.locator("#code").press("Enter")


def _forged(code: str) -> str:
    """The same code with one character of its signature changed: still base32, no longer genuine."""
    at = len(code) - 12
    swapped = "B" if code[at] != "B" else "C"
    return code[:at] + swapped + code[at + 1 :]


async def test_emailed_ticket_on_the_camera_is_admitted_then_reported_already_admitted(
    phone_with_camera: Phone, stack: EmbeddedStack, http: httpx.AsyncClient, artefacts: Path
) -> None:
    event_id = await create_event(http, stack)
    name = "Siobhán Ní Bhriain"
    [(_, png)] = await _listed(http, stack, event_id, name)
    page = await phone_with_camera([(framed(png), 10)])

    await page.goto(f"{stack.config.url('checkin')}/scan")
    enrol_screen = page.locator("#enrol-screen")
    await expect(enrol_screen).to_contain_text("Scan the enrolment code from the organiser's dashboard")
    await _screenshot(page, artefacts, "enrol")

    await _enrol(page, http, stack, event_id, "Door phone 1")
    await _verdict(page, "admitted", "Admitted", name, "Delegate")
    await expect(page.locator("#announcer")).to_contain_text(f"Admitted. {name}")
    await _screenshot(page, artefacts, "admitted")

    await _back_to_scanning(page)
    await _screenshot(page, artefacts, "scanning", readable=False)
    await _verdict(page, "already_admitted", "Already admitted", re.compile(rf"\d\d:\d\d at {GATE}"), name)
    await _screenshot(page, artefacts, "already-admitted")

    figures = await attendance(http, stack, event_id)
    assert figures["admitted"] == 1


async def _as_drawn(browser: Browser, svg: str) -> Image.Image:
    """The dashboard's SVG as Chromium draws it on the organiser's screen."""
    page = await browser.new_page()
    try:
        await page.set_content(f'<body style="margin:0;background:#fff">{svg.split("?>", 1)[-1]}</body>')
        return Image.open(io.BytesIO(await page.locator("svg").screenshot()))
    finally:
        await page.close()


async def test_phone_enrols_by_scanning_the_dashboards_enrolment_code(
    phone_with_camera: Phone, browser: Browser, stack: EmbeddedStack, http: httpx.AsyncClient
) -> None:
    event_id = await create_event(http, stack)
    device = await _device(http, stack, event_id, "Door phone 4")
    assert device["enrolment_url"].endswith(f"/scan#enrol={device['enrolment_code']}")
    dashboard_code = await _as_drawn(browser, device["enrolment_qr_svg"])
    read = zxingcpp.read_barcodes(dashboard_code)
    assert [barcode.text for barcode in read] == [device["enrolment_url"]], "the enrolment QR must keep the link as is"
    page = await phone_with_camera([(framed(dashboard_code), 5)])
    await page.goto(f"{stack.config.url('checkin')}/scan")

    await page.get_by_role("button", name="Scan the enrolment code").click()

    await expect(page.locator("#scan-screen")).to_be_visible()
    await expect(page.locator("#where")).to_have_text(f"Door phone 4 · {GATE}")
    stored = await page.evaluate("JSON.parse(localStorage.getItem('plenary.door.device'))")
    assert stored["device_id"] == device["device_id"]
    listed = await http.get(
        f"{stack.config.url('checkin')}/api/v1/events/{event_id}/devices", headers=organiser(stack)
    )
    assert [d["enrolled"] for d in listed.json()] == [True]


async def test_with_the_network_cut_the_ticket_list_admits_and_the_queue_syncs_on_return(
    phone_with_camera: Phone, stack: EmbeddedStack, http: httpx.AsyncClient, artefacts: Path
) -> None:
    event_id = await create_event(http, stack)
    first, second = "Aoife O'Neill", "Nguyễn Thị Lan"
    [_, (code, _)] = await _listed(http, stack, event_id, first, second)
    page = await phone_with_camera([(EMPTY_HALL, 5)])
    await _enrol(page, http, stack, event_id, "Door phone 2")
    await _ticket_list_loaded(page, 2)
    badge = page.locator("#connection")
    await expect(badge).to_have_text("Online")
    before = (await attendance(http, stack, event_id))["admitted"]
    # The app itself must be stored on the phone before the network goes.
    assert await page.evaluate("navigator.serviceWorker.ready.then((registration) => Boolean(registration.active))")

    await page.context.set_offline(True)
    await _wedge(page, code)

    await _verdict(page, "admitted", second, "offline")
    await expect(badge).to_have_attribute("data-state", "offline")
    await expect(badge).to_have_text("Offline · 1 queued")
    await _screenshot(page, artefacts, "offline-admitted", readable=False)
    await _back_to_scanning(page)
    await _screenshot(page, artefacts, "offline-badge")

    # Reopened with no network, the app comes from the phone's own copy, with its ticket list and queue.
    await page.reload()
    await expect(page.locator("#scan-screen")).to_be_visible()
    await expect(badge).to_have_text("Offline · 1 queued")
    await _ticket_list_loaded(page, 2)
    await _wedge(page, code)
    await _verdict(page, "already_admitted", second)
    await expect(badge).to_have_text("Offline · 2 queued")
    await _screenshot(page, artefacts, "offline-already-admitted", readable=False)
    assert (await attendance(http, stack, event_id))["admitted"] == before

    await page.context.set_offline(False)
    await expect(badge).to_have_text("Online", timeout=VERDICT_TIMEOUT_MS)
    await expect(badge).to_have_attribute("data-queue", "0")

    async def counted() -> bool:
        return bool((await attendance(http, stack, event_id))["admitted"] == before + 1)

    await eventually(counted, timeout=10, what="the uploaded admission reaching attendance")
    scans = await http.get(
        f"{stack.config.url('checkin')}/api/v1/events/{event_id}/scans", headers=organiser(stack)
    )
    uploaded = [scan for scan in scans.json() if scan["offline"]]
    assert sorted(scan["verdict"] for scan in uploaded) == ["admitted", "already_admitted"]

    await _back_to_scanning(page)
    await page.get_by_role("button", name="Find a delegate · This phone").click()
    await page.get_by_label("Name or organisation").fill("nguyen thi")
    result = page.locator("#search-results li")
    await expect(result).to_have_count(1)
    await expect(result).to_contain_text(second)
    await expect(result).to_contain_text(re.compile(rf"Inside: admitted \d\d:\d\d at {GATE}"))
    await _screenshot(page, artefacts, "search")


async def test_admissions_heard_in_a_delta_sync_join_those_the_phone_had_and_judge_offline(
    phone_with_camera: Phone, stack: EmbeddedStack, http: httpx.AsyncClient
) -> None:
    event_id = await create_event(http, stack)
    early, later, waiting = "Siobhán Murphy", "Kwame Mensah", "Ewa Nowak"
    [(early_code, _), (later_code, _), (waiting_code, _)] = await _listed(http, stack, event_id, early, later, waiting)
    assert (await scan(http, stack, event_id, early_code, "Side door"))["verdict"] == "admitted"
    page = await phone_with_camera([(EMPTY_HALL, 5)])
    await _enrol(page, http, stack, event_id, "Door phone 4")
    await _ticket_list_loaded(page, 3)
    body = page.locator("body")
    complete = int(await body.get_attribute("data-list-version") or 0)

    # While this phone is away, another door lets a second delegate in; back online, the phone
    # syncs only what changed since its list.
    await page.context.set_offline(True)
    await _wedge(page, waiting_code)
    await _verdict(page, "admitted", waiting, "offline")
    await _back_to_scanning(page)
    assert (await scan(http, stack, event_id, later_code, "Side door"))["verdict"] == "admitted"
    await page.context.set_offline(False)
    await expect(page.locator("#connection")).to_have_attribute("data-queue", "0", timeout=VERDICT_TIMEOUT_MS)

    async def synced_past_the_admission() -> bool:
        return int(await body.get_attribute("data-list-version") or 0) > complete

    await eventually(synced_past_the_admission, timeout=10, what="the phone's delta sync")

    # Offline again, it knows both: the admission from its complete list and the one from the delta.
    await page.context.set_offline(True)
    await _wedge(page, later_code)
    await _verdict(page, "already_admitted", later, "Side door")
    await _back_to_scanning(page)
    await _wedge(page, early_code)
    await _verdict(page, "already_admitted", early, "Side door")


async def test_forged_and_garbled_codes_are_refused_and_scanning_carries_on(
    phone_with_camera: Phone, stack: EmbeddedStack, http: httpx.AsyncClient, artefacts: Path
) -> None:
    event_id = await create_event(http, stack)
    name = "Zoë Ó Súilleabháin"
    [(code, png)] = await _listed(http, stack, event_id, name)
    forged = Image.open(io.BytesIO(qr.png(_forged(code))))
    # The forged ticket is shown first, then the genuine one, as a queue moves past the door.
    page = await phone_with_camera([(framed(forged), 30), (framed(png), 30)])
    await _enrol(page, http, stack, event_id, "Door phone 3")

    await _verdict(page, "invalid_signature", "Not a genuine ticket", "registration desk")
    await _screenshot(page, artefacts, "forged")

    verdict = await _verdict(page, "admitted", name)
    await verdict.click()
    await _back_to_scanning(page)
    # A hardware scanner types into whatever has focus; nothing needs to be focused first.
    await page.locator("body").focus()
    await page.keyboard.type("HELLO-THERE-NOT-A-TICKET", delay=5)
    await page.keyboard.press("Enter")
    await _verdict(page, "malformed", "Not a ticket code")
    await _screenshot(page, artefacts, "garbled", readable=False)

    figures = await attendance(http, stack, event_id)
    assert figures["admitted"] == 1


async def test_at_a_workshop_room_door_only_delegates_booked_on_it_are_admitted(
    phone_with_camera: Phone, stack: EmbeddedStack, http: httpx.AsyncClient, new_event: NewEvent, artefacts: Path
) -> None:
    event_id = str((await new_event(sessions=WORKSHOPS))["id"])
    booked, elsewhere = "Tomasz Kowalczyk-Reid", "Amara Okonkwo"
    [(booked_code, _), (elsewhere_code, _)] = await _listed(
        http, stack, event_id, booked, elsewhere, sessions={booked: ["curriculum"], elsewhere: ["wellbeing"]}
    )
    page = await phone_with_camera([(EMPTY_HALL, 5)])
    await _enrol(page, http, stack, event_id, "Room phone", [GATE, "Room 2"])
    await _ticket_list_loaded(page, 2)

    await page.get_by_label("Gate", exact=True).select_option("Room 2")
    await page.get_by_label("Checking entry to").select_option(label="Workshop: Leading curriculum change")
    await expect(page.locator("#where")).to_have_text("Room phone · Room 2 · Leading curriculum change")
    await _screenshot(page, artefacts, "room-mode")

    await _wedge(page, booked_code)
    await _verdict(page, "admitted", booked, "Workshop: Leading curriculum change")

    await _wedge(page, elsewhere_code)
    await _verdict(page, "not_entitled", "Not booked on this workshop", elsewhere)
    await _screenshot(page, artefacts, "not-booked")

    figures = await attendance(http, stack, event_id)
    assert figures["by_session"] == {"curriculum": 1}
    assert figures["admitted"] == 0
