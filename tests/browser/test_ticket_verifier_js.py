"""The door app's JavaScript verifier in Chromium: the shared vectors, and the SVG QR as a browser draws it.

Pages are served from a routed http://localhost origin (a secure context, as WebCrypto needs)
straight from the repository files, so no server is started.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import zxingcpp
from PIL import Image
from playwright.async_api import Browser, Page, Route

import checkin
from plenary_kit import qr, testvectors

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

VERIFIER = Path(checkin.__file__).with_name("static") / "js" / "ticketcode.js"
ORIGIN = "http://localhost:8765"


@pytest.fixture
async def door(browser: Browser) -> AsyncIterator[Page]:
    """A blank page on a secure origin that can import the verifier module."""
    context = await browser.new_context()

    async def serve(route: Route) -> None:
        path = route.request.url.removeprefix(ORIGIN)
        if path == "/ticketcode.js":
            await route.fulfill(body=VERIFIER.read_text(), content_type="text/javascript")
        else:
            await route.fulfill(body="<!doctype html><title>door</title>", content_type="text/html")

    await context.route(f"{ORIGIN}/**", serve)
    page = await context.new_page()
    await page.goto(f"{ORIGIN}/")
    try:
        yield page
    finally:
        await context.close()


RUN_VECTORS = """
async (vectors) => {
  const verifier = await import("/ticketcode.js");
  const keys = await verifier.importKeys(vectors.keys);
  const revoked = new Set(vectors.revoked);
  const results = [];
  for (const vector of vectors.vectors) {
    results.push(await verifier.check(vector.code, vectors.event_id, keys, revoked));
  }
  return results;
}
"""


async def test_javascript_verifier_reaches_every_vectors_verdict(door: Page) -> None:
    vectors = testvectors.ticket_codes()

    results: list[dict[str, Any]] = await door.evaluate(RUN_VECTORS, vectors)

    assert len(results) == len(vectors["vectors"])
    for vector, result in zip(vectors["vectors"], results, strict=True):
        assert result["verdict"] == vector["verdict"], vector["name"]
        if vector["verdict"] == "valid":
            assert result["ticket"] == vector["ticket"], vector["name"]
    assert {v["verdict"] for v in vectors["vectors"]} == {
        "valid", "malformed", "wrong_event", "invalid_signature", "revoked"
    }


async def test_javascript_verifier_accepts_the_keys_endpoints_list_and_never_throws_on_garbage(door: Page) -> None:
    vectors = testvectors.ticket_codes()
    listed = [{"key_id": key_id, "public_key": key} for key_id, key in vectors["keys"].items()]
    garbage = ["", " ", "\u0000", "A", "AAAAAAAA", "ÅÄÖ", "7" * 400, "A" * 311, "=" * 16, "{}", "null"]

    verdicts: list[str] = await door.evaluate(
        """async ([listed, valid, garbage, eventId]) => {
            const verifier = await import("/ticketcode.js");
            const keys = await verifier.importKeys(listed);
            const out = [(await verifier.check(valid, eventId, keys)).verdict];
            for (const text of garbage) out.push((await verifier.check(text, eventId, keys)).verdict);
            return out;
        }""",
        [listed, vectors["vectors"][0]["code"], garbage, vectors["event_id"]],
    )

    assert verdicts == ["valid"] + ["malformed"] * len(garbage)


def _decoders(image: Image.Image) -> tuple[list[str], str]:
    """What zxing-cpp and OpenCV each read from the image."""
    found = [barcode.text for barcode in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]
    grey = np.array(image.convert("L"))
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(grey)
    return found, text


@pytest.mark.parametrize("which", ["longest possible code", "with workshop entitlements"])
async def test_smallest_svg_as_chromium_draws_it_decodes_to_exactly_the_code(door: Page, which: str) -> None:
    """The SVG is rasterised by Chromium at its own size, 1:1, as a phone or print preview would show it."""
    [vector] = [v for v in testvectors.ticket_codes()["vectors"] if which in v["name"]]
    code = vector["code"]
    drawing = qr.svg(code, box_size=2).decode("ascii")
    await door.set_content(f'<body style="margin:0;background:#fff">{drawing.split("?>", 1)[1]}</body>')

    shot = await door.locator("svg").screenshot()

    image = Image.open(io.BytesIO(shot))
    assert image.size == (len(qr.modules(code)) * 2,) * 2
    zxing_text, opencv_text = _decoders(image)
    assert zxing_text == [code]
    assert opencv_text == code

