"""QR rendering of ticket codes, shared by ticketing (downloads) and notifications (emails)."""

from __future__ import annotations

import io

import qrcode
import qrcode.constants
import qrcode.image.svg

# Level M survives a scuffed phone screen or a creased printout; codes stay within version 10.
_LEVEL = qrcode.constants.ERROR_CORRECT_M
MAX_VERSION = 10


def _matrix(code: str, box_size: int) -> qrcode.QRCode:
    qr = qrcode.QRCode(error_correction=_LEVEL, box_size=box_size, border=4)
    qr.add_data(code.upper(), optimize=0)
    qr.make(fit=True)
    if qr.version > MAX_VERSION:
        raise ValueError(f"code needs QR version {qr.version}, above {MAX_VERSION}")
    return qr


def version_of(code: str) -> int:
    return int(_matrix(code, 1).version)


def png(code: str, box_size: int = 8) -> bytes:
    buffer = io.BytesIO()
    _matrix(code, box_size).make_image().save(buffer, format="PNG")
    return buffer.getvalue()


def svg(code: str, box_size: int = 10) -> bytes:
    image = _matrix(code, box_size).make_image(image_factory=qrcode.image.svg.SvgPathImage)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue()
