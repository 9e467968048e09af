"""QR rendering of ticket codes (ticketing's downloads, notifications' emails) and enrolment links (checkin).

The text is encoded exactly as given: a ticket code is upper-case base32 already, which QR's
alphanumeric mode packs densely, and a link keeps its case.
"""

from __future__ import annotations

import io

import qrcode
import qrcode.constants

# Level M survives a scuffed phone screen or a creased printout; codes stay within version 10.
_LEVEL = qrcode.constants.ERROR_CORRECT_M
MAX_VERSION = 10


def _matrix(code: str, box_size: int) -> qrcode.QRCode:
    qr = qrcode.QRCode(error_correction=_LEVEL, box_size=box_size, border=4)
    qr.add_data(code, optimize=0)
    qr.make(fit=True)
    if qr.version > MAX_VERSION:
        raise ValueError(f"code needs QR version {qr.version}, above {MAX_VERSION}")
    return qr


def modules(code: str) -> list[list[bool]]:
    """The code's module matrix, quiet zone included, for drawing it by other means (a PDF)."""
    return [list(row) for row in _matrix(code, 1).get_matrix()]


def version_of(code: str) -> int:
    return int(_matrix(code, 1).version)


def png(code: str, box_size: int = 8) -> bytes:
    buffer = io.BytesIO()
    _matrix(code, box_size).make_image().save(buffer, format="PNG")
    return buffer.getvalue()


def svg(code: str, box_size: int = 10) -> bytes:
    """An SVG `box_size` pixels per module, like the PNG of that size, on an opaque white ground.

    Sized in pixels (not millimetres) so the smallest size still scans where it is shown as is,
    and drawn with crisp edges so a rasteriser does not blur the modules into each other.
    """
    matrix = modules(code)
    side = len(matrix)
    runs: list[str] = []
    for y, row in enumerate(matrix):
        x = 0
        while x < side:
            if not row[x]:
                x += 1
                continue
            start = x
            while x < side and row[x]:
                x += 1
            runs.append(f"M{start} {y}h{x - start}v1h-{x - start}z")
    pixels = side * box_size
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{pixels}" height="{pixels}" '
        f'viewBox="0 0 {side} {side}" shape-rendering="crispEdges">'
        f'<rect width="{side}" height="{side}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(runs)}"/></svg>\n'
    ).encode("ascii")
