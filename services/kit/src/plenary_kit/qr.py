"""QR rendering of ticket codes (ticketing's downloads, notifications' emails) and enrolment links (checkin).

The text is encoded exactly as given: a ticket code is upper-case base32 already, which QR's
alphanumeric mode packs densely, and a link keeps its case.

`qrcode` builds the symbol. Three steps are done here instead, because every confirmation email
renders one and the library's pure-Python versions were most of a notification's CPU: the
codewords (the data bits gathered in one integer rather than bit by bit, and the Reed–Solomon
error correction of each block computed with a shift register over the field's log tables
rather than by polynomial division; the same bytes, in the same interleaved order), scoring
the eight mask patterns (ISO/IEC 18004 §7.8.3, the same four penalty rules and the same choice
as `qrcode`, counted on whole rows as strings and integers rather than module by module, the
winner applied to the one placement already made rather than placing the data again), and
writing the PNG (a 1-bit greyscale image straight from the module matrix, no drawing library).
"""

from __future__ import annotations

import itertools
import re
import struct
import zlib
from functools import lru_cache

import qrcode
import qrcode.base
import qrcode.constants
import qrcode.exceptions
import qrcode.util
from qrcode.LUT import rsPoly_LUT

# Level M survives a scuffed phone screen or a creased printout; codes stay within version 10.
_LEVEL = qrcode.constants.ERROR_CORRECT_M
MAX_VERSION = 10
_BORDER = 4

# Rule 1: five or more modules of one colour in a row or column.
_RUN = re.compile(r"0{5,}|1{5,}")
# Rule 3: the finder-like pattern 1:1:3:1:1 with four light modules before or after it. Neither
# string overlaps itself, so counting each (non-overlapping, as str.count does) counts every one.
_FINDER_LIKE = ("10111010000", "00001011101")


def _penalty(rows: list[int], size: int) -> int:
    """The mask-evaluation penalty of a symbol whose rows are integers, the first module the highest bit."""
    text = [format(row, f"0{size}b") for row in rows]
    # Every row and column in one string, a line apart, so runs and patterns never join across lines.
    lines = "\n".join(text + ["".join(column) for column in zip(*text, strict=True)])
    points = sum(len(run) - 2 for run in _RUN.findall(lines))
    points += 40 * sum(lines.count(pattern) for pattern in _FINDER_LIKE)
    # Rule 2: each 2x2 block of one colour, overlapping blocks counted separately.
    pairs = (1 << (size - 1)) - 1
    for upper, lower in itertools.pairwise(rows):
        same_above_below = ~(upper ^ lower)
        same_beside = ~(upper ^ (upper >> 1))
        points += 3 * (same_above_below & (same_above_below >> 1) & same_beside & pairs).bit_count()
    # Rule 4: each full 5 % by which the dark share strays from half.
    dark = sum(row.bit_count() for row in rows)
    points += 10 * int(abs(dark * 100 / size**2 - 50) / 5)
    return points


def _rows(modules: list[list[bool | None]]) -> list[int]:
    return [int("".join("1" if module else "0" for module in row), 2) for row in modules]


@lru_cache(maxsize=16)
def _data_region(version: int) -> list[int]:
    """Per row, the modules that carry data (and so are masked), as in the library's own layout."""
    layout = qrcode.QRCode(version=version, error_correction=_LEVEL)
    layout.makeImpl(True, 0)
    # The layout again with only the function patterns: what is still unset is the data region.
    size = layout.modules_count
    layout.modules = [[None] * size for _ in range(size)]
    layout.setup_position_probe_pattern(0, 0)
    layout.setup_position_probe_pattern(size - 7, 0)
    layout.setup_position_probe_pattern(0, size - 7)
    layout.setup_position_adjust_pattern()
    layout.setup_timing_pattern()
    layout.setup_type_info(True, 0)
    if version >= 7:
        layout.setup_type_number(True)
    return [int("".join("1" if module is None else "0" for module in row), 2) for row in layout.modules]


@lru_cache(maxsize=128)
def _mask(version: int, pattern: int) -> list[int]:
    """Per row, the data modules mask `pattern` inverts."""
    size = version * 4 + 17
    inverts = qrcode.util.mask_func(pattern)
    region = _data_region(version)
    return [int("".join("1" if inverts(i, j) else "0" for j in range(size)), 2) & region[i] for i in range(size)]


@lru_cache(maxsize=128)
def _format_overlay(version: int, pattern: int) -> tuple[list[int], list[int]]:
    """Per row, the modules the format (and version) information occupies for this mask, and which are dark."""
    layout = qrcode.QRCode(version=version, error_correction=_LEVEL)
    size = layout.modules_count = version * 4 + 17
    layout.modules = [[None] * size for _ in range(size)]
    layout.setup_type_info(False, pattern)
    if version >= 7:
        layout.setup_type_number(False)
    occupied = [int("".join("0" if module is None else "1" for module in row), 2) for row in layout.modules]
    dark = [int("".join("1" if module else "0" for module in row), 2) for row in layout.modules]
    return occupied, dark


class _Bits:
    """The data bit stream as one integer, for `QRData.write` (which only ever calls `put`)."""

    def __init__(self) -> None:
        self.value = 0
        self.length = 0

    def put(self, number: int, length: int) -> None:
        self.value = (self.value << length) | (number & ((1 << length) - 1))
        self.length += length


@lru_cache(maxsize=64)
def _generator_logs(ec_count: int) -> tuple[int | None, ...]:
    """The error-correction generator polynomial's coefficients after the leading 1, as logarithms.

    The library's table holds the polynomial for every block size of level M up to MAX_VERSION."""
    return tuple(qrcode.base.LOG_TABLE[c] if c else None for c in rsPoly_LUT[ec_count][1:])


def _error_correction(data: bytes, ec_count: int) -> list[int]:
    """The remainder of the block times x^ec_count divided by the generator: its EC codewords."""
    exp, log = qrcode.base.EXP_TABLE, qrcode.base.LOG_TABLE
    generator = _generator_logs(ec_count)
    remainder = [0] * ec_count
    for byte in data:
        factor = byte ^ remainder.pop(0)
        remainder.append(0)
        if factor:
            shift = log[factor]
            for i, coefficient in enumerate(generator):
                if coefficient is not None:
                    remainder[i] ^= exp[(shift + coefficient) % 255]
    return remainder


def _codewords(version: int, data_list: list[qrcode.util.QRData]) -> list[int]:
    """The symbol's codewords, data then error correction, interleaved block by block (as
    `qrcode.util.create_data` makes them)."""
    bits = _Bits()
    for data in data_list:
        bits.put(data.mode, 4)
        bits.put(len(data), qrcode.util.length_in_bits(data.mode, version))
        data.write(bits)
    blocks = qrcode.base.rs_blocks(version, _LEVEL)
    capacity = sum(block.data_count for block in blocks)
    if bits.length > capacity * 8:
        raise qrcode.exceptions.DataOverflowError(f"{bits.length} bits, {capacity * 8} available")
    # The terminator (up to four zero bits), zeros to the byte, then the two pad bytes in turn.
    bits.put(0, min(capacity * 8 - bits.length, 4))
    bits.put(0, -bits.length % 8)
    used = bits.length // 8
    stream = bits.value.to_bytes(used, "big") + bytes(
        qrcode.util.PAD1 if i % 2 else qrcode.util.PAD0 for i in range(capacity - used)
    )
    data_blocks: list[bytes] = []
    ec_blocks: list[list[int]] = []
    offset = 0
    for block in blocks:
        data_blocks.append(stream[offset : offset + block.data_count])
        ec_blocks.append(_error_correction(data_blocks[-1], block.total_count - block.data_count))
        offset += block.data_count
    interleaved = [block[i] for i in range(max(map(len, data_blocks))) for block in data_blocks if i < len(block)]
    interleaved += [block[i] for i in range(max(map(len, ec_blocks))) for block in ec_blocks if i < len(block)]
    return interleaved


def _symbol(code: str) -> tuple[int, int, list[int]]:
    """The code's version, its side in modules, and its rows as integers (first module the highest bit)."""
    qr = qrcode.QRCode(error_correction=_LEVEL)
    qr.add_data(code, optimize=0)
    qr.best_fit()
    version = qr.version
    if version > MAX_VERSION:
        raise ValueError(f"code needs QR version {version}, above {MAX_VERSION}")
    # The library places these codewords instead of making its own.
    qr.data_cache = _codewords(version, qr.data_list)
    # Every mask is tried on the same placement: mask 0 undone, then each mask applied in turn.
    qr.makeImpl(True, 0)
    unmasked = [row ^ flip for row, flip in zip(_rows(qr.modules), _mask(version, 0), strict=True)]
    size = qr.modules_count
    scores = [
        _penalty([row ^ flip for row, flip in zip(unmasked, _mask(version, pattern), strict=True)], size)
        for pattern in range(8)
    ]
    # The first of the lowest, as the library itself chooses. The data modules are the placement
    # with that mask applied; only the format (and version) information still names mask 0's test.
    best = scores.index(min(scores))
    occupied, dark = _format_overlay(version, best)
    rows = [
        (row ^ flip) & ~taken | ink
        for row, flip, taken, ink in zip(unmasked, _mask(version, best), occupied, dark, strict=True)
    ]
    return version, size, rows


def _bordered(code: str) -> list[str]:
    """The symbol's rows as strings of "1" (dark) and "0", the quiet zone included."""
    _, size, rows = _symbol(code)
    side = size + 2 * _BORDER
    blank = "0" * side
    edge = "0" * _BORDER
    return [blank] * _BORDER + [edge + format(row, f"0{size}b") + edge for row in rows] + [blank] * _BORDER


def modules(code: str) -> list[list[bool]]:
    """The code's module matrix, quiet zone included, for drawing it by other means (a PDF)."""
    return [[module == "1" for module in row] for row in _bordered(code)]


def version_of(code: str) -> int:
    return _symbol(code)[0]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@lru_cache(maxsize=64)
def _widened(box_size: int) -> dict[str, str]:
    """Each module as `box_size` pixels: dark is 0 (black) in a 1-bit greyscale image, light 1."""
    return {"1": "0" * box_size, "0": "1" * box_size}


_PIXEL_BYTES = str.maketrans({"1": "\x00", "0": "\xff"})


def png(code: str, box_size: int = 8) -> bytes:
    """A black-on-white 1-bit PNG, `box_size` pixels per module, with a four-module quiet zone."""
    matrix = _bordered(code)
    side = len(matrix) * box_size
    scanlines = []
    if box_size == 8:
        # Eight pixels a module: each module is one whole byte, dark 0x00 and light 0xFF.
        for row in matrix:
            scanlines.append((b"\x00" + row.translate(_PIXEL_BYTES).encode("latin-1")) * 8)
    else:
        widen = _widened(box_size)
        padding = "1" * (-side % 8)
        for row in matrix:
            pixels = "".join(widen[module] for module in row) + padding
            # Filter type 0 (none) before each scanline.
            scanlines.append((b"\x00" + int(pixels, 2).to_bytes(len(pixels) // 8, "big")) * box_size)
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"".join(scanlines), 6))
        + _chunk(b"IEND", b"")
    )


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
