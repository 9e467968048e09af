"""The HTTP plumbing every service shares: correlation ids, the request log line and its metric."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from prometheus_client import REGISTRY

from plenary_kit import web
from plenary_kit.web import CORRELATION_HEADER, correlation_id, install

SERVICE = "plumbing-test"


class Lines:
    """Stands in for the module's logger: what it was asked to log, one dict a line."""

    def __init__(self) -> None:
        self.lines: list[dict[str, object]] = []

    def _line(self, event: str, **fields: object) -> None:
        self.lines.append({"event": event, **fields})

    info = warning = error = exception = _line

    def named(self, event: str) -> list[dict[str, object]]:
        return [line for line in self.lines if line["event"] == event]


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> Lines:
    lines = Lines()
    monkeypatch.setattr(web, "log", lines)
    return lines


async def _all_ready() -> dict[str, bool]:
    return {"mongodb": True, "kafka": True}


def _app() -> FastAPI:
    app = FastAPI()
    install(app, SERVICE, _all_ready)

    @app.get("/events/{event_id}/badge")
    async def badge(event_id: str) -> dict[str, str]:
        return {"event_id": event_id, "correlation_id": correlation_id()}

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def parts() -> AsyncIterator[str]:
            for n in range(3):
                yield f"data: {n}\n\n"

        return StreamingResponse(parts(), media_type="text/event-stream")

    return app


def _client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://plenary.test")


def _requests_seen(route: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "plenary_http_request_seconds_count",
        {"service": SERVICE, "method": "GET", "route": route, "status": status},
    )
    return value or 0.0


async def test_a_sent_correlation_id_is_bound_for_the_request_and_returned(logged: Lines) -> None:
    before = _requests_seen("/events/{event_id}/badge", "200")
    async with _client(_app()) as http:
        reply = await http.get("/events/symposium-2026/badge", headers={CORRELATION_HEADER: "door-7-retry"})

    assert reply.status_code == 200
    assert reply.json() == {"event_id": "symposium-2026", "correlation_id": "door-7-retry"}
    assert reply.headers[CORRELATION_HEADER] == "door-7-retry"
    [line] = logged.named("http_request")
    assert line["route"] == "/events/{event_id}/badge"
    assert line["status"] == 200
    assert line["method"] == "GET"
    assert isinstance(line["ms"], float) and line["ms"] >= 0
    assert _requests_seen("/events/{event_id}/badge", "200") == before + 1


async def test_without_a_correlation_id_each_request_gets_its_own() -> None:
    async with _client(_app()) as http:
        first = await http.get("/events/e1/badge")
        second = await http.get("/events/e1/badge")

    ids = [reply.headers[CORRELATION_HEADER] for reply in (first, second)]
    assert ids[0] != ids[1]
    assert [reply.json()["correlation_id"] for reply in (first, second)] == ids
    for value in ids:
        uuid.UUID(value)


async def test_a_long_correlation_id_is_cut_to_64_characters() -> None:
    async with _client(_app()) as http:
        reply = await http.get("/events/e1/badge", headers={CORRELATION_HEADER: "x" * 200})

    assert reply.headers[CORRELATION_HEADER] == "x" * 64
    assert reply.json()["correlation_id"] == "x" * 64


async def test_an_unexpected_error_is_a_500_in_the_contract_shape_and_is_logged(logged: Lines) -> None:
    async with _client(_app()) as http:
        reply = await http.get("/broken")

    assert reply.status_code == 500
    assert reply.json()["code"] == "internal_error"
    assert "a bug" not in reply.text
    assert logged.named("unhandled_error") == [{"event": "unhandled_error", "error": "RuntimeError"}]
    [line] = logged.named("http_request")
    assert (line["route"], line["status"]) == ("/broken", 500)


async def test_a_stream_arrives_whole_with_its_correlation_id() -> None:
    async with _client(_app()) as http:
        reply = await http.get("/stream", headers={CORRELATION_HEADER: "dashboard-1"})

    assert reply.headers[CORRELATION_HEADER] == "dashboard-1"
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.text == "data: 0\n\ndata: 1\n\ndata: 2\n\n"


async def test_unknown_paths_and_operational_endpoints_are_not_logged_as_routes(logged: Lines) -> None:
    async with _client(_app()) as http:
        missing = await http.get("/nowhere")
        health = await http.get("/healthz")
        ready = await http.get("/readyz")

    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    assert missing.headers[CORRELATION_HEADER]
    assert health.json() == {"status": "ok", "service": SERVICE}
    assert ready.json() == {"status": "ready", "service": SERVICE}
    assert [(line["route"], line["status"]) for line in logged.named("http_request")] == [("unmatched", 404)]
