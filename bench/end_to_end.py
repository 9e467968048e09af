"""Registration to scan-ready: from pressing "register" until the ticket email is in and the door would admit.

Delegates register at a steady rate (open loop) for one event with places for all. For each one,
from the moment their POST was sent: the reply, the ticket issued (ticketing's `issued_at`), the
ticket email in the Maildir (the file's modification time) and scan-ready, when the organiser's
delta sync of the check-in snapshot first lists their ticket as valid. Ready is the later of the
email and scan-ready. Then one phone scans every delegate once, to show that scan-ready was real.

Run `python -m bench.end_to_end --help`. Prints one JSON object and writes it to
bench/results/end_to_end.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from bench.crowd import delegates
from bench.inbox import Inbox, create_event, register_at_rate, spread
from bench.registration_surge import load_average, median_of, run_described, wait_for_emails, wait_for_tickets
from bench.runner import stack_config
from bench.scan_latency import Doors, Outcome, PlannedScan, collect_codes, enrol_phones, gate_names, scan_once
from plenary_stack.stack import EmbeddedStack

RESULTS = Path(__file__).parent / "results" / "end_to_end.json"
# How often the organiser's delta sync asks the check-in service what changed: scan-ready times are
# the moment a reply listing the ticket was read, so they are late by up to this much plus one request.
POLL_SECONDS = 0.2
STAGES = ("reply", "ticket", "email", "scan_ready", "ready")


class CheckinWatch:
    """The organiser's delta sync of an event's check-in snapshot: when each registration first shows a valid ticket.

    Each request sends back the version of the last reply (`since`) and gets only the tickets
    changed after it, as a door device keeps its offline copy up to date.
    """

    def __init__(self, http: httpx.AsyncClient, stack: EmbeddedStack, event_id: str) -> None:
        self._http = http
        self._url = f"{stack.config.url('checkin')}/api/v1/events/{event_id}/snapshot"
        self._organiser = {"Authorization": f"Bearer {stack.admin_token}"}
        self.version = 0
        self.polls = 0
        # Registration id -> when a reply first listed its ticket as valid (seconds since the epoch).
        self.known: dict[str, float] = {}

    async def poll(self) -> None:
        reply = await self._http.get(self._url, params={"since": self.version}, headers=self._organiser)
        reply.raise_for_status()
        read_at = time.time()
        snapshot = reply.json()
        for row in snapshot["tickets"]:
            if row["status"] == "valid":
                self.known.setdefault(row["registration_id"], read_at)
        self.version = int(snapshot["version"])
        self.polls += 1

    async def follow(self, interval: float, registration_ids: set[str] | None = None, deadline: float = 0.0) -> None:
        """Poll every `interval` seconds: until cancelled, or until every one of `registration_ids` is known or
        the deadline (monotonic) passes."""
        while True:
            began = time.monotonic()
            await self.poll()
            if registration_ids is not None and (registration_ids <= self.known.keys() or began > deadline):
                return
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))


async def scan_everyone(
    doors: Doors, event_id: str, codes: list[str], gates: list[str], in_flight: int
) -> list[Outcome]:
    """Every code scanned in once, closed loop: `in_flight` scans at a time, the gates taking turns."""
    path = f"/api/v1/events/{event_id}/scans"
    plan = iter(
        [
            PlannedScan(
                0.0,
                "first_entry",
                gates[n % len(gates)],
                {"code": code, "gate": gates[n % len(gates)], "direction": "in", "nonce": uuid.uuid4().hex},
                "admitted",
            )
            for n, code in enumerate(codes)
        ]
    )
    outcomes: list[Outcome] = []

    async def queue_at_the_doors() -> None:
        for scan in plan:
            outcomes.append(await scan_once(doors, path, scan))

    await asyncio.gather(*(queue_at_the_doors() for _ in range(in_flight)))
    return outcomes


def scan_summary(outcomes: list[Outcome]) -> dict[str, Any]:
    """What the doors said: verdicts, how many were admitted, scans without a verdict, verdict latency."""
    answered = [o for o in outcomes if o.verdict is not None and o.replied is not None]
    return {
        "scanned": len(outcomes),
        "admitted": sum(1 for o in answered if o.verdict == "admitted"),
        "verdicts": dict(Counter(o.verdict for o in answered)),
        "errors_by_kind": dict(Counter(o.error for o in outcomes if o.error is not None)),
        "verdict_latency_ms": spread([(o.replied - o.sent) * 1000 for o in answered if o.replied is not None]),
    }


async def one_run(stack: EmbeddedStack, args: argparse.Namespace, number: int) -> dict[str, Any]:
    registration = stack.config.url("registration")
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.config.mongo, tz_aware=True, maxIdleTimeMS=60_000)
    doors: Doors | None = None
    try:
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as http:
            event_id = await create_event(http, registration, stack.admin_token, args.registrations)
            inbox = Inbox(stack.config.maildir)
            inbox.new_arrivals()  # earlier runs' emails are not this run's
            watch = CheckinWatch(http, stack, event_id)
            watcher = asyncio.create_task(watch.follow(POLL_SECONDS))
            crowd = delegates(args.registrations, tag=f"e2e{number}{uuid.uuid4().hex[:4]}", seed=number)
            load_before = load_average()
            start = time.time() + 0.5
            attempts, tasks = register_at_rate(
                http, f"{registration}/api/v1/events/{event_id}/registrations", crowd, args.rate, start
            )
            try:
                await asyncio.gather(*tasks)
                print(f"  {len(attempts)} registrations sent in {time.time() - start:.1f} s", file=sys.stderr)
                accepted = {address: a for address, a in attempts.items() if a.status == 201}
                address_of = {a.body["id"]: address for address, a in accepted.items()}
                deadline = time.monotonic() + args.settle_timeout
                # An email needs its ticket, so once every email is in, the tickets are there to read at once.
                emailed = await wait_for_emails(
                    inbox, {address: a.body["status"] for address, a in accepted.items()}, deadline
                )
                tickets = mongo[f"{stack.config.db_prefix}_ticketing"]["tickets"]
                issued = await wait_for_tickets(tickets, event_id, dict.fromkeys(address_of, 0.0), deadline)
            finally:
                watcher.cancel()
                (ended,) = await asyncio.gather(watcher, return_exceptions=True)
            if isinstance(ended, Exception):
                raise ended
            await watch.follow(POLL_SECONDS, set(address_of), deadline)
            settled = time.time()
            print(
                f"  {len(issued)} tickets, {len(emailed)} emails, {len(watch.known)} scan-ready "
                f"{settled - start:.1f} s after the first registration",
                file=sys.stderr,
            )

            codes = await collect_codes(
                http, stack, [a.body for a in accepted.values()], time.monotonic() + args.settle_timeout
            )
            gates = gate_names(1)
            tokens = await enrol_phones(http, stack, event_id, gates)
            doors = Doors(stack.config.url("checkin"), tokens, timeout=args.scan_timeout)
            scanning_began = time.perf_counter()
            outcomes = await scan_everyone(doors, event_id, list(codes.values()), gates, args.scan_concurrency)
            scanning_seconds = time.perf_counter() - scanning_began
    finally:
        if doors is not None:
            await doors.close()
        await mongo.close()

    # Each stage: address -> when that delegate reached it (seconds since the epoch).
    moments: dict[str, dict[str, float]] = {
        "reply": {address: a.replied_at for address, a in accepted.items() if a.replied_at is not None},
        "ticket": {address_of[rid]: issued_at.timestamp() for rid, issued_at in issued.items()},
        "email": emailed,
        "scan_ready": {address_of[rid]: seen for rid, seen in watch.known.items() if rid in address_of},
    }
    moments["ready"] = {
        address: max(at, moments["scan_ready"][address])
        for address, at in emailed.items()
        if address in moments["scan_ready"]
    }
    sent_at = {address: attempt.sent_at for address, attempt in attempts.items()}
    first = min(sent_at.values())
    scans = scan_summary(outcomes)
    ready = list(moments["ready"].values())
    return {
        "event_id": event_id,
        "registrations": len(attempts),
        "accepted": len(accepted),
        "errors_by_status": dict(Counter(str(a.status) for a in attempts.values() if a.status != 201)),
        "offered_rate_per_second": round((len(sent_at) - 1) / max(max(sent_at.values()) - first, 1e-9), 1),
        "stages_ms": {
            stage: spread([(at - sent_at[address]) * 1000 for address, at in moments[stage].items()])
            for stage in STAGES
        },
        "missing": {stage: len(attempts) - len(moments[stage]) for stage in STAGES},
        "seconds_until_everyone_ready": (
            round(max(ready) - first, 2) if len(ready) == len(attempts) else None
        ),
        "snapshot_polls": watch.polls,
        "scans": {**scans, "scans_per_second": round(len(outcomes) / scanning_seconds, 1)},
        "load_average": {"before": load_before, "after": load_average()},
    }


def complete(run: dict[str, Any]) -> bool:
    """Nothing missing at any stage, and the door admitted every delegate."""
    return (
        not any(run["missing"].values())
        and run["scans"]["admitted"] == run["registrations"] == run["scans"]["scanned"]
    )


def heading(args: argparse.Namespace, _: int) -> str:
    return f"{args.registrations} at {args.rate:g}/s"


def report(args: argparse.Namespace, description: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    median = median_of(runs)
    return {
        "benchmark": "end_to_end",
        "parameters": {
            k: args.__dict__[k] for k in ("rate", "registrations", "runs", "scan_concurrency", "settle_timeout")
        },
        "runs_completed": len(runs),
        # No target is set for these latencies; complete means no delegate missed any stage and every scan admitted.
        "meets_target": {"complete": all(complete(run) for run in runs)},
        "scan_ready_resolution_s": POLL_SECONDS,
        "stages_ms": median.get("stages_ms"),
        "missing": median.get("missing"),
        "machine": description,
        "median": median,
        "runs": runs,
    }


def add_waiting_options(
    parser: argparse.ArgumentParser, settle_timeout: float, scan_timeout: float, output: Path
) -> None:
    """How long to wait for the stack and the doors, and what to keep and where to write."""
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=settle_timeout,
        help=f"seconds to wait for tickets, emails and check-in [{settle_timeout:g}]",
    )
    parser.add_argument(
        "--scan-timeout",
        type=float,
        default=scan_timeout,
        help=f"seconds before a scan counts as an error [{scan_timeout:g}]",
    )
    parser.add_argument("--keep", action="store_true", help="keep the stack's var directory (logs, data, mail)")
    parser.add_argument("--output", type=Path, default=output, help=f"where to write the JSON [{output}]")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.end_to_end", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="registrations per second [20]")
    parser.add_argument("--registrations", type=int, default=400, help="registrations per run, all with a place [400]")
    parser.add_argument("--runs", type=int, default=1, help="runs, each against a fresh event [1]")
    parser.add_argument("--scan-concurrency", type=int, default=8, help="scans in flight from the one phone [8]")
    add_waiting_options(parser, settle_timeout=180, scan_timeout=10, output=RESULTS)
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.registrations < 1 or args.runs < 1 or args.scan_concurrency < 1:
        parser.error("--rate, --registrations, --runs and --scan-concurrency must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_described("e2e", parse_args(argv), stack_config, one_run, heading, report)


if __name__ == "__main__":
    sys.exit(main())
