"""Signed ticket codes: what ticketing issues decodes to the same ticket, and no altered byte passes."""

from __future__ import annotations

import base64
import uuid

import make_ticket_vectors
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from plenary_kit import qr, testvectors, ticketcode

EVENT_ID = "6f1c2b1e-3d4a-4c5b-9e8f-0a1b2c3d4e5f"
TICKET_ID = "0b9e7c55-2f41-4a3e-8d6c-5e4f3a2b1c0d"


@pytest.fixture(scope="module")
def private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _raw(code: str) -> bytes:
    return base64.b32decode(code + "=" * (-len(code) % 8))


def _text(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


@pytest.mark.parametrize("ticket_type", ["delegate", "speaker", "future-heads_2026", "x", "a" * 32])
def test_code_round_trips_to_the_ticket_it_was_issued_for(private_key: Ed25519PrivateKey, ticket_type: str) -> None:
    code = ticketcode.encode(EVENT_ID, TICKET_ID, ticket_type, private_key)

    decoded = ticketcode.decode(code)

    assert decoded.event_id == EVENT_ID
    assert decoded.ticket_id == TICKET_ID
    assert decoded.ticket_type == ticket_type
    assert decoded.key_id == ticketcode.key_id_of(ticketcode.public_bytes(private_key))
    assert ticketcode.verify(decoded, ticketcode.public_bytes(private_key))


def test_code_is_qr_alphanumeric_and_fits_version_10(private_key: Ed25519PrivateKey) -> None:
    code = ticketcode.encode(EVENT_ID, TICKET_ID, "a" * ticketcode.MAX_TICKET_TYPE, private_key)

    assert set(code) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    assert qr.version_of(code) <= qr.MAX_VERSION


def test_code_reads_the_same_in_lower_case_and_with_spaces_around(private_key: Ed25519PrivateKey) -> None:
    code = ticketcode.encode(EVENT_ID, TICKET_ID, "delegate", private_key)

    decoded = ticketcode.decode(f"  {code.lower()}\n")

    assert ticketcode.verify(decoded, ticketcode.public_bytes(private_key))


@pytest.mark.parametrize("flip", [0x01, 0x80, 0xFF])
def test_every_altered_byte_is_malformed_or_fails_verification(private_key: Ed25519PrivateKey, flip: int) -> None:
    public = ticketcode.public_bytes(private_key)
    raw = _raw(ticketcode.encode(EVENT_ID, TICKET_ID, "delegate", private_key))

    for position in range(len(raw)):
        tampered = bytearray(raw)
        tampered[position] ^= flip
        try:
            decoded = ticketcode.decode(_text(bytes(tampered)))
        except ticketcode.MalformedCode:
            continue
        assert not ticketcode.verify(decoded, public), f"byte {position} altered with {flip:#04x} still verified"


def test_truncated_or_extended_code_is_malformed(private_key: Ed25519PrivateKey) -> None:
    raw = _raw(ticketcode.encode(EVENT_ID, TICKET_ID, "delegate", private_key))

    for altered in (raw[:-1], raw + b"\x00", raw[: len(raw) // 2]):
        with pytest.raises(ticketcode.MalformedCode):
            ticketcode.decode(_text(altered))


@pytest.mark.parametrize("text", ["", "   ", "not a ticket!", "0189", "A" * 401, "MFRGG==="])
def test_text_that_is_not_a_code_is_malformed(text: str) -> None:
    with pytest.raises(ticketcode.MalformedCode):
        ticketcode.decode(text)


def test_code_signed_by_another_key_is_rejected(private_key: Ed25519PrivateKey) -> None:
    impostor = Ed25519PrivateKey.generate()
    forged = ticketcode.decode(ticketcode.encode(EVENT_ID, TICKET_ID, "delegate", impostor))

    assert not ticketcode.verify(forged, ticketcode.public_bytes(private_key))
    assert forged.key_id != ticketcode.key_id_of(ticketcode.public_bytes(private_key))


def test_code_moved_to_another_event_fails_verification(private_key: Ed25519PrivateKey) -> None:
    raw = bytearray(_raw(ticketcode.encode(EVENT_ID, TICKET_ID, "delegate", private_key)))
    raw[1:17] = uuid.uuid4().bytes

    moved = ticketcode.decode(_text(bytes(raw)))

    assert not ticketcode.verify(moved, ticketcode.public_bytes(private_key))


def test_public_key_that_is_not_ed25519_fails_verification(private_key: Ed25519PrivateKey) -> None:
    decoded = ticketcode.decode(ticketcode.encode(EVENT_ID, TICKET_ID, "delegate", private_key))

    assert not ticketcode.verify(decoded, b"\x00" * 31)


def _trusting(private_key: Ed25519PrivateKey) -> dict[str, bytes]:
    public = ticketcode.public_bytes(private_key)
    return {ticketcode.key_id_of(public): public}


@pytest.mark.parametrize("sessions", [[], [0], [0, 2, 9], [7, 8], list(range(ticketcode.MAX_SESSION_NUMBER - 7, 448))])
def test_workshop_entitlements_round_trip(private_key: Ed25519PrivateKey, sessions: list[int]) -> None:
    code = ticketcode.encode(EVENT_ID, TICKET_ID, "delegate", private_key, entitlements=sessions)

    decoded = ticketcode.decode(code)

    assert (decoded.format, decoded.entitlements) == (ticketcode.FORMAT, tuple(sessions))
    assert qr.version_of(code) <= qr.MAX_VERSION


@pytest.mark.parametrize("refused", [[-1], [ticketcode.MAX_SESSION_NUMBER + 1]])
def test_session_number_outside_the_bitmap_is_refused(private_key: Ed25519PrivateKey, refused: list[int]) -> None:
    with pytest.raises(ValueError, match="session numbers"):
        ticketcode.encode(EVENT_ID, TICKET_ID, "delegate", private_key, entitlements=refused)


@pytest.mark.parametrize("ticket_type", ["", "a" * 33, "café", "two words", "tab\t"])
def test_ticket_type_that_a_door_could_not_show_plainly_is_refused(
    private_key: Ed25519PrivateKey, ticket_type: str
) -> None:
    with pytest.raises(ValueError):
        ticketcode.encode(EVENT_ID, TICKET_ID, ticket_type, private_key)


def test_python_verifier_reaches_every_shared_vectors_verdict() -> None:
    vectors = testvectors.ticket_codes()
    keys = {key_id: base64.urlsafe_b64decode(key) for key_id, key in vectors["keys"].items()}

    for vector in vectors["vectors"]:
        checked = ticketcode.check(vector["code"], vectors["event_id"], keys, set(vectors["revoked"]))
        assert checked.verdict == vector["verdict"], vector["name"]
        if vector["verdict"] == "valid":
            assert checked.code is not None
            assert vector["ticket"] == {
                "format": checked.code.format, "event_id": checked.code.event_id,
                "ticket_id": checked.code.ticket_id, "key_id": checked.code.key_id,
                "ticket_type": checked.code.ticket_type, "entitlements": list(checked.code.entitlements),
            }, vector["name"]


def test_shared_vectors_file_is_what_its_generator_writes() -> None:
    assert testvectors.TICKET_CODES.read_text(encoding="utf-8") == make_ticket_vectors.render()


def test_every_shared_valid_code_fits_qr_version_10_at_level_m() -> None:
    for vector in testvectors.ticket_codes()["vectors"]:
        if vector["verdict"] == "valid":
            assert qr.version_of(vector["code"]) <= qr.MAX_VERSION, vector["name"]


_SIGNER = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
_VALID = ticketcode.encode(EVENT_ID, TICKET_ID, "future-heads", _SIGNER, entitlements=[1, 4, 12])


@settings(max_examples=400, deadline=None)
@given(position=st.integers(min_value=0), value=st.integers(min_value=0, max_value=255))
def test_any_single_changed_byte_is_never_admitted(position: int, value: int) -> None:
    raw = bytearray(_raw(_VALID))
    position %= len(raw)
    assume(raw[position] != value)
    raw[position] = value

    verdict = ticketcode.check(_text(bytes(raw)), EVENT_ID, _trusting(_SIGNER)).verdict

    assert verdict in {ticketcode.Verdict.INVALID_SIGNATURE, ticketcode.Verdict.MALFORMED}


_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@settings(max_examples=400, deadline=None)
@given(position=st.integers(min_value=0), character=st.characters())
def test_any_single_changed_character_is_never_admitted(position: int, character: str) -> None:
    position %= len(_VALID)
    assume(character.upper() != _VALID[position])
    text = _VALID[:position] + character + _VALID[position + 1 :]

    verdict = ticketcode.check(text, EVENT_ID, _trusting(_SIGNER)).verdict

    assert verdict in {ticketcode.Verdict.INVALID_SIGNATURE, ticketcode.Verdict.MALFORMED}


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=260))
def test_random_bytes_never_crash_the_parser(raw: bytes) -> None:
    for text in (_text(raw), raw.decode("latin-1")):
        try:
            decoded = ticketcode.decode(text)
        except ticketcode.MalformedCode:
            continue
        assert not ticketcode.verify(decoded, ticketcode.public_bytes(_SIGNER))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_BASE32, max_size=320) | st.text(max_size=40))
def test_random_text_gets_a_verdict_never_an_exception(text: str) -> None:
    assert ticketcode.check(text, EVENT_ID, _trusting(_SIGNER)).verdict in set(ticketcode.Verdict)


@settings(max_examples=200, deadline=None)
@given(
    ticket_type=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=32),
    sessions=st.sets(st.integers(min_value=0, max_value=ticketcode.MAX_SESSION_NUMBER), max_size=40),
)
def test_every_issuable_code_round_trips_and_fits_the_qr(ticket_type: str, sessions: set[int]) -> None:
    code = ticketcode.encode(EVENT_ID, TICKET_ID, ticket_type, _SIGNER, entitlements=sessions)

    checked = ticketcode.check(code, EVENT_ID, _trusting(_SIGNER))

    assert checked.verdict is ticketcode.Verdict.VALID
    assert checked.code is not None
    assert (checked.code.ticket_type, set(checked.code.entitlements)) == (ticket_type, sessions)
    assert len(code) <= 311


def test_code_from_another_event_is_wrong_event_even_with_its_key_known(private_key: Ed25519PrivateKey) -> None:
    other_event = str(uuid.uuid4())
    code = ticketcode.encode(other_event, TICKET_ID, "delegate", private_key)

    assert ticketcode.check(code, EVENT_ID, _trusting(private_key)).verdict is ticketcode.Verdict.WRONG_EVENT
    assert ticketcode.check(code, EVENT_ID, {}).verdict is ticketcode.Verdict.WRONG_EVENT
