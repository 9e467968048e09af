"""Registration surge: N delegates register at once for one capacity-limited event on the embedded stack.

Run `python -m bench.registration_surge --help`. Prints one JSON object and writes it to
bench/results/registration_surge.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pymongo import AsyncMongoClient

from bench.crowd import delegates
from bench.http1 import Connection, Http1Error, Pool
from bench.inbox import Inbox
from bench.runner import run_benchmark, stack_config
from plenary_stack.processes import Child
from plenary_stack.stack import EmbeddedStack, StackConfig

RESULTS = Path(__file__).parent / "results" / "registration_surge.json"
TARGET = {"confirmed_per_minute": 6000, "p99_ms": 300, "oversold": 0}
REGISTER_ROUTE = "/api/v1/events/{event_id}/registrations"

@dataclass(frozen=True)
class Reply:
    """One delegate's POST as the delegate saw it."""

    email: str
    status: int | None
    body: dict[str, Any]
    error: str | None
    seconds: float
    # Wall-clock time the reply arrived, to compare with the stack's own timestamps.
    arrived_at: float


@dataclass
class Surge:
    replies: list[Reply] = field(default_factory=list)
    started_at: float = 0.0
    wall_seconds: float = 0.0
    client_cpu_seconds: float = 0.0
    # With a schedule (--rate): how late each POST left against its time, and the connections it took.
    sent_late_ms: list[float] = field(default_factory=list)
    connections: int = 0


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))], 1)

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": round(ordered[-1], 1)}


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    total_kib = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal")), 0)
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": models[0] if models else platform.processor() or "unknown",
        "memory_gib": round(total_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def load_average() -> list[float]:
    """1, 5 and 15 minute load: other work on the machine shows up here."""
    return [round(x, 2) for x in os.getloadavg()]


async def document_server_requests(mongo: AsyncMongoClient[dict[str, Any]]) -> int | None:
    """Requests the document server has answered so far, from every client of the stack."""
    status = await mongo.admin.command("serverStatus")
    network = status.get("network", {})
    return int(network["numRequests"]) if "numRequests" in network else None


def cpu_seconds(child: Child) -> float | None:
    """User plus system CPU time a child process has used so far."""
    if child.process is None:
        return None
    try:
        fields = Path(f"/proc/{child.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processes(stack: EmbeddedStack) -> dict[str, Child]:
    children = dict(stack.services)
    if stack.embedded_documents:
        children["documents"] = stack.documents
    if stack.embedded_broker:
        children["broker"] = stack.broker
    if stack.config.smtp_host is None:
        children["smtp"] = stack.smtp
    return children


async def register(phone: Connection, path: str, delegate: dict[str, Any], since: float) -> Reply:
    """One delegate's POST; its time counts from `since` (when it was sent, or due to be)."""
    status: int | None = None
    body: dict[str, Any] = {}
    error = None
    try:
        status, raw = await phone.post_json(path, delegate)
        try:
            body = json.loads(raw)
        except ValueError:
            error = "unreadable_body"
    except (Http1Error, OSError, TimeoutError) as exc:
        error = type(exc).__name__
        # The connection may hold half a reply: start afresh next time.
        await phone.close()
    return Reply(delegate["email"], status, body, error, time.perf_counter() - since, time.time())


async def run_surge(url: str, crowd: list[dict[str, Any]], concurrency: int, rate: float | None = None) -> Surge:
    """`concurrency` delegates in flight at any moment until everyone has had an answer; or, with
    `rate`, one delegate every 1/rate seconds whatever the replies take.

    Each simulated phone keeps one connection open, as a browser does; the client is kept lean
    (bench/http1.py) because it shares the machine's CPU with the stack it measures.
    """
    surge = Surge()
    path = urlsplit(url).path
    cpu_before = time.process_time()
    surge.started_at = time.time()
    began = time.perf_counter()
    if rate is None:
        await in_flight(surge, url, path, crowd, concurrency)
    else:
        await on_schedule(surge, url, path, crowd, rate, began)
    surge.wall_seconds = time.perf_counter() - began
    surge.client_cpu_seconds = time.process_time() - cpu_before
    return surge


async def in_flight(surge: Surge, url: str, path: str, crowd: list[dict[str, Any]], concurrency: int) -> None:
    """Closed loop: each phone sends its next delegate as soon as the last one has its answer."""
    waiting = iter(crowd)

    async def delegate_at_a_phone() -> None:
        phone = Connection(url)
        try:
            for delegate in waiting:
                surge.replies.append(await register(phone, path, delegate, time.perf_counter()))
        finally:
            await phone.close()

    surge.connections = concurrency
    await asyncio.gather(*(delegate_at_a_phone() for _ in range(concurrency)))


async def on_schedule(
    surge: Surge, url: str, path: str, crowd: list[dict[str, Any]], rate: float, began: float
) -> None:
    """Open loop: delegate i sends at `began` + i/rate, on a free connection or a new one.

    A reply's latency counts from the delegate's due time, not from when the POST left: were the
    load generator itself late, that lateness counts against the stack, never hides a slow reply.
    """
    phones = Pool(url)

    async def delegate_due(delegate: dict[str, Any], due: float) -> None:
        surge.sent_late_ms.append((time.perf_counter() - due) * 1000)
        phone = phones.take()
        surge.replies.append(await register(phone, path, delegate, due))
        phones.give(phone)

    try:
        tasks = []
        for number, delegate in enumerate(crowd):
            due = began + number / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(delegate_due(delegate, due)))
        await asyncio.gather(*tasks)
    finally:
        surge.connections = phones.opened
        await phones.close()


def filling_rate(surge: Surge, confirmed: dict[str, float]) -> int | None:
    """Confirmed registrations per minute from the first POST to the last confirmed reply."""
    if not confirmed:
        return None
    seconds = max(confirmed.values()) - surge.started_at
    return round(len(confirmed) / seconds * 60) if seconds > 0 else None


def server_latencies(log_path: Path, offset: int) -> list[float]:
    """The `ms` the registration service logged for each registration POST since `offset`."""
    found = []
    with open(log_path, "rb") as log:
        log.seek(offset)
        for line in log:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("route") == REGISTER_ROUTE and entry.get("method") == "POST" and "ms" in entry:
                found.append(float(entry["ms"]))
    return found


async def create_event(http: httpx.AsyncClient, stack: EmbeddedStack, capacity: int) -> str:
    reply = await http.post(
        f"{stack.config.url('registration')}/api/v1/events",
        headers={"Authorization": f"Bearer {stack.admin_token}"},
        json={
            "slug": f"leadership-surge-{uuid.uuid4().hex[:8]}",
            "title": "Stepping Up to Senior Leadership: Opening Conference",
            "venue": "Liverpool Exhibition Centre",
            "starts_at": "2027-06-17T09:00:00+01:00",
            "ends_at": "2027-06-17T16:30:00+01:00",
            "timezone": "Europe/London",
            "capacity": capacity,
        },
    )
    reply.raise_for_status()
    return str(reply.json()["id"])


async def wait_for_tickets(
    tickets: Any, event_id: str, confirmed: dict[str, float], deadline: float
) -> dict[str, datetime]:
    """Issue time of each confirmed registration's ticket, once all exist or the deadline passes.

    Each look asks only for the tickets still missing, by registration id alone (an indexed look-up;
    the ids are the event's own, and a second field beside the `$in` makes the embedded document
    server read every ticket of the event), so the benchmark's own reads do not grow with the event.
    """
    issued: dict[str, datetime] = {}
    while True:
        missing = [registration_id for registration_id in confirmed if registration_id not in issued]
        if missing:
            query = {"registration_id": {"$in": missing}}
            async for row in tickets.find(query, {"registration_id": 1, "issued_at": 1}):
                earlier = issued.get(row["registration_id"])
                issued[row["registration_id"]] = min(row["issued_at"], earlier or row["issued_at"])
        if len(issued) >= len(confirmed) or time.monotonic() > deadline:
            return issued
        await asyncio.sleep(0.5)


async def wait_for_emails(inbox: Inbox, everyone: dict[str, str], deadline: float) -> dict[str, float]:
    """Arrival time of each delegate's first email: the ticket email for the confirmed, any email for the rest."""
    arrived: dict[str, float] = {}
    while len(arrived) < len(everyone) and time.monotonic() < deadline:
        for mail in inbox.new_arrivals():
            status = everyone.get(mail.recipient)
            if status is None or mail.recipient in arrived:
                continue
            if status != "confirmed" or mail.carries_ticket:
                arrived[mail.recipient] = mail.at
        if len(arrived) < len(everyone):
            await asyncio.sleep(0.25)
    return arrived


def seconds_after(start: float, moments: list[float], expected: int) -> float | None:
    """Seconds from `start` until the last of `expected` moments, or None if some never came."""
    if expected == 0:
        return 0.0
    if len(moments) < expected:
        return None
    return round(max(moments) - start, 2)


async def one_run(stack: EmbeddedStack, args: argparse.Namespace, number: int) -> dict[str, Any]:
    registration = stack.config.url("registration")
    crowd = delegates(args.delegates, tag=f"r{number}{uuid.uuid4().hex[:4]}", seed=number)
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    organiser = {"Authorization": f"Bearer {stack.admin_token}"}
    # The document server drops connections idle for five minutes; a surge can last longer.
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.config.mongo, tz_aware=True, maxIdleTimeMS=60_000)
    try:
        async with httpx.AsyncClient(timeout=60.0, limits=limits) as http:
            event_id = await create_event(http, stack, args.capacity)
            log_path = stack.services["registration"].log_path
            log_offset = log_path.stat().st_size
            children = processes(stack)
            load_before = load_average()
            requests_before = await document_server_requests(mongo)
            cpu_before = {name: cpu_seconds(child) for name, child in children.items()}
            registrations = f"{registration}/api/v1/events/{event_id}/registrations"
            surge = await run_surge(registrations, crowd, args.concurrency, args.rate)
            cpu_after = {name: cpu_seconds(child) for name, child in children.items()}
            requests_after = await document_server_requests(mongo)
            listed = (await http.get(registrations, headers=organiser)).json()
            event = (await http.get(f"{registration}/api/v1/events/{event_id}")).json()

        accepted = [r for r in surge.replies if r.status == 201]
        confirmed = {r.body["id"]: r.arrived_at for r in accepted if r.body.get("status") == "confirmed"}
        waitlisted = [r for r in accepted if r.body.get("status") == "waitlisted"]
        status_of = {r.email.lower(): r.body["status"] for r in accepted}
        ids = [r.body.get("id") for r in accepted]
        listed_status = Counter(row["status"] for row in listed)
        positions = sorted(row["waitlist_position"] for row in listed if row["status"] == "waitlisted")
        errors = Counter(str(r.status) if r.error is None else r.error for r in surge.replies if r.status != 201)

        deadline = time.monotonic() + args.settle_timeout
        tickets = mongo[f"{stack.config.db_prefix}_ticketing"]["tickets"]
        issued = await wait_for_tickets(tickets, event_id, confirmed, deadline)
        issued_at = {rid: at.timestamp() for rid, at in issued.items()}
        inbox = Inbox(stack.config.maildir)
        emailed = await wait_for_emails(inbox, status_of, deadline)
        reply_at = {r.email.lower(): r.arrived_at for r in accepted}
        confirmed_emails = [at for email, at in emailed.items() if status_of[email] == "confirmed"]

        minutes = surge.wall_seconds / 60
        return {
            "event_id": event_id,
            "surge_seconds": round(surge.wall_seconds, 2),
            "confirmed": len(confirmed),
            "waitlisted": len(waitlisted),
            "confirmed_per_minute": round(len(confirmed) / minutes),
            # Until the event is full every registration is confirmed; this is the rate at which places go.
            "confirmed_per_minute_while_places_left": filling_rate(surge, confirmed),
            "registrations_per_minute": round(len(accepted) / minutes),
            "latency_ms": percentiles([r.seconds * 1000 for r in surge.replies]),
            # Open loop: registrations offered a second, how late the POSTs left, connections it took.
            **(
                {
                    "offered_per_second": args.rate,
                    "sent_late_ms": percentiles(surge.sent_late_ms),
                    "connections": surge.connections,
                }
                if args.rate
                else {}
            ),
            "server_latency_ms": percentiles(server_latencies(log_path, log_offset)),
            "oversold": {
                "from_replies": max(0, len(confirmed) - args.capacity),
                "from_organiser_list": max(0, listed_status["confirmed"] - args.capacity),
            },
            # A place left empty while someone waits is as wrong as an oversold one.
            "places_left_with_a_waiting_list": event["places_left"] if waitlisted else 0,
            "duplicates": {
                "registration_ids": len(ids) - len(set(ids)),
                "emails_in_organiser_list": len(listed) - len({row["email"].lower() for row in listed}),
            },
            "organiser_list": dict(listed_status),
            "waitlist_positions_in_order": positions == list(range(1, len(positions) + 1)),
            "errors_by_status": dict(errors),
            "tickets": {
                "issued": len(issued),
                "seconds_until_all_issued": seconds_after(surge.started_at, list(issued_at.values()), len(confirmed)),
                "delay_after_reply_ms": percentiles(
                    [(issued_at[rid] - confirmed[rid]) * 1000 for rid in issued_at]
                ),
            },
            "emails": {
                "confirmed_with_ticket_email": len(confirmed_emails),
                "seconds_until_every_confirmed_has_email": seconds_after(
                    surge.started_at, confirmed_emails, len(confirmed)
                ),
                "seconds_until_every_delegate_has_email": seconds_after(
                    surge.started_at, list(emailed.values()), len(status_of)
                ),
                "delay_after_reply_ms": percentiles(
                    [(at - reply_at[email]) * 1000 for email, at in emailed.items()]
                ),
            },
            "document_server_requests_per_registration": (
                round((requests_after - requests_before) / len(surge.replies), 1)
                if requests_before is not None and requests_after is not None
                else None
            ),
            "load_average": {"before_surge": load_before, "after_surge": load_average()},
            "cpu_seconds_during_surge": {
                "load_generator": round(surge.client_cpu_seconds, 2),
                **{
                    name: round(after - before, 2)
                    for name, after in cpu_after.items()
                    if (before := cpu_before[name]) is not None and after is not None
                },
            },
        }
    finally:
        await mongo.close()


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of every number the runs have in common, in the same shape."""
    merged: dict[str, Any] = {}
    for key in runs[0]:
        values = [run.get(key) for run in runs]
        tables = [v for v in values if isinstance(v, dict)]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(tables) == len(runs):
            merged[key] = median_of(tables)
        elif len(numbers) == len(runs):
            merged[key] = round(statistics.median(numbers), 2)
    return merged


def verdict(runs: list[dict[str, Any]], median: dict[str, Any]) -> dict[str, bool]:
    return {
        "confirmed_per_minute": median["confirmed_per_minute"] >= TARGET["confirmed_per_minute"],
        "p99_ms": (median["latency_ms"].get("p99") or 0) < TARGET["p99_ms"],
        "oversold": all(
            run["oversold"]["from_replies"] == run["oversold"]["from_organiser_list"] == TARGET["oversold"]
            for run in runs
        ),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.registration_surge", description=__doc__)
    parser.add_argument("--delegates", type=int, default=3000, help="delegates registering at once [3000]")
    parser.add_argument("--capacity", type=int, help="places at the event [delegates // 2]")
    parser.add_argument("--concurrency", type=int, default=64, help="registrations in flight at once [64]")
    parser.add_argument(
        "--rate",
        type=float,
        help="instead of --concurrency: one registration every 1/RATE seconds whatever the replies take (open loop)",
    )
    parser.add_argument("--runs", type=int, default=3, help="surges, each against a fresh event [3]")
    parser.add_argument(
        "--settle-timeout", type=float, default=600, help="seconds to wait for tickets and emails after a surge [600]"
    )
    parser.add_argument("--keep", action="store_true", help="keep the stack's var directory (logs, data, mail)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"where to write the JSON [{RESULTS}]")
    args = parser.parse_args(argv)
    if args.capacity is None:
        args.capacity = args.delegates // 2
    if args.delegates < 1 or args.concurrency < 1 or args.runs < 1 or args.capacity < 0:
        parser.error("--delegates, --concurrency and --runs must be positive, --capacity not negative")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")
    return args


def report(args: argparse.Namespace, description: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    median = median_of(runs)
    return {
        "benchmark": "registration_surge",
        "parameters": {k: args.__dict__[k] for k in ("delegates", "capacity", "concurrency", "rate", "runs")},
        "runs_completed": len(runs),
        "target": TARGET,
        "meets_target": verdict(runs, median),
        "machine": description,
        "median": median,
        "runs": runs,
    }


def run_described(
    name: str,
    args: argparse.Namespace,
    config: Callable[[Path], StackConfig],
    one_run: Callable[[EmbeddedStack, argparse.Namespace, int], Coroutine[Any, Any, dict[str, Any]]],
    heading: Callable[[argparse.Namespace, int], str],
    report_of: Callable[[argparse.Namespace, dict[str, Any], list[dict[str, Any]]], dict[str, Any]],
) -> int:
    """`run_benchmark` for `args.runs` runs, one after another, and a report that names the machine.

    Each run's figures go into the report as soon as it ends, so an interrupted benchmark still
    reports them; `args.output` and `args.keep` are used as given.
    """
    description = machine()

    async def all_runs(stack: EmbeddedStack, runs: list[dict[str, Any]]) -> None:
        for number in range(1, args.runs + 1):
            print(f"run {number}/{args.runs}: {heading(args, number)}", file=sys.stderr)
            runs.append(await one_run(stack, args, number))
            print(json.dumps(runs[-1]), file=sys.stderr)

    return run_benchmark(
        name, config, all_runs, lambda runs: report_of(args, description, runs), args.output, keep=args.keep
    )


def main(argv: list[str] | None = None) -> int:
    return run_described(
        "surge",
        parse_args(argv),
        stack_config,
        one_run,
        lambda args, _: f"{args.delegates} delegates, {args.capacity} places"
        + (f", {args.rate:g} a second" if args.rate else f", {args.concurrency} in flight"),
        report,
    )


if __name__ == "__main__":
    sys.exit(main())
