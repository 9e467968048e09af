"""QR images of ticket codes: the smallest PNG offered reads back exactly with two independent decoders."""

from __future__ import annotations

import io
import re
import string

import cv2
import numpy as np
import pytest
import qrcode
import qrcode.constants
import qrcode.exceptions
import qrcode.util
import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from plenary_kit import qr, testvectors
from ticketing import domain

VALID = [v for v in testvectors.ticket_codes()["vectors"] if v["verdict"] == "valid"]


@pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
def test_smallest_png_decodes_to_exactly_the_code_with_zxing_and_opencv(vector: dict[str, str]) -> None:
    # The lower-case vector is the same code; the QR always carries the canonical upper-case text.
    code = vector["code"].strip().upper()
    image = Image.open(io.BytesIO(qr.png(code, domain.MIN_QR_BOX)))

    assert image.size == (len(qr.modules(code)) * domain.MIN_QR_BOX,) * 2
    assert [barcode.text for barcode in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)] == [code]
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(np.array(image.convert("L")))
    assert text == code


def test_svg_is_sized_in_pixels_per_module_on_a_white_ground() -> None:
    code = VALID[0]["code"]
    side = len(qr.modules(code))

    drawing = qr.svg(code, box_size=3).decode("ascii")

    assert f'width="{side * 3}" height="{side * 3}"' in drawing
    assert f'viewBox="0 0 {side} {side}"' in drawing
    assert re.search(r'<rect width="\d+" height="\d+" fill="#fff"/>', drawing)


def test_module_matrix_has_the_quiet_zone_around_a_version_10_symbol_at_most() -> None:
    longest = max((v["code"] for v in VALID), key=len)

    matrix = qr.modules(longest)

    assert len(matrix) == 17 + 4 * qr.version_of(longest) + 8
    assert not any(matrix[0]) and not any(row[0] for row in matrix)


def test_a_link_keeps_its_case() -> None:
    # An enrolment link carries a case-sensitive one-time code.
    link = "https://plenary.example.org/scan#enrol=Kq9_xZ-3mPdw7TyYb2cVhA"
    image = Image.open(io.BytesIO(qr.png(link, 4)))
    assert [barcode.text for barcode in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)] == [link]


def _library_symbol(text: str) -> qrcode.QRCode:
    """The symbol as `qrcode` makes it on its own: its best fit and its choice of mask."""
    symbol = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=1, border=4)
    symbol.add_data(text, optimize=0)
    symbol.make(fit=True)
    return symbol


CODE_ALPHABET = string.ascii_uppercase + "234567"


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.text(CODE_ALPHABET, min_size=1, max_size=170),
        st.text(string.ascii_letters + string.digits + ":/#=_-.", min_size=1, max_size=120),
    )
)
def test_the_symbol_is_the_one_the_library_would_choose(text: str) -> None:
    assert qr.modules(text) == [list(row) for row in _library_symbol(text).get_matrix()]


@pytest.mark.parametrize("box_size", [1, 2, 3, 8])
def test_the_png_has_the_pixels_the_library_would_draw(box_size: int) -> None:
    code = max((v["code"] for v in VALID), key=len)
    library = _library_symbol(code)
    library.box_size = box_size
    drawn = io.BytesIO()
    library.make_image().save(drawn, format="PNG")

    ours, theirs = Image.open(io.BytesIO(qr.png(code, box_size))), Image.open(drawn)

    assert ours.size == theirs.size
    assert ours.convert("L").tobytes() == theirs.convert("L").tobytes()


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, qr.MAX_VERSION),
    st.one_of(
        st.text(CODE_ALPHABET, min_size=1, max_size=200),
        st.text(string.ascii_letters + string.digits + ":/#=_-.", min_size=1, max_size=150),
    ),
)
def test_the_codewords_are_the_library_s_in_every_version(version: int, text: str) -> None:
    symbol = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    symbol.add_data(text, optimize=0)
    try:
        theirs = qrcode.util.create_data(version, qrcode.constants.ERROR_CORRECT_M, symbol.data_list)
    except qrcode.exceptions.DataOverflowError:
        with pytest.raises(qrcode.exceptions.DataOverflowError):
            qr._codewords(version, symbol.data_list)
        return
    assert qr._codewords(version, symbol.data_list) == theirs
