"""Schemathesis against the notifications service's OpenAPI: no 5xx, every error in the contract's shape.

Operations: the delivery log and resend.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import schemathesis
from fastapi import FastAPI
from fuzzing import (
    ANONYMOUS_EXAMPLES,
    CHECKS,
    FUZZING,
    ORGANISER,
    ORGANISER_EXAMPLES,
    STREAMS,
    Seeded,
    openapi_document,
    openapi_schema,
)

from notifications.api import router

pytestmark = pytest.mark.timeout(240)

DOCUMENT = openapi_document(router, "Plenary notifications")
as_organiser = openapi_schema(DOCUMENT, ORGANISER_EXAMPLES, coverage=True).exclude(path_regex=STREAMS)
# Without the organiser's token every operation answers 401 whatever else is sent: a few examples do.
anonymously = openapi_schema(DOCUMENT, ANONYMOUS_EXAMPLES, coverage=False)


@pytest.fixture
def app(new_app: Callable[[str], FastAPI], seeded: Seeded) -> FastAPI:
    return new_app("notifications")


def test_the_fuzzed_document_is_the_one_the_app_serves(new_app: Callable[[str], FastAPI]) -> None:
    assert new_app("notifications").openapi() == DOCUMENT


@as_organiser.parametrize()
@FUZZING
def test_organiser_requests_never_break_the_notifications_service(case: schemathesis.Case, app: FastAPI) -> None:
    case.call_and_validate(app=app, headers=ORGANISER, checks=CHECKS)


@anonymously.parametrize()
@FUZZING
def test_requests_without_the_organiser_token_are_refused_in_the_error_shape(
    case: schemathesis.Case, app: FastAPI
) -> None:
    case.call_and_validate(app=app, checks=CHECKS)
