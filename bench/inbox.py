"""Registration-to-inbox latency: delegates register at a steady rate; how soon is each ticket email in the inbox?

`Inbox` reads the embedded SMTP sink's Maildir as it fills (the surge benchmark uses it too).
Run `python -m bench.inbox --help`; prints one JSON object and writes it to
bench/results/inbox.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import default
from pathlib import Path
from typing import Any

import httpx

from bench.crowd import delegates
from bench.runner import run_benchmark, stack_config

RESULTS = Path(__file__).parent / "results" / "inbox.json"
TARGET = {"p99_ms": 2000}


@dataclass(frozen=True)
class Arrival:
    recipient: str
    carries_ticket: bool
    # When the sink wrote the file (seconds since the epoch).
    at: float


class Inbox:
    """Each call to `new_arrivals` reads only the messages delivered since the last call."""

    def __init__(self, maildir: Path) -> None:
        self._maildir = maildir
        self._seen: set[str] = set()
        self._headers = BytesHeaderParser(policy=default)

    def new_arrivals(self) -> list[Arrival]:
        found = []
        for folder in ("new", "cur"):
            directory = self._maildir / folder
            if not directory.is_dir():
                continue
            for path in directory.iterdir():
                # The sink may move a message from new/ to cur/; its unique name stays the same.
                unique = path.name.split(":", 1)[0]
                if unique in self._seen:
                    continue
                self._seen.add(unique)
                try:
                    raw, at = path.read_bytes(), path.stat().st_mtime
                except FileNotFoundError:
                    self._seen.discard(unique)
                    continue
                headers = self._headers.parsebytes(raw)
                # The sink records the SMTP envelope recipient; the ticket is the email's PNG image.
                recipient = str(headers.get("Delivered-To", "")).strip().lower()
                found.append(Arrival(recipient, b"image/png" in raw, at))
        return found


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))], 1)


def spread(values: list[float]) -> dict[str, float | None]:
    """p50, p90, p99 and max of `values`, in any order."""
    ordered = sorted(values)
    return {
        "p50": percentile(ordered, 0.50),
        "p90": percentile(ordered, 0.90),
        "p99": percentile(ordered, 0.99),
        "max": percentile(ordered, 1.0),
    }


@dataclass
class Attempt:
    """One delegate's registration as they saw it."""

    # When the POST went out and when its reply came back (seconds since the epoch).
    sent_at: float
    replied_at: float | None = None
    # The HTTP status, or the name of the client's error.
    status: int | str | None = None
    # The reply, for a registration accepted (201).
    body: dict[str, Any] = field(default_factory=dict)


def register_at_rate(
    http: httpx.AsyncClient, url: str, crowd: list[dict[str, Any]], rate: float, start: float
) -> tuple[dict[str, Attempt], list[asyncio.Task[None]]]:
    """Each delegate's POST on its schedule, `rate` a second from `start` (epoch), whatever earlier replies take.

    Open loop: a slow reply delays no one else. Attempts join the table, by address, as they are sent;
    the tasks end when every reply is in.
    """
    attempts: dict[str, Attempt] = {}

    async def register(delegate: dict[str, Any], at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.time()))
        attempt = attempts[delegate["email"].lower()] = Attempt(time.time())
        try:
            reply = await http.post(url, json=delegate)
        except httpx.HTTPError as exc:
            attempt.status = type(exc).__name__
            return
        attempt.replied_at, attempt.status = time.time(), reply.status_code
        if reply.status_code == 201:
            attempt.body = reply.json()

    tasks = [asyncio.create_task(register(delegate, start + n / rate)) for n, delegate in enumerate(crowd)]
    return attempts, tasks


async def create_event(http: httpx.AsyncClient, registration_url: str, admin_token: str, capacity: int) -> str:
    reply = await http.post(
        f"{registration_url}/api/v1/events",
        headers={"Authorization": f"Bearer {admin_token}"},
        json={
            "slug": f"inbox-latency-{uuid.uuid4().hex[:8]}",
            "title": "Education Leadership in Challenging Times",
            "venue": "The Spine, 2 Paddington Village, Liverpool",
            "starts_at": "2027-06-17T09:30:00+01:00",
            "ends_at": "2027-06-17T16:00:00+01:00",
            "timezone": "Europe/London",
            "capacity": capacity,
            "organiser_contact": "leadership-centre@university.example",
        },
    )
    reply.raise_for_status()
    return str(reply.json()["id"])


async def one_run(http: httpx.AsyncClient, stack: Any, args: argparse.Namespace, number: int) -> dict[str, Any]:
    """`args.registrations` delegates at `args.rate` per second, open loop: a slow reply delays no one else."""
    registration_url = stack.config.url("registration")
    event_id = await create_event(http, registration_url, stack.admin_token, args.registrations)
    inbox = Inbox(stack.config.maildir)
    inbox.new_arrivals()  # earlier runs' emails are not this run's
    crowd = delegates(args.registrations, tag=f"inbox{number}{uuid.uuid4().hex[:4]}")
    started = time.time() + 0.5
    attempts, tasks = register_at_rate(
        http, f"{registration_url}/api/v1/events/{event_id}/registrations", crowd, args.rate, started
    )
    arrived: dict[str, float] = {}
    doubled = 0
    deadline = started + args.registrations / args.rate + args.settle_timeout
    while time.time() < deadline:
        for arrival in inbox.new_arrivals():
            if not arrival.carries_ticket:
                continue
            if arrival.recipient in arrived:
                doubled += 1
            arrived.setdefault(arrival.recipient, arrival.at)
        if all(task.done() for task in tasks) and len(arrived) >= len(attempts):
            break
        await asyncio.sleep(0.05)
    await asyncio.gather(*tasks)
    sent_at = {address: attempt.sent_at for address, attempt in attempts.items()}
    finished = max(sent_at.values())
    latencies = [(arrived[address] - at) * 1000 for address, at in sent_at.items() if address in arrived]
    accepted = sum(1 for attempt in attempts.values() if attempt.status == 201)
    return {
        "registrations": len(sent_at),
        "accepted": accepted,
        "offered_rate_per_second": round(len(sent_at) / max(finished - started, 1e-9), 1),
        "emails_arrived": len(arrived),
        "emails_missing": len(sent_at) - len(arrived),
        "emails_doubled": doubled,
        "latency_ms": spread(latencies),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.inbox", description=__doc__)
    parser.add_argument("--rate", type=float, default=50.0, help="registrations per second [50]")
    parser.add_argument("--registrations", type=int, default=500, help="registrations per run [500]")
    parser.add_argument("--runs", type=int, default=3, help="runs, each against a fresh event [3]")
    parser.add_argument(
        "--send-rate", type=float, default=None, help="the notifications service's send rate [its default]"
    )
    parser.add_argument("--settle-timeout", type=float, default=120, help="seconds to wait for emails [120]")
    parser.add_argument("--keep", action="store_true", help="keep the stack's var directory (logs, data, mail)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"where to write the JSON [{RESULTS}]")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.registrations < 1 or args.runs < 1:
        parser.error("--rate, --registrations and --runs must be positive")
    return args


async def all_runs(stack: Any, args: argparse.Namespace, runs: list[dict[str, Any]]) -> None:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as http:
        for number in range(1, args.runs + 1):
            print(f"run {number}/{args.runs}: {args.registrations} at {args.rate:g}/s", file=sys.stderr)
            runs.append(await one_run(http, stack, args, number))
            print(json.dumps(runs[-1]), file=sys.stderr)


def report(args: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, Any]:
    p50s = [run["latency_ms"]["p50"] for run in runs if run["latency_ms"]["p50"] is not None]
    p99s = [run["latency_ms"]["p99"] for run in runs if run["latency_ms"]["p99"] is not None]
    median = {
        "p50_ms": round(statistics.median(p50s), 1) if p50s else None,
        "p99_ms": round(statistics.median(p99s), 1) if p99s else None,
    }
    complete = all(run["emails_missing"] == 0 and run["emails_doubled"] == 0 for run in runs)
    return {
        "benchmark": "registration_to_inbox",
        "parameters": {k: args.__dict__[k] for k in ("rate", "registrations", "runs", "send_rate")},
        "runs_completed": len(runs),
        "target": TARGET,
        "meets_target": complete and median["p99_ms"] is not None and median["p99_ms"] < TARGET["p99_ms"],
        "median": median,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    send_rate = {"NOTIFICATIONS_SEND_RATE": f"{args.send_rate:g}"} if args.send_rate is not None else {}
    return run_benchmark(
        "inbox",
        lambda var: stack_config(var, send_rate),
        lambda stack, runs: all_runs(stack, args, runs),
        lambda runs: report(args, runs),
        args.output,
        keep=args.keep,
    )


if __name__ == "__main__":
    sys.exit(main())
