"""What every benchmark does around its runs: a stack of its own, clean stops, one JSON report.

The stack runs under a temporary directory on free ports. Ctrl-C, SIGTERM or SIGHUP stop it and
still report the runs that finished. Stdout carries only the JSON, which is also written to a file;
progress and anything the stack's libraries print go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import FrameType
from typing import Any

from plenary_stack.stack import EmbeddedStack, StackConfig

Run = dict[str, Any]

# As in the test suite: rebalances on the embedded broker wait about half the session timeout, and
# every request comes from one client, so the public rate limits are off.
STACK_ENV = {
    "PLENARY_RATE_LIMITS": "off",
    "KAFKA_SESSION_TIMEOUT_MS": "2000",
    "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
    "CONSUMER_RETRY_BASE_SECONDS": "0.05",
    "CONSUMER_MAX_ATTEMPTS": "3",
}


def stack_config(var: Path, extra_env: dict[str, str] | None = None) -> StackConfig:
    return StackConfig.isolated(var, "bench", {**STACK_ENV, **(extra_env or {})})


def _stop_on_signal(signum: int, _: FrameType | None) -> None:
    # SIGTERM and SIGHUP unwind like Ctrl-C (asyncio.run cancels its task cleanly on SIGINT),
    # so the `finally` in run_benchmark stops the stack.
    print(f"received signal {signum}", file=sys.stderr)
    signal.raise_signal(signal.SIGINT)


def run_benchmark(
    name: str,
    config: Callable[[Path], StackConfig],
    all_runs: Callable[[EmbeddedStack, list[Run]], Coroutine[Any, Any, None]],
    report: Callable[[list[Run]], dict[str, Any]],
    output: Path,
    keep: bool = False,
) -> int:
    """Start a stack, let `all_runs` append its runs, stop the stack, print and write the report.

    The exit status is 130 when interrupted (the runs finished so far are still reported) and 1
    when no run finished.
    """
    out, sys.stdout = sys.stdout, sys.stderr
    var = Path(tempfile.mkdtemp(prefix=f"plenary-bench-{name}-"))
    stack = EmbeddedStack(config(var))
    # Started in the background, a process inherits SIGINT ignored; the benchmark must still stop on it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)
    runs: list[Run] = []
    status = 0
    try:
        print(f"starting the embedded stack in {var}", file=sys.stderr)
        stack.start()
        asyncio.run(all_runs(stack, runs))
    except KeyboardInterrupt:
        print("interrupted; stopping the stack", file=sys.stderr)
        status = 130
    finally:
        # A second Ctrl-C must not leave half the stack running.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        stack.stop()
        if keep:
            print(f"kept {var}", file=sys.stderr)
        else:
            shutil.rmtree(var, ignore_errors=True)
    if not runs:
        return status or 1
    text = json.dumps(report(runs), indent=2, ensure_ascii=False)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text + "\n")
    print(text, file=out, flush=True)
    return status
