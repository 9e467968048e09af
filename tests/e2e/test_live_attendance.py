"""Live attendance over the real servers: the organiser's stream moves within a second of a scan."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from journey import create_event, organiser, register, ticket_of

from plenary_stack.stack import EmbeddedStack

pytestmark = pytest.mark.timeout(240)

GATES = ("Main entrance", "North", "South", "Car park", "Stage door")


async def attendance_frames(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The `attendance` events of a Server-Sent Events response, as they arrive."""
    kind, data = "", []
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            kind = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            data.append(line.partition(":")[2].strip())
        elif not line:
            if kind == "attendance" and data:
                yield json.loads("\n".join(data))
            kind, data = "", []


async def test_stream_shows_a_scan_within_a_second_and_five_gates_admit_once(stack: EmbeddedStack) -> None:
    checkin = stack.config.url("checkin")
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=30.0)) as http:
        event_id = await create_event(http, stack)
        delegates = [
            await register(http, stack, event_id, f"leader.{index}.{uuid.uuid4().hex[:6]}@knowsley-primary.example")
            for index in range(2)
        ]
        codes = [(await ticket_of(http, stack, delegate))["code"] for delegate in delegates]
        doors = []
        for gate in GATES:
            created = await http.post(
                f"{checkin}/api/v1/events/{event_id}/devices",
                headers=organiser(stack),
                json={"name": f"{gate} phone", "gates": [gate]},
            )
            assert created.status_code == 201, created.text
            doors.append((gate, {"Authorization": f"Bearer {created.json()['token']}"}))

        async def scan(code: str, gate: str, headers: dict[str, str]) -> dict[str, Any]:
            body = {"code": code, "gate": gate, "direction": "in", "nonce": uuid.uuid4().hex}
            reply = await http.post(f"{checkin}/api/v1/events/{event_id}/scans", headers=headers, json=body)
            assert reply.status_code == 200, reply.text
            return reply.json()  # type: ignore[no-any-return]

        # The projection learns of the tickets through Kafka; the snapshot shows when it has.
        async def projected() -> bool:
            snapshot = await http.get(f"{checkin}/api/v1/events/{event_id}/snapshot", headers=organiser(stack))
            return len(snapshot.json()["tickets"]) == len(codes)

        deadline = time.monotonic() + 60
        while not await projected():
            assert time.monotonic() < deadline, "the checkin projection never saw the tickets"
            await asyncio.sleep(0.2)

        stream_url = f"{checkin}/api/v1/events/{event_id}/attendance/stream"
        async with http.stream("GET", stream_url, headers=organiser(stack)) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            frames = attendance_frames(response)
            first = await anext(frames)
            assert (first["registered"], first["admitted"]) == (2, 0)

            # One delegate at all five gates at once: exactly one admission.
            replies = await asyncio.gather(*(scan(codes[0], gate, headers) for gate, headers in doors))
            answered = time.monotonic()
            verdicts = sorted(reply["verdict"] for reply in replies)
            assert verdicts == ["admitted"] + ["already_admitted"] * 4

            seen = await asyncio.wait_for(_until(frames, lambda f: f["admitted"] == 1), timeout=5)
            assert time.monotonic() - answered < 1.0, "the stream took over a second to show the scan"
            assert (seen["inside"], seen["no_shows"], sum(seen["by_gate"].values())) == (1, 1, 1)

            await scan(codes[1], "North", doors[1][1])
            answered = time.monotonic()
            seen = await asyncio.wait_for(_until(frames, lambda f: f["admitted"] == 2), timeout=5)
            assert time.monotonic() - answered < 1.0
            assert seen["by_gate"].get("North", 0) >= 1 and seen["no_shows"] == 0

            # A registration reaches the figures through the consumer, not a scan here: the reader
            # notices the event's version move and the stream shows one more registered, not yet come.
            await register(http, stack, event_id, f"late.{uuid.uuid4().hex[:6]}@halton-high.example")
            seen = await asyncio.wait_for(_until(frames, lambda f: f["registered"] == 3), timeout=30)
            assert (seen["admitted"], seen["no_shows"]) == (2, 1)


async def _until(frames: AsyncIterator[dict[str, Any]], wanted: Any) -> dict[str, Any]:
    async for frame in frames:
        if wanted(frame):
            return frame
    raise AssertionError("the stream ended")
