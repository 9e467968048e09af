"""`make bench`: every benchmark in turn, each on a stack of its own, then one Markdown summary.

Each benchmark writes its JSON under bench/results/ as when run alone; this adds
bench/results/summary.json and bench/results/summary.md with the headline figures, the targets and
the machine. Sizes are chosen so the whole run fits in about twenty minutes on two cores; `--quick`
makes it smaller still.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.registration_surge import machine

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Benchmark:
    name: str
    module: str
    args: list[str]
    quick_args: list[str]
    # With --full: the sizes the issue names, when they take longer than the rest together.
    full_args: list[str] | None
    # Headline figures from the benchmark's JSON: (what, value, target or "").
    headline: Callable[[dict[str, Any]], list[tuple[str, Any, str]]]
    # The JSON's name under bench/results/, when not the module's.
    output: str | None = None


def _oversold(median: dict[str, Any]) -> tuple[str, Any, str]:
    oversold = median["oversold"]
    return ("oversold (in the replies / in the organiser's list)",
            f"{oversold['from_replies']} / {oversold['from_organiser_list']}", "0")


def _surge(report: dict[str, Any]) -> list[tuple[str, Any, str]]:
    median = report["median"]
    return [
        ("confirmed registrations per minute, while places were left", median["confirmed_per_minute_while_places_left"],
         ">= 6,000"),
        ("registration latency p50 / p99 (ms)", f"{median['latency_ms']['p50']} / {median['latency_ms']['p99']}",
         "p99 < 300"),
        _oversold(median),
        ("seconds until every confirmed delegate had a ticket", median["tickets"]["seconds_until_all_issued"], ""),
    ]


def _surge_at_rate(report: dict[str, Any]) -> list[tuple[str, Any, str]]:
    median = report["median"]
    return [
        ("registrations offered a second (open loop) / confirmed a minute over the surge",
         f"{report['parameters']['rate']:g} / {median['confirmed_per_minute']}", ">= 6,000 confirmed a minute"),
        ("registration latency p50 / p99 (ms), from each delegate's time on the timetable",
         f"{median['latency_ms']['p50']} / {median['latency_ms']['p99']}", "p99 < 300"),
        _oversold(median),
    ]


def _ticketing(report: dict[str, Any]) -> list[tuple[str, Any, str]]:
    render = {name: figures["median"] for name, figures in report["render_ms"].items()}
    return [
        ("codes signed per second", report["sign_per_second"]["median"], ""),
        ("codes verified per second", report["verify_per_second"]["median"], ""),
        ("QR PNG (smallest) / SVG / PDF ticket render (ms)",
         f"{render['png_box_2']} / {render['svg_box_8']} / {render['pdf_ticket']}", ""),
    ]


def _inbox(report: dict[str, Any]) -> list[tuple[str, Any, str]]:
    median = report["median"]
    return [("registration to inbox p50 / p99 (ms)", f"{median['p50_ms']} / {median['p99_ms']}", "p99 < 2,000")]


def _scans(report: dict[str, Any]) -> list[tuple[str, Any, str]]:
    median = report["median"]
    return [
        ("scans per second offered / decided",
         f"{median['scans_per_second_target']} / {median['service_scans_per_second']}", "100"),
        ("verdict latency p50 / p99 (ms)",
         f"{median['verdict_latency_ms']['p50']} / {median['verdict_latency_ms']['p99']}", "p99 < 50"),
        ("scan to dashboard p50 / p99 (ms)",
         f"{median['scan_to_dashboard_ms']['p50']} / {median['scan_to_dashboard_ms']['p99']}", "p99 < 500"),
        ("scans without an answer", median["errors"], "0"),
    ]


def _end_to_end(report: dict[str, Any]) -> list[tuple[str, Any, str]]:
    stages, scans = report["stages_ms"], report["median"]["scans"]
    return [
        ("registration to ready (ticket email in and scan-ready) p50 / p99 (ms)",
         f"{stages['ready']['p50']} / {stages['ready']['p99']}", ""),
        ("reply / ticket / email / scan-ready p50 (ms)",
         " / ".join(str(stages[stage]["p50"]) for stage in ("reply", "ticket", "email", "scan_ready")), ""),
        ("delegates admitted at the door / registered", f"{scans['admitted']} / {report['median']['registrations']}",
         "all"),
    ]


def _scaling(report: dict[str, Any]) -> list[tuple[str, Any, str]]:
    largest, flat = report["sizes"][-1], report["flatness"]

    def ratios(figure: str) -> str:
        return ", ".join(f"{sizes}: {ratio}" for sizes, ratio in flat.get(figure, {}).items())

    return [
        (f"CPU per registration at {largest['delegates']} delegates (ms); largest ÷ smaller size",
         f"{largest['registration']['cpu_ms_per_registration']['total']}; "
         f"{ratios('cpu_ms_per_registration.total')}", "flat (1.0)"),
        (f"CPU per scan at {largest['delegates']} delegates (ms); largest ÷ smaller size",
         f"{largest['scanning']['cpu_ms_per_scan']['total']}; {ratios('cpu_ms_per_scan.total')}", "flat (1.0)"),
        ("every delegate ready and admitted at every size", report["meets_target"]["complete"], "true"),
    ]


BENCHMARKS = [
    Benchmark("registration surge", "bench.registration_surge", ["--delegates", "1000", "--runs", "3"],
              ["--delegates", "300", "--runs", "1"], None, _surge),
    Benchmark("registration surge at a steady rate", "bench.registration_surge",
              ["--delegates", "1000", "--rate", "250", "--runs", "3"],
              ["--delegates", "300", "--rate", "250", "--runs", "1"], None, _surge_at_rate,
              output="registration_surge_at_rate"),
    Benchmark("ticket codes and QR", "bench.ticketing", ["--codes", "1000", "--runs", "5"],
              ["--codes", "200", "--runs", "3"], None, _ticketing),
    Benchmark("registration to inbox", "bench.inbox", ["--registrations", "300", "--runs", "1"],
              ["--registrations", "100", "--runs", "1"], None, _inbox),
    Benchmark("scan latency", "bench.scan_latency", ["--runs", "1"],
              ["--delegates", "100", "--duration", "10", "--runs", "1"], None, _scans),
    Benchmark("registration to scan-ready", "bench.end_to_end", ["--registrations", "400", "--rate", "20"],
              ["--registrations", "100", "--rate", "10"], None, _end_to_end),
    # 10,000 delegates take longer than everything else together: with --full, or `make bench-scaling`.
    Benchmark("cost as the event grows", "bench.scaling", ["--sizes", "100", "1000"],
              ["--sizes", "50", "500"], ["--sizes", "100", "1000", "10000"], _scaling),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.all", description=__doc__.split("\n\n")[0])
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="smaller sizes, for a first look")
    sizes.add_argument(
        "--full", action="store_true", help="the scaling run at 10,000 delegates too (about half an hour in all)"
    )
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    outcomes: list[dict[str, Any]] = []
    for benchmark in BENCHMARKS:
        output = RESULTS / f"{benchmark.output or benchmark.module.split('.')[-1]}.json"
        chosen = benchmark.quick_args if args.quick else (args.full and benchmark.full_args) or benchmark.args
        command = [sys.executable, "-m", benchmark.module, *chosen, "--output", str(output)]
        print(f"== {benchmark.name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
        started = time.monotonic()
        run = subprocess.run(command, stdout=subprocess.DEVNULL, check=False)
        seconds = round(time.monotonic() - started, 1)
        outcome: dict[str, Any] = {"benchmark": benchmark.name, "exit": run.returncode, "seconds": seconds}
        if run.returncode == 0 and output.is_file():
            report = json.loads(output.read_text())
            try:
                outcome["headline"] = benchmark.headline(report)
            except KeyError as exc:
                outcome["headline"] = [("figure missing from the report", str(exc), "")]
        outcomes.append(outcome)
    description = machine()
    (RESULTS / "summary.json").write_text(json.dumps({"machine": description, "benchmarks": outcomes}, indent=2) + "\n")
    (RESULTS / "summary.md").write_text(_markdown(description, outcomes))
    print((RESULTS / "summary.md").read_text())
    return 0 if all(o["exit"] == 0 for o in outcomes) else 1


def _markdown(machine: dict[str, Any], outcomes: list[dict[str, Any]]) -> str:
    lines = ["# Benchmark summary", ""]
    if machine:
        lines += [
            f"Machine: {machine.get('nproc')} cores ({machine.get('cpu_model')}), {machine.get('memory_gib')} GiB, "
            f"Linux {machine.get('kernel')}, Python {machine.get('python')}. Every service, the broker and the "
            "document server share these cores with the load generator.",
            "",
        ]
    lines += ["| benchmark | figure | measured | target |", "| --- | --- | --- | --- |"]
    for outcome in outcomes:
        if "headline" not in outcome:
            lines.append(f"| {outcome['benchmark']} | did not finish (exit {outcome['exit']}) | | |")
            continue
        for what, value, target in outcome["headline"]:
            lines.append(f"| {outcome['benchmark']} | {what} | {value} | {target} |")
    lines += ["", "Times: " + ", ".join(f"{o['benchmark']} {o['seconds']} s" for o in outcomes) + ".", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
