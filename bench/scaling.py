"""Cost per registration and per scan as the event grows: does it stay flat from 100 to 10,000 delegates?

One stack; for each size, a fresh event with a place for everyone. First the stack's idle CPU is
measured for a few seconds. Then the delegates register (closed loop) and the benchmark waits
until every ticket email is in the Maildir, the check-in service knows every ticket and every
service's outbox is empty: the CPU each process used over that whole phase, less its idle rate,
and the document server's requests, are divided by the registrations. Then five phones scan
everyone in once, and the same is measured per scan. At the end each figure at the largest size
is divided by the same figure at each smaller size: 1.0 is flat.

The notifications service's send rate is set high, so the mail throttle is not what is measured.
Run `python -m bench.scaling --help`. Prints one JSON object and writes it to
bench/results/scaling.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from bench import registration_surge as surge
from bench.crowd import delegates
from bench.end_to_end import CheckinWatch, add_waiting_options, scan_everyone, scan_summary
from bench.inbox import Inbox, create_event
from bench.runner import stack_config
from bench.scan_latency import Doors, collect_codes, enrol_phones, gate_names
from plenary_stack.stack import EmbeddedStack

RESULTS = Path(__file__).parent / "results" / "scaling.json"
SEND_RATE = 1000
IDLE_SECONDS = 3.0
# How often the check-in service is asked, once every email is in, whether it knows every ticket.
CHECKIN_POLL_SECONDS = 1.0
SERVICES = ("registration", "ticketing", "notifications", "checkin")
# A process's cost per registration or scan below this is within the idle noise: no ratio is given for it.
NOISE_MS = 0.5


class Meter:
    """CPU of every stack process and the document server's requests over a phase, less what the idle stack uses."""

    def __init__(self, stack: EmbeddedStack, mongo: AsyncMongoClient[dict[str, Any]]) -> None:
        self._children = surge.processes(stack)
        self._mongo = mongo
        self.idle_cpu_per_second: dict[str, float] = {}
        self.idle_requests_per_second = 0.0
        self._began = 0.0
        self._client_cpu = 0.0
        self._cpu: dict[str, float] = {}
        self._requests = 0

    async def _read(self) -> tuple[float, dict[str, float], int]:
        cpu = {name: used for name, child in self._children.items() if (used := surge.cpu_seconds(child)) is not None}
        return time.perf_counter(), cpu, await surge.document_server_requests(self._mongo) or 0

    async def idle(self, seconds: float) -> dict[str, float]:
        """Measure the idle stack for `seconds`: CPU milliseconds a second by process, and requests a second."""
        began, cpu, requests = await self._read()
        await asyncio.sleep(seconds)
        ended, cpu_after, requests_after = await self._read()
        self.idle_cpu_per_second = {name: (cpu_after[name] - used) / (ended - began) for name, used in cpu.items()}
        self.idle_requests_per_second = (requests_after - requests) / (ended - began)
        return {
            **{name: round(rate * 1000, 1) for name, rate in self.idle_cpu_per_second.items()},
            "document_server_requests_per_second": round(self.idle_requests_per_second, 1),
        }

    async def start(self) -> None:
        self._client_cpu = time.process_time()
        self._began, self._cpu, self._requests = await self._read()

    async def stop(self, unit: str, count: int) -> dict[str, Any]:
        """The phase's cost per `unit`, of which there were `count`."""
        ended, cpu, requests = await self._read()
        seconds = ended - self._began
        used = {
            name: after - self._cpu[name] - self.idle_cpu_per_second.get(name, 0.0) * seconds
            for name, after in cpu.items()
            if name in self._cpu
        }
        per = max(count, 1)
        return {
            "seconds": round(seconds, 2),
            f"cpu_ms_per_{unit}": {
                "total": round(sum(used.values()) / per * 1000, 2),
                "by_process": {name: round(ms / per * 1000, 2) for name, ms in used.items()},
            },
            f"document_server_requests_per_{unit}": round(
                (requests - self._requests - self.idle_requests_per_second * seconds) / per, 2
            ),
            "load_generator_cpu_seconds": round(time.process_time() - self._client_cpu, 2),
        }


async def wait_for_outboxes(mongo: AsyncMongoClient[dict[str, Any]], stack: EmbeddedStack, deadline: float) -> None:
    """Until every service has relayed the events it recorded, so a phase's last work is inside it."""
    outboxes = [mongo[f"{stack.config.db_prefix}_{service}"]["outbox"] for service in SERVICES]
    while True:
        pending = sum([await outbox.count_documents({"sent_at": None}) for outbox in outboxes])
        if not pending or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.2)


async def one_size(stack: EmbeddedStack, args: argparse.Namespace, number: int) -> dict[str, Any]:
    """The `number`th size (from 1): register, wait until all is ready, scan everyone, at each step what it cost."""
    began = time.monotonic()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.config.mongo, tz_aware=True, maxIdleTimeMS=60_000)
    try:
        async with httpx.AsyncClient(timeout=60.0) as http:
            figures = await measure_size(stack, http, mongo, args, args.sizes[number - 1])
    finally:
        await mongo.close()
    return {**figures, "wall_seconds": round(time.monotonic() - began, 1)}


async def measure_size(
    stack: EmbeddedStack,
    http: httpx.AsyncClient,
    mongo: AsyncMongoClient[dict[str, Any]],
    args: argparse.Namespace,
    size: int,
) -> dict[str, Any]:
    registration = stack.config.url("registration")
    event_id = await create_event(http, registration, stack.admin_token, size)
    inbox = Inbox(stack.config.maildir)
    inbox.new_arrivals()  # the smaller sizes' emails are not this size's
    crowd = delegates(size, tag=f"scale{size}{uuid.uuid4().hex[:4]}", seed=size)
    meter = Meter(stack, mongo)
    load_before = surge.load_average()

    idle_before_registering = await meter.idle(IDLE_SECONDS)
    print(f"  idle: {idle_before_registering}", file=sys.stderr)
    await meter.start()
    wave = await surge.run_surge(f"{registration}/api/v1/events/{event_id}/registrations", crowd, args.concurrency)
    accepted = {r.email.lower(): r.body for r in wave.replies if r.status == 201}
    print(f"  {len(accepted)} registered in {wave.wall_seconds:.1f} s", file=sys.stderr)
    deadline = time.monotonic() + args.settle_timeout
    statuses = {address: body["status"] for address, body in accepted.items()}
    emailed = await surge.wait_for_emails(inbox, statuses, deadline)
    print(f"  {len(emailed)} ticket emails {time.time() - wave.started_at:.1f} s after the start", file=sys.stderr)
    ids = {body["id"] for body in accepted.values()}
    watch = CheckinWatch(http, stack, event_id)
    await watch.follow(CHECKIN_POLL_SECONDS, ids, deadline)
    known = ids & watch.known.keys()
    await wait_for_outboxes(mongo, stack, deadline)
    registering = await meter.stop("registration", len(accepted))
    tickets = mongo[f"{stack.config.db_prefix}_ticketing"]["tickets"]
    issued = await surge.wait_for_tickets(tickets, event_id, dict.fromkeys(ids, 0.0), deadline)
    moments = [*emailed.values(), *(at.timestamp() for at in issued.values()), *(watch.known[rid] for rid in known)]
    complete = len(emailed) == len(issued) == len(known) == len(accepted) == size
    print(
        f"  {len(issued)} tickets, {len(known)} known to check-in; "
        f"{registering['cpu_ms_per_registration']['total']} ms CPU a registration",
        file=sys.stderr,
    )

    codes = await collect_codes(http, stack, list(accepted.values()), time.monotonic() + args.settle_timeout)
    gates = gate_names(args.devices)
    tokens = await enrol_phones(http, stack, event_id, gates)
    doors = Doors(stack.config.url("checkin"), tokens, timeout=args.scan_timeout)
    try:
        idle_before_scanning = await meter.idle(IDLE_SECONDS)
        await meter.start()
        scanning_began = time.perf_counter()
        outcomes = await scan_everyone(doors, event_id, list(codes.values()), gates, args.scan_concurrency)
        scanning_seconds = time.perf_counter() - scanning_began
        await wait_for_outboxes(mongo, stack, time.monotonic() + args.settle_timeout)
        scanning = await meter.stop("scan", len(outcomes))
    finally:
        await doors.close()
    scans = scan_summary(outcomes)
    print(
        f"  {scans['admitted']} of {len(outcomes)} admitted; {scanning['cpu_ms_per_scan']['total']} ms CPU a scan",
        file=sys.stderr,
    )

    return {
        "delegates": size,
        "event_id": event_id,
        "idle": {"before_registering": idle_before_registering, "before_scanning": idle_before_scanning},
        "registration": {
            "registered": len(accepted),
            "errors_by_status": dict(
                Counter(str(r.status) if r.error is None else r.error for r in wave.replies if r.status != 201)
            ),
            "registrations_per_second": round(len(accepted) / wave.wall_seconds, 1),
            "reply_seconds": round(wave.wall_seconds, 2),
            "latency_ms": surge.percentiles([r.seconds * 1000 for r in wave.replies]),
            "tickets_issued": len(issued),
            "known_to_checkin": len(known),
            "ticket_emails": len(emailed),
            # From the first POST until the last ticket, email and check-in entry (check-in to within a poll).
            "seconds_until_ready": round(max(moments) - wave.started_at, 2) if complete else None,
            "seconds_until_ready_per_1000": round((max(moments) - wave.started_at) / size * 1000, 2)
            if complete
            else None,
            **registering,
        },
        "scanning": {
            **scans,
            # From the first scan to the last verdict; the phase's `seconds` also wait for the outboxes.
            "scans_per_second": round(len(outcomes) / scanning_seconds, 1),
            **scanning,
        },
        "complete": complete and scans["admitted"] == size,
        "load_average": {"before": load_before, "after": surge.load_average()},
    }


# The figures compared across sizes: (phase, figure, key within it or None).
FLAT_FIGURES = (
    ("registration", "cpu_ms_per_registration", "total"),
    ("registration", "document_server_requests_per_registration", None),
    ("registration", "registrations_per_second", None),
    ("registration", "seconds_until_ready_per_1000", None),
    ("scanning", "cpu_ms_per_scan", "total"),
    ("scanning", "document_server_requests_per_scan", None),
    ("scanning", "scans_per_second", None),
    ("scanning", "verdict_latency_ms", "p50"),
    ("scanning", "verdict_latency_ms", "p99"),
)


def flatness(sizes: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Each figure at the largest size divided by the same figure at each smaller size (1.0: flat).

    The CPU figures are also compared process by process, to show where any growth is; a process
    that costs less than NOISE_MS at either size gets no ratio (None).
    """
    largest, smaller = sizes[-1], sizes[:-1]

    def ratios(pick: Any, floor: float = 0.0) -> dict[str, float | None]:
        top = pick(largest)
        return {
            f"{largest['delegates']}/{other['delegates']}": (
                round(top / below, 2)
                if top is not None and (below := pick(other)) and min(top, below) > floor
                else None
            )
            for other in smaller
        }

    found: dict[str, dict[str, float | None]] = {}
    for phase, figure, key in FLAT_FIGURES:
        name = figure if key is None else f"{figure}.{key}"
        found[name] = ratios(lambda size, p=phase, f=figure, k=key: size[p][f] if k is None else size[p][f][k])
    for phase, figure in (("registration", "cpu_ms_per_registration"), ("scanning", "cpu_ms_per_scan")):
        for process in largest[phase][figure]["by_process"]:
            found[f"{figure}.{process}"] = ratios(
                lambda size, p=phase, f=figure, n=process: size[p][f]["by_process"].get(n), NOISE_MS
            )
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[100, 1000, 10000], help="delegates per event, smallest first"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="registrations in flight [32]")
    parser.add_argument("--scan-concurrency", type=int, default=16, help="scans in flight, all gates together [16]")
    parser.add_argument("--devices", type=int, default=5, help="phones, one per gate [5]")
    add_waiting_options(parser, settle_timeout=1800, scan_timeout=30, output=RESULTS)
    args = parser.parse_args(argv)
    if min(args.sizes) < 1 or args.concurrency < 1 or args.scan_concurrency < 1 or not 1 <= args.devices <= 26:
        parser.error("--sizes, --concurrency and --scan-concurrency must be positive, --devices 1 to 26")
    args.sizes = sorted(args.sizes)
    # Each size is one run of its own, against a fresh event on the same stack.
    args.runs = len(args.sizes)
    return args


def report(args: argparse.Namespace, description: dict[str, Any], sizes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "benchmark": "scaling",
        "parameters": {
            **{k: args.__dict__[k] for k in ("sizes", "concurrency", "scan_concurrency", "devices")},
            "notifications_send_rate": SEND_RATE,
        },
        "sizes_completed": len(sizes),
        # No target figure: complete means every delegate was ready and admitted at every size.
        "meets_target": {"complete": all(size["complete"] for size in sizes)},
        "flatness": flatness(sizes) if len(sizes) > 1 else {},
        "machine": description,
        "sizes": sizes,
    }


def main(argv: list[str] | None = None) -> int:
    # The mail throttle would otherwise set the pace of the registration phase.
    config = partial(stack_config, extra_env={"NOTIFICATIONS_SEND_RATE": str(SEND_RATE)})
    return surge.run_described(
        "scaling", parse_args(argv), config, one_size, lambda args, n: f"{args.sizes[n - 1]} delegates", report
    )


if __name__ == "__main__":
    sys.exit(main())
