"""The embedded document server's direct packing gives exactly the storage engine binding's bytes."""

from __future__ import annotations

import random
from typing import Any

import pytest
import wiredtiger

from plenary_stack.documents import packers

BINDING = wiredtiger.Cursor.set_key.__globals__
GENERAL_PACK, GENERAL_UNPACK = BINDING["pack"], BINDING["unpack"]
if getattr(GENERAL_PACK, "plain_formats_directly", False):  # pragma: no cover - only if installed here
    raise RuntimeError("the binding's own functions are needed for comparison")
PACK, UNPACK = packers(GENERAL_PACK, GENERAL_UNPACK)

# Every table format SecantusDB creates, and a few other plain ones.
PLAIN_FORMATS = ["SSq", "SS", "SSu", "SSS", "SSSu", "q", "S", "u", "uq", "uSu", "qqS"]
INTEGERS = [0, 1, -1, 63, 64, -64, -65, 8255, 8256, 8257, -8256, -8257, 2**40, -(2**40), 2**63 - 1, -(2**63)]


def outcome(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except Exception as exc:  # the same failure counts as the same answer
        return ("raised", type(exc))


def random_value(column: str, rng: random.Random) -> Any:
    if column == "S":
        return "".join(rng.choice(["a", "Z", "\0", "é", "€", "😀", "/", " "]) for _ in range(rng.randrange(12)))
    if column == "u":
        return rng.randbytes(rng.randrange(40))
    return rng.choice(INTEGERS) + rng.randrange(-2, 3)


@pytest.mark.parametrize("fmt", PLAIN_FORMATS)
def test_plain_formats_pack_and_unpack_as_the_binding_does(fmt: str) -> None:
    rng = random.Random(fmt)
    for _ in range(2000):
        values = [random_value(column, rng) for column in fmt]
        packed = outcome(GENERAL_PACK, fmt, *values)
        assert outcome(PACK, fmt, *values) == packed, values
        if isinstance(packed, bytes):
            assert UNPACK(fmt, packed) == GENERAL_UNPACK(fmt, packed)


@pytest.mark.parametrize(
    ("fmt", "values"),
    [
        ("S", [b"bytes where a string goes"]),
        ("u", ["a string where bytes go"]),
        ("q", [True]),
        ("SSq", ["too", "few"]),
        ("Su", ["extra", b"values", 3]),
        ("5s", ["fixed"]),
        ("iS", [7, "other integer"]),
        ("Q", [2**64 - 1]),
        ("", []),
    ],
)
def test_anything_else_is_packed_by_the_binding_itself(fmt: str, values: list[Any]) -> None:
    assert outcome(PACK, fmt, *values) == outcome(GENERAL_PACK, fmt, *values)


def test_unpacking_what_is_not_plain_goes_to_the_binding() -> None:
    assert UNPACK("S", b"no terminator") == GENERAL_UNPACK("S", b"no terminator")
    assert UNPACK("iS", GENERAL_PACK("iS", 7, "x")) == [7, "x"]
    assert outcome(UNPACK, "u", None) == outcome(GENERAL_UNPACK, "u", None)
