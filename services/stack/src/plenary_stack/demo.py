"""The demo symposium `make up` seeds, once, through the public API like any organiser would."""

from __future__ import annotations

from typing import Any

import httpx

DEMO_SLUG = "education-leadership-challenging-times"

DEMO_EVENT: dict[str, Any] = {
    "slug": DEMO_SLUG,
    "title": "Education Leadership in Challenging Times",
    "venue": "Centre for Educational Leadership, Liverpool",
    "starts_at": "2027-03-12T09:30:00+00:00",
    "ends_at": "2027-03-12T16:00:00+00:00",
    "timezone": "Europe/London",
    "capacity": 150,
    "ticket_types": [
        {"code": "delegate", "name": "Delegate"},
        {"code": "speaker", "name": "Speaker", "capacity": 12},
        {"code": "guest", "name": "Guest", "capacity": 20},
    ],
    "sessions": [
        {
            "code": "budgets",
            "title": "Leading through budget pressure",
            "starts_at": "2027-03-12T11:00:00+00:00",
            "ends_at": "2027-03-12T12:15:00+00:00",
            "capacity": 40,
        },
        {
            "code": "inclusion",
            "title": "Inclusion and SEND in mainstream schools",
            "starts_at": "2027-03-12T11:00:00+00:00",
            "ends_at": "2027-03-12T12:15:00+00:00",
            "capacity": 40,
        },
        {
            "code": "retention",
            "title": "Keeping good teachers: wellbeing and retention",
            "starts_at": "2027-03-12T13:30:00+00:00",
            "ends_at": "2027-03-12T14:45:00+00:00",
            "capacity": 40,
        },
    ],
}


def seed(registration_url: str, admin_token: str) -> dict[str, Any]:
    """Create the demo event unless it exists; returns it either way."""
    with httpx.Client(base_url=registration_url, timeout=10.0) as client:
        found = client.get("/api/v1/events", params={"slug": DEMO_SLUG})
        found.raise_for_status()
        if found.json():
            return found.json()[0]  # type: ignore[no-any-return]
        created = client.post(
            "/api/v1/events", json=DEMO_EVENT, headers={"Authorization": f"Bearer {admin_token}"}
        )
        if created.status_code == 409:
            return client.get("/api/v1/events", params={"slug": DEMO_SLUG}).json()[0]  # type: ignore[no-any-return]
        created.raise_for_status()
        return created.json()  # type: ignore[no-any-return]
