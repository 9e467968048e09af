"""Rate limits on the public registration and the door: 429 with Retry-After, per client, others unaffected."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from checkin.api import SCANS
from checkin.main import create_app as checkin_app
from plenary_kit.settings import ServiceSettings
from plenary_stack.stack import EmbeddedStack
from registration.api import PUBLIC_REGISTRATION
from registration.main import create_app as registration_app

pytestmark = pytest.mark.timeout(120)

ADMIN = {"Authorization": "Bearer test-admin"}
DB_PREFIX = f"plenary_test_limits_{uuid.uuid4().hex[:8]}"


def settings(infrastructure: EmbeddedStack, var: Any) -> ServiceSettings:
    # No relay or consumers: only the HTTP side is under test, and nothing reaches the shared broker.
    return ServiceSettings(
        kafka_bootstrap_servers=infrastructure.config.bootstrap,
        mongodb_uri=infrastructure.config.mongo,
        plenary_db_prefix=DB_PREFIX,
        plenary_var=var,
        plenary_admin_token="test-admin",
        plenary_roles="api",
        plenary_rate_limits="on",
    )


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[FastAPI]:
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.runtime.prepared.wait(), 30)
        yield app


def client(app: FastAPI, address: str, base_url: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url=base_url, timeout=30)


@pytest.fixture
def frozen_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """No allowance comes back while a test runs, however slowly the machine serves its requests."""
    for limit in (PUBLIC_REGISTRATION, SCANS):
        monkeypatch.setattr(limit._buckets, "_clock", lambda: 1000.0)


@pytest.mark.usefixtures("frozen_time")
async def test_public_registration_allows_a_burst_per_client_then_429(
    infrastructure: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    app = registration_app(settings(infrastructure, tmp_path_factory.mktemp("limits-registration")))
    async with running(app), client(app, "203.0.113.7", "http://registration") as school, client(
        app, "198.51.100.20", "http://registration"
    ) as elsewhere:
        created = await school.post(
            "/api/v1/events",
            headers=ADMIN,
            json={
                "slug": f"leadership-{uuid.uuid4().hex[:8]}",
                "title": "Education Leadership in Challenging Times",
                "venue": "Foresight Centre, Liverpool",
                "starts_at": "2027-03-12T09:30:00+00:00",
                "ends_at": "2027-03-12T16:00:00+00:00",
                "timezone": "Europe/London",
                "capacity": 200,
            },
        )
        assert created.status_code == 201, created.text
        event = created.json()
        url = f"/api/v1/events/{event['id']}/registrations"

        def person(n: int, school: str) -> dict[str, Any]:
            return {
                "name": f"Teacher {n}",
                "email": f"teacher.{n}@{school}.example",
                "organisation": "Kirkby Primary School",
                "role": "teacher",
                "consent": True,
            }

        burst = [await school.post(url, json=person(n, "kirkby")) for n in range(30)]
        refused = await school.post(url, json=person(30, "kirkby"))
        other = await elsewhere.post(url, json=person(0, "huyton"))
        page = await school.post(f"/events/{event['slug']}/register", data={"name": "Teacher 31"})

        assert [reply.status_code for reply in burst] == [201] * 30
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 2
        assert other.status_code == 201, "another school's connection has its own allowance"
        assert page.status_code == 429 and "Retry-After" in page.headers
        assert "text/html" in page.headers["content-type"] and "Please wait" in page.text
        # Organiser calls are not limited.
        assert (await school.get(f"/api/v1/events/{event['id']}/registrations", headers=ADMIN)).status_code == 200


@pytest.mark.usefixtures("frozen_time")
async def test_each_door_device_has_its_own_scan_allowance(
    infrastructure: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    app = checkin_app(settings(infrastructure, tmp_path_factory.mktemp("limits-checkin")))
    event_id = str(uuid.uuid4())
    async with running(app), client(app, "192.0.2.10", "http://checkin") as http:
        tokens = []
        for gate in ("North", "South"):
            device = await http.post(
                f"/api/v1/events/{event_id}/devices", headers=ADMIN, json={"name": f"{gate} phone", "gates": [gate]}
            )
            tokens.append(device.json()["token"])

        async def scan(token: str, gate: str) -> httpx.Response:
            body = {"code": "NOT-A-TICKET", "gate": gate, "direction": "in", "nonce": uuid.uuid4().hex}
            headers = {"Authorization": f"Bearer {token}"}
            return await http.post(f"/api/v1/events/{event_id}/scans", json=body, headers=headers)

        # A runaway client: 300 at once. A whole offline queue's worth (200) goes through, the rest wait.
        replies = await asyncio.gather(*(scan(tokens[0], "North") for _ in range(300)))
        other_device = await scan(tokens[1], "South")

        statuses = [reply.status_code for reply in replies]
        assert (statuses.count(200), statuses.count(429)) == (200, 100)
        refused = next(reply for reply in replies if reply.status_code == 429)
        assert refused.json()["code"] == "rate_limited" and int(refused.headers["Retry-After"]) >= 1
        assert other_device.status_code == 200
