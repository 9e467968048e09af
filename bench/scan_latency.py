"""Scan latency at the doors: phones at five gates scan at a steady rate while the organiser's dashboard watches.

Each run registers a crowd for a fresh event, waits until every delegate has a ticket, the check-in
service knows them and their ticket emails have gone, enrols one phone per gate, then scans on a
fixed schedule (open loop: a slow reply delays no later scan): everyone's first entry, then the
day's mix of repeat scans, exits, re-entries and a few forged codes. It measures the verdict
latency each phone sees and how long each first admission takes to show on the organiser's live
attendance stream.

Run `python -m bench.scan_latency --help`. Prints one JSON object and writes it to
bench/results/scan_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import string
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from bench.crowd import delegates
from bench.http1 import Connection, Http1Error, Pool
from bench.inbox import Inbox, create_event
from bench.registration_surge import (
    cpu_seconds,
    document_server_requests,
    load_average,
    median_of,
    percentiles,
    processes,
    run_described,
    run_surge,
)
from bench.runner import stack_config
from plenary_kit import ticketcode
from plenary_stack.stack import EmbeddedStack

RESULTS = Path(__file__).parent / "results" / "scan_latency.json"
TARGET = {"verdict_p99_ms": 50, "scan_to_dashboard_p99_ms": 500}
# What the day brings after the doors open, by share of scans: someone already inside scanned again,
# someone going out, someone coming back in, and a forged code.
MIX = {"repeat": 0.45, "exit": 0.25, "reentry": 0.25, "forged": 0.05}
# No delegate is scanned twice within this many seconds, so each scan's verdict is known in advance.
SAME_DELEGATE_GAP = 1.0
# How long the dashboard may take to catch up once the last scan is answered.
DASHBOARD_GRACE = 5.0
# After the load, the check-in service counts as idle once it has decided no scan for this long.
IDLE_SECONDS = 2.0


class Doors:
    """Each gate's phone keeps idle keep-alive connections; a scan due while all are busy opens another.

    A real phone waits for one verdict before the next scan; here the gates together must keep a
    schedule whatever the replies take, so a gate never queues a scan behind a slow one.
    """

    def __init__(self, url: str, tokens: dict[str, str], timeout: float) -> None:
        self._gates = {
            gate: Pool(url, timeout, {"Authorization": f"Bearer {token}"}, retry_stale=True)
            for gate, token in tokens.items()
        }

    def take(self, gate: str) -> Connection:
        return self._gates[gate].take()

    def give(self, gate: str, connection: Connection) -> None:
        self._gates[gate].give(connection)

    @property
    def opened(self) -> int:
        return sum(pool.opened for pool in self._gates.values())

    async def close(self) -> None:
        await asyncio.gather(*(pool.close() for pool in self._gates.values()))


@dataclass(frozen=True)
class PlannedScan:
    offset: float  # seconds after the start of the load
    kind: str  # first_entry, repeat, exit, reentry or forged
    gate: str
    payload: dict[str, Any]
    expected: str


@dataclass
class Outcome:
    scan: PlannedScan
    # perf_counter() times: when the request was written, when its reply was read.
    sent: float
    replied: float | None = None
    verdict: str | None = None
    error: str | None = None


@dataclass
class Dashboard:
    """The `attendance` frames of the organiser's stream: when each arrived and its admitted figure."""

    frames: list[tuple[float, int]] = field(default_factory=list)
    reconnections: int = 0
    moved: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, admitted: int) -> None:
        self.frames.append((time.perf_counter(), admitted))
        self.moved.set()

    async def showing(self, admitted: int) -> None:
        """Until a frame shows at least `admitted` (0: until the first frame)."""
        while not self.frames or self.frames[-1][1] < admitted:
            self.moved.clear()
            await self.moved.wait()


def forged(code: str) -> str:
    """A genuine code with one bit of its signature changed: well formed, but not signed by the organiser."""
    raw = bytearray(base64.b32decode(code + "=" * (-len(code) % 8)))
    raw[-1] ^= 0x01
    return ticketcode.text_of(bytes(raw))


def plan_scans(
    codes: list[str], gates: list[str], rate: float, duration: float, rng: random.Random
) -> list[PlannedScan]:
    """Everyone's first entry, then the mix, one scan every 1/rate seconds.

    Whether a delegate is inside is tracked as the plan is made, and a delegate is not scanned again
    within SAME_DELEGATE_GAP, so every scan's verdict is known before it is sent.
    """
    total = round(rate * duration)
    inside = dict.fromkeys(range(len(codes)), False)
    last_scanned = dict.fromkeys(range(len(codes)), -SAME_DELEGATE_GAP)
    first_entries = list(range(len(codes)))
    rng.shuffle(first_entries)
    kinds, weights = list(MIX), list(MIX.values())
    plan = []
    for number in range(total):
        offset = number / rate
        gate = rng.choice(gates)
        if number < len(first_entries):
            kind, who = "first_entry", first_entries[number]
        else:
            kind = rng.choices(kinds, weights)[0]
            ready = [n for n in range(len(codes)) if offset - last_scanned[n] >= SAME_DELEGATE_GAP]
            wanted = {"repeat": True, "exit": True, "reentry": False}.get(kind)
            matching = [n for n in ready if wanted is None or inside[n] == wanted]
            if not matching:
                # Nobody in the state this kind needs: scan someone ready in whatever state they are.
                matching = ready or list(range(len(codes)))
                who = rng.choice(matching)
                kind = "repeat" if inside[who] else "reentry"
            else:
                who = rng.choice(matching)
        direction = "out" if kind == "exit" else "in"
        code = forged(codes[who]) if kind == "forged" else codes[who]
        expected = {
            "first_entry": "admitted",
            "repeat": "already_admitted",
            "exit": "exited",
            "reentry": "admitted",
            "forged": "invalid_signature",
        }[kind]
        if kind != "forged":
            last_scanned[who] = offset
            inside[who] = kind != "exit"
        payload = {"code": code, "gate": gate, "direction": direction, "nonce": uuid.uuid4().hex}
        plan.append(PlannedScan(offset, kind, gate, payload, expected))
    return plan


async def scan_once(doors: Doors, path: str, scan: PlannedScan) -> Outcome:
    """One scan from its gate's phone: the verdict, or why there was none."""
    connection = doors.take(scan.gate)
    outcome = Outcome(scan, sent=time.perf_counter())
    try:
        status, raw = await connection.post_json(path, scan.payload)
        outcome.replied = time.perf_counter()
        if status == 200:
            outcome.verdict = str(json.loads(raw)["verdict"])
        else:
            outcome.error = str(status)
    except (Http1Error, OSError, TimeoutError, ValueError, KeyError) as exc:
        outcome.error = type(exc).__name__
        # The connection may hold half a reply: start afresh next time.
        await connection.close()
    doors.give(scan.gate, connection)
    return outcome


async def scan_on_schedule(doors: Doors, path: str, plan: list[PlannedScan]) -> tuple[list[Outcome], float]:
    """Start every scan at its time, whether or not earlier ones have been answered; returns the start."""
    start = time.perf_counter() + 0.2
    tasks = []
    for scan in plan:
        delay = start + scan.offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(scan_once(doors, path, scan)))
    return list(await asyncio.gather(*tasks)), start


async def watch_dashboard(http: httpx.AsyncClient, url: str, headers: dict[str, str], dashboard: Dashboard) -> None:
    """Read the attendance stream until cancelled, reconnecting if it drops."""
    while True:
        try:
            async with http.stream("GET", url, headers=headers, timeout=httpx.Timeout(10.0, read=None)) as reply:
                reply.raise_for_status()
                kind, data = "", []
                async for line in reply.aiter_lines():
                    if line.startswith("event:"):
                        kind = line.partition(":")[2].strip()
                    elif line.startswith("data:"):
                        data.append(line.partition(":")[2].strip())
                    elif not line:
                        if kind == "attendance" and data:
                            dashboard.add(int(json.loads("\n".join(data))["admitted"]))
                        kind, data = "", []
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            print(f"attendance stream: {type(exc).__name__}; reconnecting", file=sys.stderr)
        dashboard.reconnections += 1
        await asyncio.sleep(0.5)


def dashboard_delays(admissions: Iterable[float], frames: list[tuple[float, int]]) -> tuple[list[float], int]:
    """Milliseconds from each first admission's reply to the first frame that counts it, and how many never showed.

    Replies are taken in the order they arrived: a frame showing k admitted accounts for the first k.
    A frame may count an admission whose reply had not yet been read; its delay is 0.
    """
    replies = sorted(admissions)
    delays: list[float] = []
    for at, admitted in sorted(frames):
        while len(delays) < min(admitted, len(replies)):
            delays.append(max(0.0, at - replies[len(delays)]) * 1000)
    return delays, len(replies) - len(delays)


async def register_crowd(
    stack: EmbeddedStack, args: argparse.Namespace, event_id: str, number: int
) -> dict[str, dict[str, Any]]:
    """Every delegate of the crowd registered: their address -> the reply (confirmed, with a manage token)."""
    crowd = delegates(args.delegates, tag=f"scan{number}{uuid.uuid4().hex[:4]}", seed=number)
    url = f"{stack.config.url('registration')}/api/v1/events/{event_id}/registrations"
    surge = await run_surge(url, crowd, args.concurrency)
    confirmed = {
        r.email.lower(): r.body for r in surge.replies if r.status == 201 and r.body.get("status") == "confirmed"
    }
    if len(confirmed) < len(crowd):
        failures = Counter(str(r.status) if r.error is None else r.error for r in surge.replies if r.status != 201)
        print(f"only {len(confirmed)} of {len(crowd)} registered: {dict(failures)}", file=sys.stderr)
    return confirmed


async def wait_for_ticket_emails(inbox: Inbox, addresses: set[str], deadline: float) -> int:
    """How many of `addresses` have their ticket email, once all do or time is up.

    Scanning starts on a quiet stack, as on the day: not while confirmations are still being sent.
    """
    emailed: set[str] = set()
    while True:
        emailed |= {mail.recipient for mail in inbox.new_arrivals() if mail.carries_ticket} & addresses
        if emailed == addresses or time.monotonic() > deadline:
            return len(emailed)
        await asyncio.sleep(0.5)


async def scans_decided(http: httpx.AsyncClient, checkin: str) -> float:
    """Scans the check-in service has decided since it started, from its metrics."""
    text = (await http.get(f"{checkin}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("plenary_checkin_scans_total{")
    )


async def wait_until_idle(http: httpx.AsyncClient, checkin: str, expected: float, deadline: float) -> float:
    """Scans decided so far, once `expected` are or none has been decided for IDLE_SECONDS.

    Scans given up on by the client are still decided by the service; the next run must not meet them.
    """
    decided, still_since = await scans_decided(http, checkin), time.monotonic()
    while decided < expected and time.monotonic() - still_since < IDLE_SECONDS and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        now = await scans_decided(http, checkin)
        if now != decided:
            decided, still_since = now, time.monotonic()
    return decided


async def collect_codes(
    http: httpx.AsyncClient, stack: EmbeddedStack, registrations: list[dict[str, Any]], deadline: float
) -> dict[str, str]:
    """Each registration's ticket code, fetched with its manage token as the delegate would."""
    ticketing = stack.config.url("ticketing")
    codes: dict[str, str] = {}
    gate = asyncio.Semaphore(16)

    async def fetch(registration: dict[str, Any]) -> None:
        async with gate:
            reply = await http.get(
                f"{ticketing}/api/v1/registrations/{registration['id']}/ticket",
                headers={"X-Manage-Token": registration["manage_token"]},
            )
        if reply.status_code == 200:
            codes[registration["id"]] = reply.json()["code"]

    while True:
        waiting = [r for r in registrations if r["id"] not in codes]
        if not waiting or time.monotonic() > deadline:
            return codes
        await asyncio.gather(*(fetch(r) for r in waiting))
        if len(codes) < len(registrations):
            await asyncio.sleep(0.5)


async def wait_for_checkin(
    http: httpx.AsyncClient, stack: EmbeddedStack, event_id: str, registration_ids: set[str], deadline: float
) -> set[str]:
    """The registrations the check-in projection holds with a valid ticket and a name, once all do or time is up."""
    url = f"{stack.config.url('checkin')}/api/v1/events/{event_id}/snapshot"
    organiser = {"Authorization": f"Bearer {stack.admin_token}"}
    while True:
        reply = await http.get(url, headers=organiser)
        reply.raise_for_status()
        known = {
            row["registration_id"]
            for row in reply.json()["tickets"]
            if row["status"] == "valid" and row["name"]
        } & registration_ids
        if known == registration_ids or time.monotonic() > deadline:
            return known
        await asyncio.sleep(0.5)


async def enrol_phones(
    http: httpx.AsyncClient, stack: EmbeddedStack, event_id: str, gates: list[str]
) -> dict[str, str]:
    """One phone per gate, enrolled with its one-time code as door staff would: gate -> device token."""
    checkin = stack.config.url("checkin")
    organiser = {"Authorization": f"Bearer {stack.admin_token}"}
    tokens = {}
    for gate in gates:
        created = await http.post(
            f"{checkin}/api/v1/events/{event_id}/devices",
            headers=organiser,
            json={"name": f"{gate} phone", "gates": [gate]},
        )
        created.raise_for_status()
        enrolled = await http.post(
            f"{checkin}/api/v1/devices/enrol", json={"enrolment_code": created.json()["enrolment_code"]}
        )
        enrolled.raise_for_status()
        tokens[gate] = str(enrolled.json()["token"])
    return tokens


def gate_names(count: int) -> list[str]:
    return [f"Gate {letter}" for letter in string.ascii_uppercase[:count]]


async def one_run(stack: EmbeddedStack, args: argparse.Namespace, number: int) -> dict[str, Any]:
    checkin = stack.config.url("checkin")
    organiser = {"Authorization": f"Bearer {stack.admin_token}"}
    async with httpx.AsyncClient(timeout=30.0) as http:
        began = time.monotonic()
        event_id = await create_event(http, stack.config.url("registration"), stack.admin_token, args.delegates)
        inbox = Inbox(stack.config.maildir)
        inbox.new_arrivals()  # earlier runs' emails are not this run's
        confirmed = await register_crowd(stack, args, event_id, number)
        registrations = list(confirmed.values())
        registered = time.monotonic()
        print(f"  {len(registrations)} registered in {registered - began:.1f} s", file=sys.stderr)
        deadline = time.monotonic() + args.settle_timeout
        codes = await collect_codes(http, stack, registrations, deadline)
        ticketed = time.monotonic()
        known = await wait_for_checkin(http, stack, event_id, set(codes), deadline)
        projected = time.monotonic()
        emailed = await wait_for_ticket_emails(inbox, set(confirmed), deadline)
        quiet = time.monotonic()
        print(
            f"  {len(codes)} tickets after {ticketed - registered:.1f} s, "
            f"{len(known)} known to check-in after {projected - ticketed:.1f} s more, "
            f"{emailed} ticket emails after {quiet - projected:.1f} s more",
            file=sys.stderr,
        )
        if not known:
            raise RuntimeError("no delegate reached the check-in service in time")
        ready = [codes[rid] for rid in codes if rid in known]

        gates = gate_names(args.devices)
        tokens = await enrol_phones(http, stack, event_id, gates)
        plan = plan_scans(ready, gates, args.rate, args.duration, random.Random(number))
        doors = Doors(checkin, tokens, timeout=args.scan_timeout)
        dashboard = Dashboard()
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.config.mongo, maxIdleTimeMS=60_000)
        watcher = asyncio.create_task(
            watch_dashboard(http, f"{checkin}/api/v1/events/{event_id}/attendance/stream", organiser, dashboard)
        )
        try:
            await asyncio.wait_for(dashboard.showing(0), timeout=30)
            children = processes(stack)
            load_before = load_average()
            cpu_before = {name: cpu_seconds(child) for name, child in children.items()}
            client_cpu_before = time.process_time()
            decided_before = await scans_decided(http, checkin)
            requests_before = await document_server_requests(mongo)
            print(f"  scanning {len(plan)} codes at {args.rate:g}/s at {len(gates)} gates", file=sys.stderr)
            outcomes, start = await scan_on_schedule(doors, f"/api/v1/events/{event_id}/scans", plan)
            first_admissions = [
                o.replied for o in outcomes
                if o.scan.kind == "first_entry" and o.verdict == "admitted" and o.replied is not None
            ]
            try:
                await asyncio.wait_for(dashboard.showing(len(first_admissions)), timeout=DASHBOARD_GRACE)
            except TimeoutError:
                print("  the dashboard did not catch up with every admission", file=sys.stderr)
            window = time.perf_counter() - start
            decided = await scans_decided(http, checkin) - decided_before
            requests = await document_server_requests(mongo)
            client_cpu = time.process_time() - client_cpu_before
            cpu_after = {name: cpu_seconds(child) for name, child in children.items()}
            drain: float | None = None
            if number < args.runs:
                # Scans the client gave up on are still being decided; the next run must not meet them.
                drain_began = time.monotonic()
                await wait_until_idle(
                    http, checkin, decided_before + len(plan), drain_began + args.settle_timeout
                )
                drain = round(time.monotonic() - drain_began, 1)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await doors.close()
            await mongo.close()

    answered = [o for o in outcomes if o.verdict is not None]
    replies = [o.replied for o in outcomes if o.replied is not None]
    sends = sorted(o.sent for o in outcomes)
    frames = [(at, admitted) for at, admitted in dashboard.frames if at >= start]
    delays, unseen = dashboard_delays(first_admissions, frames)
    errors = Counter(o.error for o in outcomes if o.error is not None)
    span = max(replies) - sends[0] if replies else 0.0
    cpu_used = {
        name: after - before
        for name, after in cpu_after.items()
        if (before := cpu_before[name]) is not None and after is not None
    }
    return {
        "event_id": event_id,
        "delegates": len(ready),
        "devices": len(gates),
        "scans": len(outcomes),
        "duration_s": round(sends[-1] - sends[0], 2),
        "scans_per_second_target": args.rate,
        "scans_per_second_offered": round((len(sends) - 1) / (sends[-1] - sends[0]), 1) if len(sends) > 1 else None,
        "scans_per_second_achieved": round(len(answered) / span, 1) if span > 0 else None,
        "verdict_latency_ms": percentiles([(o.replied - o.sent) * 1000 for o in answered if o.replied is not None]),
        # How late scans left against their schedule: large values mean the load generator fell behind.
        "start_lag_ms": percentiles([max(0.0, o.sent - start - o.scan.offset) * 1000 for o in outcomes]),
        "scan_to_dashboard_ms": percentiles(delays),
        "first_admissions": len(first_admissions),
        "first_admissions_never_on_dashboard": unseen,
        "dashboard_frames": len(frames),
        "dashboard_reconnections": dashboard.reconnections,
        "verdicts": dict(Counter(o.verdict for o in answered)),
        "scans_by_kind": dict(Counter(o.scan.kind for o in outcomes)),
        "unexpected_verdicts": sum(1 for o in answered if o.verdict != o.scan.expected),
        "errors": sum(errors.values()),
        "errors_by_kind": dict(errors),
        # What the service got through from the first scan until the dashboard had caught up (or
        # given up), counting scans the client had given up on; the rest were still waiting.
        "service_scans_per_second": round(decided / window, 1),
        "scans_waiting_at_end": len(plan) - round(decided),
        # Before the next run: how long the service took to decide the scans still waiting.
        "seconds_to_drain": drain,
        "connections_opened": doors.opened,
        "setup_seconds": {
            "register": round(registered - began, 1),
            "tickets": round(ticketed - registered, 1),
            "checkin_projection": round(projected - ticketed, 1),
            "ticket_emails": round(quiet - projected, 1),
        },
        "load_average": {"before_load": load_before, "after_load": load_average()},
        # From the first scan until the dashboard had caught up.
        "cpu_seconds_scanning": {
            "load_generator": round(client_cpu, 2),
            **{name: round(used, 2) for name, used in cpu_used.items()},
        },
        # CPU each process spent per scan decided: what a scan costs, whatever the machine's other work.
        "cpu_ms_per_scan": {name: round(used / max(decided, 1) * 1000, 1) for name, used in cpu_used.items()},
        "document_server_requests_per_scan": (
            round((requests - requests_before) / max(decided, 1), 1)
            if requests is not None and requests_before is not None
            else None
        ),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scan_latency", description=__doc__)
    parser.add_argument("--rate", type=float, default=100.0, help="scans per second, all gates together [100]")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of scanning per run [20]")
    parser.add_argument("--delegates", type=int, default=300, help="delegates registered per run [300]")
    parser.add_argument("--devices", type=int, default=5, help="phones, one per gate (Gate A, Gate B, ...) [5]")
    parser.add_argument("--runs", type=int, default=1, help="runs, each against a fresh event [1]")
    parser.add_argument("--concurrency", type=int, default=16, help="registrations in flight during setup [16]")
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=120,
        help="seconds to wait for tickets and for check-in to know them [120]",
    )
    parser.add_argument("--scan-timeout", type=float, default=10, help="seconds before a scan counts as an error [10]")
    parser.add_argument("--keep", action="store_true", help="keep the stack's var directory (logs, data, mail)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"where to write the JSON [{RESULTS}]")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.delegates < 1 or args.runs < 1 or args.concurrency < 1:
        parser.error("--rate, --duration, --delegates, --runs and --concurrency must be positive")
    if not 1 <= args.devices <= len(string.ascii_uppercase):
        parser.error(f"--devices must be between 1 and {len(string.ascii_uppercase)}")
    if args.rate * args.duration < args.delegates:
        parser.error("--rate x --duration must leave time for every delegate's first entry")
    return args


def report(args: argparse.Namespace, description: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    median = median_of(runs)
    verdict_p99 = median.get("verdict_latency_ms", {}).get("p99")
    dashboard_p99 = median.get("scan_to_dashboard_ms", {}).get("p99")
    # A scan with no verdict (a timeout, a refusal) fails the verdict target whatever the p99 of the rest.
    unanswered = sum(run["errors"] for run in runs)
    meets = {
        "verdict_p99_ms": unanswered == 0 and verdict_p99 is not None and verdict_p99 < TARGET["verdict_p99_ms"],
        "scan_to_dashboard_p99_ms": dashboard_p99 is not None and dashboard_p99 < TARGET["scan_to_dashboard_p99_ms"],
    }
    for name, met in meets.items():
        figure = verdict_p99 if name == "verdict_p99_ms" else dashboard_p99
        print(f"{name}: {figure} (target < {TARGET[name]}): {'met' if met else 'not met'}", file=sys.stderr)
    return {
        "benchmark": "scan_latency",
        "parameters": {
            k: args.__dict__[k] for k in ("rate", "duration", "delegates", "devices", "runs", "concurrency")
        },
        "runs_completed": len(runs),
        "target": TARGET,
        "meets_target": meets,
        # The headline figures: medians across runs.
        **{
            key: median.get(key)
            for key in (
                "scans_per_second_target",
                "scans_per_second_achieved",
                "verdict_latency_ms",
                "scan_to_dashboard_ms",
                "verdicts",
                "errors",
                "delegates",
                "duration_s",
            )
        },
        "machine": description,
        "median": median,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    return run_described(
        "scan",
        parse_args(argv),
        stack_config,
        one_run,
        lambda args, _: f"{args.delegates} delegates, {args.rate:g} scans/s for {args.duration:g} s",
        report,
    )


if __name__ == "__main__":
    sys.exit(main())
