"""Property tests for the parsers of outside input: whatever arrives, a parser answers or refuses in its
own terms (a model, a 422, a verdict), never with an exception a service would turn into a 500.

Ticket codes and raw Kafka bytes have properties of their own in tests/unit; these cover the rest:
the registration form and its tokens, API bodies, CSV imports, envelopes shaped like JSON, time zone
names, sealed manage tokens and Authorization headers. Request headers such as Idempotency-Key and
Accept are in the services' OpenAPI documents, so the schemathesis tests beside this file send them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from checkin import domain as checkin_domain
from plenary_kit import auth, dates, events, sealing
from plenary_kit.envelope import Envelope, MalformedEvent
from registration import csvfiles, pages
from registration import domain as registration_domain

QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2027, 3, 12, 9, 30, tzinfo=UTC)
FORM_KEY = bytes(range(32))
QUESTIONS: list[dict[str, Any]] = [
    {
        "code": "strand",
        "label": "Which strand will you follow?",
        "kind": "single_choice",
        "required": True,
        "options": ["Whole-school CPD", "Future heads", "Teacher educators"],
    },
    {"code": "interests", "label": "Topics of interest", "kind": "multiple_choice", "options": ["SEND", "Wellbeing"]},
    {"code": "photo_ok", "label": "May we photograph you?", "kind": "yes_no", "required": True},
    {"code": "hope", "label": "What do you hope to take away?", "kind": "text"},
]
EVENT: dict[str, Any] = {"slug": "future-heads", "questions": QUESTIONS}

# JSON as any client may send it, with the numbers and times that sit at the edges of what can be stored.
EDGE_INTEGERS = st.sampled_from([0, -1, 2**31, 2**63 - 1, 2**63, -(2**63) - 1, 10**30])
EDGE_TIMES = st.sampled_from(
    [
        "0001-01-01T00:00:00+23:59",
        "9999-12-31T23:59:59-23:59",
        "9999-12-31T23:00:00+00:00",
        "1899-12-31T23:59:59Z",
        "2027-03-12T09:30:00",
        "2027-02-30T09:30:00Z",
        "2027-03-12T09:30:00+00:00",
    ]
)
OFFSETS = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=23, minutes=59))])
AWARE_TIMES = st.datetimes(timezones=OFFSETS).map(datetime.isoformat)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | EDGE_INTEGERS
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | EDGE_TIMES
    | AWARE_TIMES
)


def json_values(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6),
        max_leaves=25,
    )


def _field_names(models: list[type[BaseModel]]) -> list[str]:
    return sorted({name for model in models for name in model.model_fields})


def _models(module: Any) -> list[type[BaseModel]]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == module.__name__
    ]


# The bodies the JSON APIs parse, and every field name any of their nested models knows.
BODIES: list[type[BaseModel]] = [
    registration_domain.EventCreate,
    registration_domain.EventUpdate,
    registration_domain.RegistrationCreate,
    registration_domain.RegistrationUpdate,
    registration_domain.GroupRegistrationCreate,
    checkin_domain.ScanRequest,
    checkin_domain.DeviceCreate,
    checkin_domain.DeviceEnrol,
]
BODY_KEYS = st.sampled_from(_field_names(_models(registration_domain) + _models(checkin_domain))) | st.text(max_size=8)


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


@QUICK
@given(model=st.sampled_from(BODIES), body=st.dictionaries(BODY_KEYS, json_values(BODY_KEYS), max_size=12))
@example(
    model=registration_domain.SessionSpec,
    body={
        "code": "w1",
        "title": "Leading through budget pressure",
        "starts_at": "2027-03-12T11:00:00+00:00",
        "ends_at": "2027-03-12T12:15:00+00:00",
        "capacity": 2**63,
    },
)
@example(
    model=checkin_domain.ScanRequest,
    body={
        "code": "x",
        "gate": "main",
        "direction": "in",
        "nonce": "a1b2c3d4",
        "scanned_at": "0001-01-01T00:00:00+23:59",
    },
)
def test_an_api_body_is_a_model_that_can_be_stored_or_a_validation_error(model: type[BaseModel], body: Any) -> None:
    try:
        parsed = model.model_validate(body)
    except ValidationError:
        return
    for leaf in _leaves(parsed.model_dump()):
        if isinstance(leaf, int):
            assert -(2**63) <= leaf < 2**63, "an accepted number MongoDB cannot store"
        if isinstance(leaf, datetime):
            for where in (UTC, dates.zone("Pacific/Kiritimati"), dates.zone("Etc/GMT+12")):
                leaf.astimezone(where)


# --- The registration form ------------------------------------------------------------------------

FORM_NAMES = st.sampled_from(
    [*pages.FIELDS, *(f"answer-{q['code']}" for q in QUESTIONS), "form_token", "token"]
) | st.text(max_size=12)
FORM_VALUES = st.text(max_size=300) | st.sampled_from(
    ["yes", "no", "Other", "Headteacher", "Future heads", "SEND", "primary", "delegate", "w1", "", " "]
)
FORM_BODIES = st.lists(st.tuples(FORM_NAMES, FORM_VALUES), max_size=30).map(
    lambda pairs: urlencode(pairs).encode()
) | st.binary(max_size=3000)


def posted(body: bytes, chunk_size: int) -> Request:
    """A POSTed request whose body arrives in chunks, as a server hands it over."""
    chunks = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)] or [b""]

    async def receive() -> dict[str, Any]:
        if chunks:
            part = chunks.pop(0)
            return {"type": "http.request", "body": part, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    return Request(scope, receive)


def _registration_or_problems(form: pages.Form) -> None:
    questions = pages._questions(EVENT)
    values = pages._values(form, questions)
    problems = pages.Problems()
    registration = pages._registration_request(values, questions, EVENT, problems)
    assert (registration is None) == bool(problems), "refused without saying why, or accepted with a problem"
    for entry in problems.summary():
        assert entry["href"].startswith("#") and entry["message"]
    edit_problems = pages.Problems()
    update = pages._update_request(values, questions, EVENT, edit_problems)
    assert (update is None) == bool(edit_problems)


@QUICK
@given(body=FORM_BODIES, chunk_size=st.integers(min_value=1, max_value=4096))
async def test_any_posted_form_is_a_registration_or_a_page_of_problems(body: bytes, chunk_size: int) -> None:
    form = await pages._read_form(posted(body, chunk_size))
    _registration_or_problems(form)


async def test_a_form_body_past_the_limit_is_refused_before_it_is_all_read() -> None:
    with pytest.raises(pages.FormTooLarge):
        await pages._read_form(posted(b"name=" + b"a" * pages.MAX_FORM_BYTES, 8192))


@QUICK
@given(purpose=st.text(max_size=60), token=st.text(max_size=120))
@example(purpose="register:future-heads", token="1.a.é")
@example(purpose="register:future-heads", token="².nonce.mac")
def test_a_posted_form_token_that_was_never_issued_is_refused(purpose: str, token: str) -> None:
    assert pages.check_form_token(FORM_KEY, purpose, token, NOW) is None


@QUICK
@given(
    purpose=st.text(min_size=1, max_size=60),
    position=st.integers(min_value=0),
    replacement=st.characters(),
)
def test_an_issued_form_token_is_good_for_its_own_form_only_and_unaltered(
    purpose: str, position: int, replacement: str
) -> None:
    token = pages.issue_form_token(FORM_KEY, purpose, NOW)
    assert pages.check_form_token(FORM_KEY, purpose, token, NOW + timedelta(hours=1)) is not None
    assert pages.check_form_token(FORM_KEY, purpose + "x", token, NOW) is None
    assert pages.check_form_token(FORM_KEY, purpose, token, NOW + pages.FORM_TOKEN_LIFETIME + timedelta(1)) is None
    index = position % len(token)
    assume(token[index] != replacement)
    altered = token[:index] + replacement + token[index + 1 :]
    assert pages.check_form_token(FORM_KEY, purpose, altered, NOW) is None


# --- CSV imports ----------------------------------------------------------------------------------

CSV_COLUMNS = st.sampled_from([*csvfiles.IMPORT_COLUMNS, *(f"answer:{q['code']}" for q in QUESTIONS)]) | st.text(
    max_size=10
)
CSV_CELLS = st.text(max_size=60) | st.sampled_from(
    ["yes", "n", "Primary", "secondary", "Future heads", "SEND; Wellbeing", "w1 w2", "=SUM(A1)", "a@b.example"]
)


def _csv(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


CSV_FILES = st.builds(
    _csv,
    st.lists(CSV_COLUMNS, min_size=1, max_size=12, unique=True),
    st.lists(st.lists(CSV_CELLS, max_size=14), max_size=6),
) | st.text(max_size=500)


@QUICK
@given(text=CSV_FILES)
@example(text="name,email,organisation,role\n\x00,\x00,\x00,\x00\n")
@example(text='name,email,organisation,role\n"unclosed\n')
def test_an_import_file_is_rows_or_a_refusal_and_each_row_a_registration_or_a_reason(text: str) -> None:
    try:
        parsed = csvfiles.parse_import(text, QUESTIONS)
    except csvfiles.ImportRefused as refused:
        assert refused.status in (413, 422) and refused.code
        return
    for number, *cells in parsed.rows:
        assert isinstance(number, int) and number >= 2
        try:
            csvfiles.row_request(parsed.columns, cells, QUESTIONS)
        except ValueError as reason:
            assert str(reason)


# --- Events from the broker, time zones, sealed tokens, Authorization headers ---------------------

EVENT_KEYS = st.sampled_from(_field_names(list(events.MODELS.values()))) | st.text(max_size=8)
ENVELOPES = st.fixed_dictionaries(
    {
        "id": st.text(max_size=20) | SCALARS,
        "type": st.sampled_from(sorted(events.MODELS)) | st.text(max_size=20),
        "source": st.just("registration") | SCALARS,
        "time": AWARE_TIMES | SCALARS,
        "subject": st.text(max_size=20),
        "correlationid": st.text(max_size=20),
        "data": st.dictionaries(EVENT_KEYS, json_values(EVENT_KEYS), max_size=12) | SCALARS,
    },
    optional={"specversion": st.just("1.0") | SCALARS, "dataversion": SCALARS, "causationid": SCALARS},
)


@QUICK
@given(envelope=ENVELOPES)
def test_an_event_shaped_like_an_envelope_is_read_or_dead_lettered(envelope: dict[str, Any]) -> None:
    raw = json.dumps(envelope).encode()
    try:
        parsed = Envelope.from_bytes(raw)
    except MalformedEvent:
        return
    assert parsed.type in events.MODELS


ZONE_FOLDERS = st.sampled_from(["Europe", "America", "Etc", "posix", "right", "Europe/", "Europe/London/x", "a" * 300])


@QUICK
@given(name=st.text(max_size=80) | ZONE_FOLDERS | st.timezone_keys())
def test_any_time_zone_name_an_organiser_types_gives_a_zone(name: str) -> None:
    zone = dates.zone(name)
    assert isinstance(zone, tzinfo)
    assert dates.span(NOW, NOW + timedelta(hours=6), zone, with_zone=True)


@QUICK
@given(sealed=st.text(max_size=120), context=st.text(max_size=40))
def test_a_sealed_token_that_was_tampered_with_is_refused_as_broken(sealed: str, context: str) -> None:
    key = bytes(32)
    try:
        sealing.unseal(sealed, key, context)
    except sealing.SealBroken:
        return
    raise AssertionError("random text unsealed")


@QUICK
@given(secret=st.text(max_size=60), context=st.text(max_size=40), other=st.text(max_size=40))
def test_a_sealed_token_opens_only_for_its_own_record(secret: str, context: str, other: str) -> None:
    key = bytes(range(32))
    sealed = sealing.seal(secret, key, context)
    assert sealing.unseal(sealed, key, context) == secret
    if other != context:
        with pytest.raises(sealing.SealBroken):
            sealing.unseal(sealed, key, other)


@QUICK
@given(header=st.text(max_size=80) | st.builds("Bearer {}".format, st.text(max_size=60)))
def test_any_authorization_header_names_a_bearer_token_or_none(header: str) -> None:
    token = auth.bearer(header)
    assert token is None or (token and token == token.strip())
    assert auth.is_admin(header, "fuzz-organiser") == (token == "fuzz-organiser")
