"""`python -m plenary_kit.deadletters`: list the events consumers gave up on, and send them round again.

A consumer that cannot apply an event after its retries parks it on `<topic>.dlq` with headers
saying which consumer failed, why, and where the event came from, and carries on. Once the cause is
fixed, `redrive` publishes the parked events back to their original topic with their original key.
Every consumer of that topic sees them again; the ones that had applied them skip them as
duplicates (consumers are idempotent), and the one that failed applies them now.

    python -m plenary_kit.deadletters list --topic registration.v1
    python -m plenary_kit.deadletters redrive --topic registration.v1 [--consumer ticketing] [--offset 3 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from plenary_kit import topics
from plenary_kit.kafka import Publisher, read_to_end
from plenary_kit.settings import ServiceSettings


@dataclass(frozen=True)
class DeadLetter:
    """One parked event: where it sits on the dead-letter topic, and what its headers say."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def consumer(self) -> str:
        return self.headers.get("dlq_consumer", "")

    def summary(self) -> dict[str, Any]:
        """What an operator needs to decide on it; the event itself stays out (it may hold personal data)."""
        return {
            "dlq_partition": self.partition,
            "dlq_offset": self.offset,
            "consumer": self.consumer,
            "error": self.headers.get("dlq_error", ""),
            "topic": self.headers.get("dlq_topic", ""),
            "partition": self.headers.get("dlq_partition", ""),
            "offset": self.headers.get("dlq_offset", ""),
            "attempts": self.headers.get("dlq_attempts", ""),
            "at": self.headers.get("dlq_at", ""),
            "bytes": len(self.value),
        }


async def dead_letters(bootstrap_servers: str, topic: str) -> list[DeadLetter]:
    """Every event parked for `topic`, oldest first within each partition."""
    found: list[DeadLetter] = []
    async for records in read_to_end(bootstrap_servers, [topics.dead_letter(topic)], "plenary-deadletters"):
        for record in records:
            headers = {name: value.decode(errors="replace") for name, value in record.headers}
            found.append(DeadLetter(record.partition, record.offset, record.key, record.value or b"", headers))
    return found


async def redrive(
    bootstrap_servers: str, topic: str, consumer: str | None = None, offsets: Sequence[int] = ()
) -> list[DeadLetter]:
    """Publish the chosen parked events back to `topic` with their key; returns those sent."""
    chosen = [
        letter
        for letter in await dead_letters(bootstrap_servers, topic)
        if (consumer is None or letter.consumer.startswith(consumer)) and (not offsets or letter.offset in offsets)
    ]
    publisher = Publisher(bootstrap_servers)
    try:
        if chosen:
            await publisher.publish(
                [
                    (
                        topic,
                        (letter.key or b"").decode(errors="replace"),
                        letter.value,
                        [("redriven_from", f"{letter.partition}:{letter.offset}".encode())],
                    )
                    for letter in chosen
                ]
            )
    finally:
        await publisher.stop()
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plenary_kit.deadletters", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="print each parked event as a JSON line")
    listing.add_argument("--topic", required=True, choices=topics.ALL)
    sending = commands.add_parser("redrive", help="publish parked events back to their topic")
    sending.add_argument("--topic", required=True, choices=topics.ALL)
    sending.add_argument("--consumer", help="only those this consumer group gave up on, e.g. ticketing")
    sending.add_argument("--offset", type=int, action="append", default=[], help="only this dead-letter offset")
    args = parser.parse_args(argv)
    bootstrap = ServiceSettings().kafka_bootstrap_servers
    if args.command == "list":
        for letter in asyncio.run(dead_letters(bootstrap, args.topic)):
            print(json.dumps(letter.summary()))
        return 0
    sent = asyncio.run(redrive(bootstrap, args.topic, args.consumer, args.offset))
    print(f"re-published {len(sent)} dead-lettered event(s) to {args.topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
