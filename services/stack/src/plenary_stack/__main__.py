"""`python -m plenary_stack up`: run the embedded stack in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from plenary_kit import logs
from plenary_stack.demo import seed
from plenary_stack.stack import SERVICES, EmbeddedStack, StackConfig


def _config() -> StackConfig:
    env = os.environ
    return StackConfig(
        var=Path(env.get("PLENARY_VAR", "var")),
        smtp_port=int(env.get("SMTP_PORT", "1025")),
        kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
        mongodb_uri=env.get("MONGODB_URI") or None,
        smtp_host=env.get("SMTP_HOST") or None,
        admin_token=env.get("PLENARY_ADMIN_TOKEN") or None,
    )


def up() -> int:
    logs.configure("stack", level="WARNING")
    stack = EmbeddedStack(_config())
    stop = threading.Event()

    def on_signal(signum: int, _: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print("Starting Plenary…", flush=True)
    try:
        stack.start()
        event = seed(stack.config.url("registration"), stack.admin_token)
    except Exception as exc:
        print(f"Plenary could not start: {exc}", file=sys.stderr, flush=True)
        stack.stop()
        return 1
    _announce(stack, event)
    while not stop.wait(1.0):
        failed = stack.failed_children()
        if failed:
            names = ", ".join(child.name for child in failed)
            print(f"Stopping: {names} exited unexpectedly; logs in {stack.var / 'log'}", file=sys.stderr)
            stack.stop()
            return 1
    print("\nStopping Plenary…", flush=True)
    stack.stop()
    print("Stopped.", flush=True)
    return 0


def _announce(stack: EmbeddedStack, event: dict[str, Any]) -> None:
    config = stack.config
    token_source = (
        "PLENARY_ADMIN_TOKEN" if os.environ.get("PLENARY_ADMIN_TOKEN") else str(stack.var / "admin.token")
    )
    lines = ["", "Plenary is ready.", ""]
    for name in SERVICES:
        lines.append(f"  {name:<14} {config.url(name)}   (API docs: {config.url(name)}/docs)")
    lines += [
        "",
        f"  Kafka          {config.bootstrap}{'' if stack.embedded_broker else '  (external)'}",
        f"  MongoDB        {config.mongo}{'' if stack.embedded_documents else '  (external)'}",
        f"  SMTP           {config.smtp_host or '127.0.0.1'}:{config.smtp_port}"
        + ("" if config.smtp_host else f"  (every message kept in {config.maildir})"),
        f"  Logs           {stack.var / 'log'}",
        "",
        f"  Organiser token: {token_source}",
        f"  Demo event:      {config.url('registration')}/api/v1/events/{event['id']}",
        f"  Register here:   {config.url('registration')}/events/{event['slug']}",
        f"  Live dashboard:  {config.url('checkin')}/dashboard?event={event['id']}",
        f"  Door app:        {config.url('checkin')}/scan  (enrol a phone from the dashboard)",
        "",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="plenary_stack")
    parser.add_argument("command", choices=["up"])
    parser.parse_args()
    return up()


if __name__ == "__main__":
    sys.exit(main())
