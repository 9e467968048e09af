"""Browser fixtures: Debian's Chromium driven by Playwright, with phone-sized pages."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from browsing import CHROMIUM, CHROMIUM_ARGS, PHONE
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from plenary_stack.stack import EmbeddedStack


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def _context(browser: Browser, **options: Any) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(**PHONE, **options)
    context.set_default_timeout(15_000)
    try:
        yield context
    finally:
        await context.close()


@pytest.fixture
async def phone(browser: Browser) -> AsyncIterator[Page]:
    """A page in a phone-sized browser with JavaScript on, as most delegates register."""
    async for context in _context(browser):
        yield await context.new_page()


@pytest.fixture
async def phone_without_javascript(browser: Browser) -> AsyncIterator[Page]:
    async for context in _context(browser, java_script_enabled=False):
        yield await context.new_page()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15.0) as client:
        yield client


NewEvent = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def new_event(stack: EmbeddedStack, http: httpx.AsyncClient) -> NewEvent:
    """Creates an event through the organiser API; keyword arguments override the defaults."""

    async def create(**overrides: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "slug": f"leadership-symposium-{uuid.uuid4().hex[:8]}",
            "title": "Education Leadership in Challenging Times",
            "venue": "Centre for Educational Leadership, Liverpool",
            "starts_at": "2027-03-12T09:30:00+00:00",
            "ends_at": "2027-03-12T16:00:00+00:00",
            "timezone": "Europe/London",
            "capacity": 120,
            **overrides,
        }
        reply = await http.post(
            f"{stack.config.url('registration')}/api/v1/events",
            headers={"Authorization": f"Bearer {stack.admin_token}"},
            json=spec,
        )
        assert reply.status_code == 201, reply.text
        event: dict[str, Any] = reply.json()
        return event

    return create
