"""`python -m plenary_kit.replay`: re-publish a service's outbox events from a time range.

Consumers are idempotent, so a replay only fills gaps (e.g. after a broker lost its
topics) and never doubles a ticket, an email or an admission.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime

from plenary_kit import topics
from plenary_kit.kafka import Publisher
from plenary_kit.mongo import connect
from plenary_kit.outbox import Outbox, default_window, replay
from plenary_kit.settings import ServiceSettings


def _when(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time with its offset, e.g. 2026-11-25T09:00:00+00:00")
    return moment


async def run(service: str, since: datetime, until: datetime, event_type: str | None) -> int:
    settings = ServiceSettings()
    client = connect(settings.mongodb_uri)
    publisher = Publisher(settings.kafka_bootstrap_servers)
    try:
        outbox = Outbox(client[settings.database_name(service)], topics.topic_for_source(service))
        return await replay(outbox, publisher, since, until, event_type)
    finally:
        await publisher.stop()
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plenary_kit.replay", description=__doc__)
    parser.add_argument("--service", required=True, choices=["registration", "ticketing", "notifications", "checkin"])
    since, until = default_window()
    parser.add_argument("--since", type=_when, default=since, help="ISO time with offset [24 hours ago]")
    parser.add_argument("--until", type=_when, default=until, help="ISO time with offset [now]")
    parser.add_argument("--type", dest="event_type", help="only this event type, e.g. registration.confirmed")
    args = parser.parse_args(argv)
    count = asyncio.run(run(args.service, args.since, args.until, args.event_type))
    print(f"re-published {count} event(s) from the {args.service} outbox")
    return 0


if __name__ == "__main__":
    sys.exit(main())
