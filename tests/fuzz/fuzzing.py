"""What every API fuzz test shares: the run's settings, the seeded documents, the checks and the hooks."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import APIRouter, FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

ADMIN_TOKEN = "fuzz-organiser"
ORGANISER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

# Enough to reach every handler's refusals while the whole folder stays inside its time budget on two
# cores; PLENARY_FUZZ_EXAMPLES asks for more on a longer local hunt.
ORGANISER_EXAMPLES = int(os.environ.get("PLENARY_FUZZ_EXAMPLES", "25"))
ANONYMOUS_EXAMPLES = max(ORGANISER_EXAMPLES // 3, 1)

# Server-Sent Events never end; with the organiser's token the stream would hold the fuzzer forever.
STREAMS = r"/attendance/stream$"


# One app serves every example of an operation (see conftest.new_app): a function-scoped fixture on purpose.
# The first request to an app also starts it, so no deadline.
FUZZING = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def fuzz_config(max_examples: int, *, coverage: bool) -> schemathesis.Config:
    """Valid and invalid requests, the same ones every run, so a failure in CI can be rerun as it was.

    The coverage phase adds every schema boundary (the largest integer, the longest string, each
    parameter missing or of the wrong type) to the random examples.
    """
    return schemathesis.Config.from_dict(
        {
            "seed": 20270312,
            "generation": {"mode": "all", "max-examples": max_examples, "deterministic": True},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": coverage},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
            "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
            "request-timeout": 30,
        }
    )


@dataclass(frozen=True)
class Seeded:
    """Documents that exist in every service before fuzzing starts."""

    event_id: str
    registration_id: str
    manage_token: str
    ticket_id: str
    message_id: str
    device_id: str
    device_token: str

    @property
    def path_values(self) -> dict[str, str]:
        """Real values for the path parameters of every service, by parameter name."""
        return {
            "event_id": self.event_id,
            "registration_id": self.registration_id,
            "ticket_id": self.ticket_id,
            "message_id": self.message_id,
            "device_id": self.device_id,
        }


def error_shape(_: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """CONTRACT.md, Errors: every 4xx/5xx body is JSON with a string `code` and a string `message`."""
    if response.status_code < 400:
        return
    label = f"{case.operation.label} answered {response.status_code}"
    try:
        body = response.json()
    except ValueError as exc:
        raise AssertionError(f"{label} with a body that is not JSON") from exc
    assert isinstance(body, Mapping), f"{label} with a body that is not an object"
    assert isinstance(body.get("code"), str) and body["code"], f"{label} without a string code: {body!r}"
    assert isinstance(body.get("message"), str), f"{label} without a string message: {body!r}"


CHECKS: list[schemathesis.CheckFunction] = [not_a_server_error, error_shape]


class Seeds:
    """The seeded documents, once the session's `seeded` fixture has made them.

    Schemathesis needs the schemas when tests are collected, before any fixture runs; the hooks
    that mix real ids into generated requests read them from here when the examples are drawn.
    """

    current: Seeded | None = None


def openapi_document(router: APIRouter, title: str) -> dict[str, Any]:
    """A service's OpenAPI document as its app serves it at /openapi.json, built without starting the app.

    Each service app is `web.service_app`: this title, version 1.0.0 and the API router; everything
    else it mounts (health, metrics, pages) is left out of the schema. The fuzz fixtures check that the
    running app serves exactly this document.
    """
    app = FastAPI(title=title, version="1.0.0")
    app.include_router(router)
    return app.openapi()


def openapi_schema(document: dict[str, Any], max_examples: int, *, coverage: bool) -> schemathesis.BaseSchema:
    """The schema to fuzz, with the seeded ids and tokens mixed into the generated requests."""
    schema = schemathesis.openapi.from_dict(document, config=fuzz_config(max_examples, coverage=coverage))

    @schema.hook
    def flatmap_path_parameters(_: schemathesis.HookContext, path: dict[str, Any] | None) -> st.SearchStrategy[Any]:
        real = Seeds.current.path_values if Seeds.current else {}
        known = {name: real[name] for name in path or {} if name in real}
        return st.sampled_from([path, {**(path or {}), **known}]) if known else st.just(path)

    @schema.hook
    def flatmap_headers(_: schemathesis.HookContext, headers: dict[str, Any] | None) -> st.SearchStrategy[Any]:
        if Seeds.current is None or not headers:
            return st.just(headers)
        # A delegate's real manage token, and a door device's real token where an organiser's is wanted.
        real = {
            "x-manage-token": ("X-Manage-Token", Seeds.current.manage_token),
            "authorization": ("Authorization", f"Bearer {Seeds.current.device_token}"),
        }
        variants = [headers]
        for lower, (name, value) in real.items():
            if any(present.lower() == lower for present in headers):
                others = {present: text for present, text in headers.items() if present.lower() != lower}
                variants.append({**others, name: value})
        return st.sampled_from(variants)

    return schema


def service_tests(service: str, router: APIRouter) -> dict[str, Any]:
    """One service's fuzz tests and their `app` fixture, for the service's module to take into its namespace.

    Schemathesis parametrises a test from a schema known when the module is imported, so each service
    keeps a module of its own; what the tests do is the same for all four and lives here.
    """
    document = openapi_document(router, f"Plenary {service}")
    as_organiser = openapi_schema(document, ORGANISER_EXAMPLES, coverage=True).exclude(path_regex=STREAMS)
    # Without the organiser's token every operation answers 401 whatever else is sent: a few examples do.
    anonymously = openapi_schema(document, ANONYMOUS_EXAMPLES, coverage=False)

    @pytest.fixture
    def app(new_app: Callable[[str], FastAPI], seeded: Seeded) -> FastAPI:
        return new_app(service)

    def test_the_fuzzed_document_is_the_one_the_app_serves(new_app: Callable[[str], FastAPI]) -> None:
        assert new_app(service).openapi() == document

    @as_organiser.parametrize()
    @FUZZING
    def test_organiser_requests_never_break_the_service(case: schemathesis.Case, app: FastAPI) -> None:
        case.call_and_validate(app=app, headers=ORGANISER, checks=CHECKS)

    @anonymously.parametrize()
    @FUZZING
    def test_requests_without_the_organiser_token_are_refused_in_the_error_shape(
        case: schemathesis.Case, app: FastAPI
    ) -> None:
        case.call_and_validate(app=app, checks=CHECKS)

    return {
        "app": app,
        "test_the_fuzzed_document_is_the_one_the_app_serves": test_the_fuzzed_document_is_the_one_the_app_serves,
        "test_organiser_requests_never_break_the_service": test_organiser_requests_never_break_the_service,
        "test_requests_without_the_organiser_token_are_refused_in_the_error_shape": (
            test_requests_without_the_organiser_token_are_refused_in_the_error_shape
        ),
    }
