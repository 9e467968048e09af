"""Ticketing: how fast codes are signed and verified, and how long a QR PNG, SVG and PDF ticket take to render.

Run `python -m bench.ticketing --help`. No stack is needed: this measures the CPU work behind
issuing a ticket and scanning one. Prints one JSON object and writes it to bench/results/ticketing.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from plenary_kit import qr, ticketcode
from ticketing import domain, printable

RESULTS = Path(__file__).parent / "results" / "ticketing.json"
EVENT_ID = str(uuid.uuid4())


def _per_second(work: Callable[[int], None], count: int, runs: int) -> dict[str, float]:
    """Operations per second over `runs` timed batches of `count`: median, min and max."""
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        work(count)
        rates.append(count / (time.perf_counter() - started))
    return {"median": round(statistics.median(rates)), "min": round(min(rates)), "max": round(max(rates))}


def _milliseconds(work: Callable[[], object], runs: int) -> dict[str, float]:
    """Wall time of one call, in ms: median, min and max of `runs` calls after one warm-up."""
    work()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return {
        "median": round(statistics.median(times), 3), "min": round(min(times), 3), "max": round(max(times), 3)
    }


def measure(codes: int, runs: int, renders: int) -> dict[str, Any]:
    key = Ed25519PrivateKey.generate()
    public = ticketcode.public_bytes(key)
    keys = {ticketcode.key_id_of(public): public}
    ticket_ids = [str(uuid.uuid4()) for _ in range(codes)]
    typical = [ticketcode.encode(EVENT_ID, t, "delegate", key, entitlements=[0, 2]) for t in ticket_ids]
    longest = ticketcode.encode(
        EVENT_ID, ticket_ids[0], "x" * ticketcode.MAX_TICKET_TYPE, key,
        entitlements=range(ticketcode.MAX_SESSION_NUMBER - 7, ticketcode.MAX_SESSION_NUMBER + 1),
    )

    def sign(n: int) -> None:
        for ticket_id in ticket_ids[:n]:
            ticketcode.encode(EVENT_ID, ticket_id, "delegate", key, entitlements=[0, 2])

    def verify(n: int) -> None:
        for text in typical[:n]:
            if ticketcode.check(text, EVENT_ID, keys).verdict is not ticketcode.Verdict.VALID:
                raise AssertionError("a freshly signed code did not verify")

    sheet = printable.PrintedTicket(
        event_title="Education Leadership in Challenging Times", venue="Liverpool Guild of Students",
        starts_at=datetime(2027, 3, 4, 9, 30, tzinfo=UTC), ends_at=datetime(2027, 3, 4, 16, 0, tzinfo=UTC),
        timezone="Europe/London", delegate_name="Siobhán Ní Bhriain", ticket_type="delegate",
        code=typical[0], ticket_id=ticket_ids[0], workshops=["Leading through change"],
    )
    return {
        "benchmark": "ticketing",
        "at": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "parameters": {"codes": codes, "runs": runs, "renders": renders},
        "code_characters": {"typical": len(typical[0]), "longest": len(longest)},
        "qr_version": {"typical": qr.version_of(typical[0]), "longest": qr.version_of(longest)},
        "sign_per_second": _per_second(sign, codes, runs),
        "verify_per_second": _per_second(verify, codes, runs),
        "render_ms": {
            f"png_box_{domain.MIN_QR_BOX}": _milliseconds(lambda: qr.png(typical[0], domain.MIN_QR_BOX), renders),
            f"png_box_{domain.DEFAULT_QR_BOX}": _milliseconds(
                lambda: qr.png(typical[0], domain.DEFAULT_QR_BOX), renders
            ),
            f"svg_box_{domain.DEFAULT_QR_BOX}": _milliseconds(
                lambda: qr.svg(typical[0], domain.DEFAULT_QR_BOX), renders
            ),
            "pdf_ticket": _milliseconds(lambda: printable.render(sheet), renders),
            "png_longest_code": _milliseconds(lambda: qr.png(longest, domain.DEFAULT_QR_BOX), renders),
        },
        "unicode_font": printable.font_path() is not None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=2000, help="codes signed and verified per timed batch")
    parser.add_argument("--runs", type=int, default=5, help="timed batches; the report gives the median")
    parser.add_argument("--renders", type=int, default=15, help="timed renders of each image; median reported")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if min(args.codes, args.runs, args.renders) < 1:
        parser.error("--codes, --runs and --renders must be at least 1")
    report = measure(args.codes, args.runs, args.renders)
    text = json.dumps(report, indent=2)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
