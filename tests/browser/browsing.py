"""What the browser tests share: the browser, the page sizes, a workshop programme and accessibility checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from playwright.async_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "locale": "en-GB",
}
WORKSHOPS_OFFERED: list[dict[str, Any]] = [
    {
        "code": "curriculum",
        "title": "Leading curriculum change",
        "starts_at": "2027-03-12T10:00:00+00:00",
        "ends_at": "2027-03-12T11:30:00+00:00",
        "capacity": 30,
    },
    {
        "code": "wellbeing",
        "title": "Staff wellbeing in hard times",
        "starts_at": "2027-03-12T13:00:00+00:00",
        "ends_at": "2027-03-12T14:30:00+00:00",
        "capacity": 30,
    },
]
# Every element with text of its own, and its contrast against the background it is drawn on,
# where that is below WCAG 2.2 AA's 4.5:1.
LOW_CONTRAST_TEXT = """() => {
    const rgb = (value) => value.match(/[\\d.]+/g).map(Number);
    const luminance = ([r, g, b]) => {
        const linear = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
        return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
    };
    const background = (element) => {
        for (let at = element; at; at = at.parentElement) {
            const colour = rgb(getComputedStyle(at).backgroundColor);
            if (colour.length < 4 || colour[3] === 1) return colour;
        }
        return [255, 255, 255];
    };
    const low = [];
    for (const element of document.querySelectorAll('body *')) {
        const ownText = Array.from(element.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
        if (!ownText || !element.getClientRects().length || element.closest('.visually-hidden')) continue;
        const [a, b] = [luminance(rgb(getComputedStyle(element).color)), luminance(background(element))];
        const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
        if (ratio < 4.5) low.push(`${element.tagName}.${element.className}: ${ratio.toFixed(2)}`);
    }
    return low;
}"""

# Fields with no label, and aria references to elements that are not on the page.
UNLABELLED_FIELDS = """() => Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
    .filter((field) => !field.labels || field.labels.length === 0)
    .map((field) => field.id || field.name)"""
DANGLING_REFERENCES = """() => Array.from(document.querySelectorAll('[aria-describedby], [aria-labelledby]'))
    .flatMap((el) => [el.getAttribute('aria-describedby'), el.getAttribute('aria-labelledby')])
    .flatMap((ids) => (ids || '').split(/\\s+/))
    .filter((id) => id && !document.getElementById(id))"""


@asynccontextmanager
async def page_in(browser: Browser, options: dict[str, Any]) -> AsyncIterator[Page]:
    """A page in a browser context of its own with these options, closed afterwards."""
    context = await browser.new_context(**options)
    context.set_default_timeout(15_000)
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def assert_readable(page: Page) -> None:
    """Language en-GB, one h1, a label for every field, no dangling aria reference, every text at least 4.5:1."""
    assert await page.get_attribute("html", "lang") == "en-GB"
    assert await page.locator("h1").count() == 1
    assert await page.evaluate(UNLABELLED_FIELDS) == []
    assert await page.evaluate(DANGLING_REFERENCES) == []
    assert await page.evaluate(LOW_CONTRAST_TEXT) == []
