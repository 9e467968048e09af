"""The public registration pages at phone size in Chromium: register, confirm, manage, cancel, errors."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from browsing import LOW_CONTRAST_TEXT, WORKSHOPS_OFFERED
from playwright.async_api import Page, expect

from plenary_stack.stack import EmbeddedStack
from registration.domain import PRIVACY_NOTICE_VERSION

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NewEvent = Callable[..., Awaitable[dict[str, Any]]]

WORKSHOPS = [WORKSHOPS_OFFERED[0], {**WORKSHOPS_OFFERED[1], "capacity": 0}]
QUESTIONS = [
    {"code": "lunch", "label": "Will you stay for lunch?", "kind": "yes_no", "required": True},
    {
        "code": "strand",
        "label": "Which strand are you in?",
        "kind": "single_choice",
        "options": ["Whole-school development", "Future heads"],
    },
]
TICKET_TYPES = [{"code": "delegate", "name": "Delegate"}, {"code": "speaker", "name": "Speaker", "capacity": 5}]


# Every visible text's colour against the first opaque background behind it (WCAG 2.2 AA: at least 4.5:1).
def _address(who: str) -> str:
    return f"{who}.{uuid.uuid4().hex[:8]}@school.example"


async def _screenshot(page: Page, artefacts: Path, name: str) -> None:
    await page.screenshot(path=str(artefacts / f"registration-{name}.png"), full_page=True)


async def _assert_page_basics(page: Page) -> None:
    """What every delegate page owes assistive technology: its language, one h1, a label per field."""
    assert await page.get_attribute("html", "lang") == "en-GB"
    assert await page.locator("h1").count() == 1
    unlabelled = await page.evaluate(
        """() => Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
                 .filter((field) => !field.labels || field.labels.length === 0)
                 .map((field) => field.id || field.name)"""
    )
    assert unlabelled == []
    dangling = await page.evaluate(
        """() => Array.from(document.querySelectorAll('[aria-describedby]'))
                 .flatMap((el) => el.getAttribute('aria-describedby').split(/\\s+/))
                 .filter((id) => id && !document.getElementById(id))"""
    )
    assert dangling == []
    assert await page.evaluate(LOW_CONTRAST_TEXT) == []


async def _fill_registration(page: Page, name: str, email: str) -> None:
    await page.fill("#name", name)
    await page.fill("#email", email)
    await page.fill("#organisation", "Birkenhead Park Primary School")
    await page.select_option("#role", "Headteacher")
    await page.select_option("#phase", "Primary")
    await page.select_option("#local_authority", "Wirral")


async def test_delegate_registers_on_a_phone_and_gets_the_manage_link(
    phone: Page, stack: EmbeddedStack, new_event: NewEvent, artefacts: Path
) -> None:
    event = await new_event(sessions=WORKSHOPS, ticket_types=TICKET_TYPES, questions=QUESTIONS)
    await phone.goto(f"{stack.config.url('registration')}/events/{event['slug']}")

    await expect(phone.locator("h1")).to_have_text("Education Leadership in Challenging Times")
    await expect(phone.locator(".facts")).to_contain_text("Friday 12 March 2027, 09:30–16:00")
    await expect(phone.locator(".facts")).to_contain_text("120 places left")
    await expect(phone.locator("#sessions-1-hint")).to_have_text("13:00–14:30 · Full – you can join the waiting list")
    await _assert_page_basics(phone)
    await _screenshot(phone, artefacts, "event-page-phone")

    await _fill_registration(phone, "Siobhán Ní Bhriain", _address("siobhan"))
    await phone.get_by_label("Leading curriculum change").check()
    await phone.get_by_label("Staff wellbeing in hard times").check()
    await phone.fill("#dietary_needs", "Vegetarian")
    await phone.get_by_role("group", name="Will you stay for lunch?").get_by_label("Yes").check()
    await phone.get_by_label("Future heads").check()
    await phone.get_by_label("I agree to my details being used").check()
    await phone.get_by_role("button", name="Register").click()

    await expect(phone.locator("h1")).to_have_text("You're registered")
    manage_link = phone.locator(".manage-link a")
    await expect(manage_link).to_have_attribute("href", re.compile(r"/manage/[0-9a-f-]+\?token=.+"))
    assert await manage_link.inner_text() == await manage_link.get_attribute("href")
    await expect(phone.locator("main")).to_contain_text("What happens next")
    await _assert_page_basics(phone)
    await _screenshot(phone, artefacts, "confirmed-phone")

    await manage_link.click()
    await expect(phone.locator("h1")).to_have_text("You're registered")
    details = phone.locator("main")
    await expect(details).to_contain_text("Siobhán Ní Bhriain")
    await expect(details).to_contain_text("Leading curriculum change")
    await expect(details).to_contain_text("Staff wellbeing in hard times – on the waiting list (position 1)")
    await expect(details).to_contain_text("Future heads")
    await _assert_page_basics(phone)
    await _screenshot(phone, artefacts, "manage-phone")

    await phone.get_by_role("link", name="Change your details").click()
    await expect(phone.locator("h1")).to_have_text("Change your details")
    await expect(phone.locator("#name")).to_have_value("Siobhán Ní Bhriain")
    await expect(phone.locator("#dietary_needs")).to_have_value("Vegetarian")
    await _assert_page_basics(phone)
    await _screenshot(phone, artefacts, "edit-phone")
    await phone.fill("#organisation", "Wirral Hospitals School")
    await phone.fill("#dietary_needs", "")
    await phone.fill("#access_needs", "Step-free access, please")
    await phone.get_by_label("Staff wellbeing in hard times").uncheck()
    await phone.get_by_role("button", name="Save changes").click()
    await expect(phone.get_by_role("status")).to_have_text("Your details have been saved.")
    await expect(details).to_contain_text("Wirral Hospitals School")
    await expect(details).to_contain_text("Step-free access, please")
    await expect(details).not_to_contain_text("Vegetarian")
    await expect(details).not_to_contain_text("Staff wellbeing")

    await phone.get_by_role("button", name="Email my ticket again").click()
    await expect(phone.get_by_role("status")).to_have_text(
        "We have sent your ticket email again. It can take a few minutes to arrive."
    )


async def test_delegate_cancels_from_the_manage_page_after_confirming(
    phone: Page, stack: EmbeddedStack, new_event: NewEvent, http: httpx.AsyncClient, artefacts: Path
) -> None:
    event = await new_event()
    registration = await _register_by_api(http, stack, event, "Kwame Olubayo", _address("kwame"))
    base = stack.config.url("registration")
    await phone.goto(f"{base}/manage/{registration['id']}?token={registration['manage_token']}")
    await expect(phone.locator("main")).to_contain_text("Kwame Olubayo")

    await phone.get_by_role("link", name="Cancel my registration").click()
    await expect(phone.locator("h1")).to_have_text("Are you sure you want to cancel?")
    await _assert_page_basics(phone)
    await _screenshot(phone, artefacts, "cancel-confirm-phone")

    await phone.get_by_role("button", name="Yes, cancel my registration").click()
    await expect(phone.locator("h1")).to_have_text("Your registration is cancelled")
    await expect(phone.get_by_role("status")).to_have_text("Your registration has been cancelled.")
    await expect(phone.get_by_role("link", name="Cancel my registration")).to_have_count(0)
    await _screenshot(phone, artefacts, "cancelled-phone")

    reply = await http.get(
        f"{stack.config.url('registration')}/api/v1/registrations/{registration['id']}",
        headers={"X-Manage-Token": registration["manage_token"]},
    )
    assert reply.json()["status"] == "cancelled"


async def test_mistakes_are_summarised_linked_to_their_fields_and_typing_is_kept(
    phone: Page, stack: EmbeddedStack, new_event: NewEvent, artefacts: Path
) -> None:
    event = await new_event()
    await phone.goto(f"{stack.config.url('registration')}/events/{event['slug']}")
    await phone.fill("#email", "not-an-email")
    await phone.fill("#organisation", "Ormskirk School")
    await phone.select_option("#role", "SENCO")
    await phone.get_by_role("button", name="Register").click()

    summary = phone.get_by_role("alert")
    await expect(summary.get_by_role("heading")).to_have_text("There is a problem")
    await expect(summary).to_be_focused()
    links = summary.get_by_role("link")
    await expect(links).to_have_text([
        "Enter your full name",
        "Enter an email address in the correct format, like name@school.org.uk",
        "Tick the box to agree to the privacy notice",
    ])
    assert (await phone.title()).startswith("Error: ")
    await _assert_page_basics(phone)
    await _screenshot(phone, artefacts, "errors-phone")

    for target in ("name", "email", "consent"):
        await summary.locator(f'a[href="#{target}"]').click()
        await expect(phone.locator(f"#{target}")).to_be_focused()
        field = phone.locator(f"#{target}")
        await expect(field).to_have_attribute("aria-invalid", "true")
        assert f"{target}-error" in (await _described_by(phone, target))
    await expect(phone.locator("#email")).to_have_value("not-an-email")
    await expect(phone.locator("#organisation")).to_have_value("Ormskirk School")
    await expect(phone.locator("#role")).to_have_value("SENCO")


async def _described_by(page: Page, field_id: str) -> str:
    """aria-describedby of the field, or of the fieldset that groups it."""
    return str(
        await page.evaluate(
            """(id) => {
                const field = document.getElementById(id);
                const group = field.closest('fieldset');
                return (field.getAttribute('aria-describedby') || '') + ' ' +
                       (group ? group.getAttribute('aria-describedby') || '' : '');
            }""",
            field_id,
        )
    )


async def test_keyboard_moves_through_the_form_in_reading_order_with_a_visible_focus(
    phone: Page, stack: EmbeddedStack, new_event: NewEvent
) -> None:
    event = await new_event(sessions=WORKSHOPS[:1])
    await phone.goto(f"{stack.config.url('registration')}/events/{event['slug']}")
    await phone.focus("#name")
    visited = ["name"]
    for _ in range(10):
        await phone.keyboard.press("Tab")
        visited.append(await phone.evaluate("() => document.activeElement.id || document.activeElement.tagName"))
    assert visited[:9] == [
        "name", "email", "organisation", "role", "role_other", "phase", "local_authority", "sessions-0",
        "dietary_needs",
    ]
    await phone.focus("#email")
    outline = await phone.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


async def test_full_event_says_so_and_puts_the_delegate_on_the_waiting_list(
    phone: Page, stack: EmbeddedStack, new_event: NewEvent, http: httpx.AsyncClient, artefacts: Path
) -> None:
    event = await new_event(capacity=1)
    await _register_by_api(http, stack, event, "Nguyễn Thị Lan", _address("lan"))
    await phone.goto(f"{stack.config.url('registration')}/events/{event['slug']}")
    await expect(phone.locator(".notice")).to_contain_text(
        "This event is full. If you register, you will join the waiting list and we will email you "
        "if a place becomes free."
    )
    await _screenshot(phone, artefacts, "full-event-phone")

    await _fill_registration(phone, "Seán Ó Súilleabháin", _address("sean"))
    await phone.get_by_label("I agree to my details being used").check()
    await phone.get_by_role("button", name="Join the waiting list").click()
    await expect(phone.locator("h1")).to_have_text("You're on the waiting list")
    await expect(phone.locator(".panel")).to_contain_text("Your position on the waiting list: 1")
    await _screenshot(phone, artefacts, "waitlisted-phone")


async def test_delegate_accepts_an_offered_place_from_the_manage_page(
    phone: Page, stack: EmbeddedStack, new_event: NewEvent, http: httpx.AsyncClient, artefacts: Path
) -> None:
    event = await new_event(capacity=1, offer_window_hours=48)
    first = await _register_by_api(http, stack, event, "Ada Nwosu", _address("ada"))
    waiting = await _register_by_api(http, stack, event, "Ciarán Ó Briain", _address("ciaran"))
    base = stack.config.url("registration")
    cancelled = await http.post(
        f"{base}/api/v1/registrations/{first['id']}/cancel", headers={"X-Manage-Token": first["manage_token"]}
    )
    assert cancelled.status_code == 200, cancelled.text

    await phone.goto(f"{base}/manage/{waiting['id']}?token={waiting['manage_token']}")
    await expect(phone.locator("h1")).to_have_text("A place is waiting for you")
    await _screenshot(phone, artefacts, "offer-phone")
    await phone.get_by_role("button", name="Accept the place").click()
    await expect(phone.get_by_role("status")).to_have_text(
        "You have accepted the place. Your ticket is on its way by email."
    )
    await expect(phone.locator("h1")).to_have_text("You're registered")


async def test_registration_works_with_javascript_switched_off(
    phone_without_javascript: Page, stack: EmbeddedStack, new_event: NewEvent, artefacts: Path
) -> None:
    page = phone_without_javascript
    event = await new_event(sessions=WORKSHOPS[:1])
    await page.goto(f"{stack.config.url('registration')}/events/{event['slug']}")
    await _fill_registration(page, "Zoë O'Neill", _address("zoe"))
    await page.get_by_label("Leading curriculum change").check()
    await page.get_by_label("I agree to my details being used").check()
    await page.get_by_role("button", name="Register").click()
    await expect(page.locator("h1")).to_have_text("You're registered")
    await _screenshot(page, artefacts, "confirmed-without-javascript-phone")


async def test_closed_and_not_yet_open_events_explain_themselves(
    phone: Page, stack: EmbeddedStack, new_event: NewEvent, artefacts: Path
) -> None:
    closed = await new_event(registration_closes_at="2026-01-01T00:00:00+00:00")
    await phone.goto(f"{stack.config.url('registration')}/events/{closed['slug']}")
    await expect(phone.locator(".notice")).to_contain_text("Registration for this event is closed")
    await expect(phone.locator("form")).to_have_count(0)
    await _screenshot(phone, artefacts, "closed-phone")

    upcoming = await new_event(registration_opens_at="2027-02-01T09:00:00+00:00")
    await phone.goto(f"{stack.config.url('registration')}/events/{upcoming['slug']}")
    await expect(phone.locator(".notice")).to_contain_text("Registration opens on Monday 1 February 2027 at 09:00.")
    await expect(phone.locator("form")).to_have_count(0)
    await _screenshot(phone, artefacts, "not-open-yet-phone")


async def test_unknown_event_and_wrong_manage_token_get_friendly_pages_without_data(
    phone: Page, stack: EmbeddedStack, new_event: NewEvent, http: httpx.AsyncClient, artefacts: Path
) -> None:
    base = stack.config.url("registration")
    missing = await phone.goto(f"{base}/events/no-such-event")
    assert missing is not None and missing.status == 404
    await expect(phone.locator("h1")).to_have_text("Event not found")

    event = await new_event()
    registration = await _register_by_api(http, stack, event, "Aoife O'Neill", _address("aoife"))
    for token in ("wrong-token", ""):
        reply = await phone.goto(f"{base}/manage/{registration['id']}?token={token}")
        assert reply is not None and reply.status == 404
        await expect(phone.locator("h1")).to_have_text("This link does not work")
        await expect(phone.locator("main")).not_to_contain_text("Aoife")
    other = await _register_by_api(http, stack, event, "Dara Byrne", _address("dara"))
    await phone.goto(f"{base}/manage/{registration['id']}?token={other['manage_token']}")
    await expect(phone.locator("main")).not_to_contain_text("Aoife")
    await expect(phone.locator("main")).not_to_contain_text("Dara")
    await _screenshot(phone, artefacts, "link-not-recognised-phone")

    await phone.goto(f"{base}/events/{event['slug']}")
    await phone.get_by_role("link", name="privacy notice").first.click()
    await expect(phone.locator("h1")).to_have_text("Privacy notice")
    await expect(phone.locator("main")).to_contain_text(f"Version {PRIVACY_NOTICE_VERSION}")
    await expect(phone.locator("main")).to_contain_text("erase")
    await _assert_page_basics(phone)
    await _screenshot(phone, artefacts, "privacy-notice-phone")


async def test_pages_carry_security_headers_and_a_double_submit_registers_once(
    stack: EmbeddedStack, new_event: NewEvent, http: httpx.AsyncClient
) -> None:
    base = stack.config.url("registration")
    event = await new_event()
    page = await http.get(f"{base}/events/{event['slug']}")
    assert page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert ' style="' not in page.text and "<script" not in page.text

    form_token = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert form_token is not None
    form = {
        "form_token": form_token.group(1),
        "name": "Chidi Okafor",
        "email": _address("chidi"),
        "organisation": "Knowsley Lane Academy",
        "role": "Teacher",
        "consent": "yes",
    }
    first = await http.post(f"{base}/events/{event['slug']}/register", data=form)
    again = await http.post(f"{base}/events/{event['slug']}/register", data=form)
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    assert first.headers["cache-control"] == "no-store"

    confirmation = await http.get(f"{base}{first.headers['location']}")
    assert confirmation.headers["cache-control"] == "no-store"
    listed = await http.get(
        f"{base}/api/v1/events/{event['id']}/registrations",
        headers={"Authorization": f"Bearer {stack.admin_token}"},
    )
    assert [r["name"] for r in listed.json()] == ["Chidi Okafor"]

    forged = await http.post(f"{base}/events/{event['slug']}/register", data={**form, "form_token": "1.2.3"})
    assert forged.status_code == 400
    assert "This form has expired" in forged.text

    unknown = await http.get(f"{base}/events/no-such-event")
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("text/html")
    api_unknown = await http.get(f"{base}/api/v1/events/no-such-event")
    assert api_unknown.json()["code"] == "event_not_found"


async def _register_by_api(
    http: httpx.AsyncClient, stack: EmbeddedStack, event: dict[str, Any], name: str, email: str
) -> dict[str, Any]:
    reply = await http.post(
        f"{stack.config.url('registration')}/api/v1/events/{event['id']}/registrations",
        json={"name": name, "email": email, "organisation": "Sefton Park School", "role": "Teacher", "consent": True},
    )
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body
