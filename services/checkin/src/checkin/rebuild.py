"""`python -m checkin rebuild`: rebuild the ticket projection by replaying the topics from the start.

The projection (tickets, registrations, keys, event details and the `registered` figure) is
derived from `ticket.*` and `registration.*` events alone, so it can be thrown away and made again:
after a bug fix in a handler, or to check that what is stored matches the history. Check-in's own
records (admissions, scans, alerts, devices) are kept as they are.

Snapshot versions keep counting upwards, so door devices receive every rebuilt ticket as a change.
While it runs the organiser's `registered` figure is low; scans keep working, and events the
service consumes meanwhile are applied twice, which its handlers make harmless.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from checkin.handlers import Projection
from checkin.main import SERVICE
from checkin.store import Store
from plenary_kit.consumer import PROCESSED, Consumer
from plenary_kit.kafka import Publisher
from plenary_kit.logs import get_logger
from plenary_kit.mongo import connect
from plenary_kit.settings import ServiceSettings

log = get_logger(__name__)

PROJECTION = ("tickets", "registrations", "keys", "events")


async def rebuild(settings: ServiceSettings) -> dict[str, Any]:
    client = connect(settings.mongodb_uri)
    publisher = Publisher(settings.kafka_bootstrap_servers)
    try:
        db = client[settings.database_name(SERVICE)]
        store = Store(db)
        await store.prepare()
        cleared = {name: (await db[name].delete_many({})).deleted_count for name in PROJECTION}
        await store.counters.delete_many({"kind": "registered"})
        name = f"{SERVICE}-rebuild-{uuid.uuid4().hex[:8]}"
        replayer = Consumer(
            name,
            Projection(store).handlers(),
            client=client,
            db=db,
            publisher=publisher,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            max_attempts=settings.consumer_max_attempts,
            retry_base_seconds=settings.consumer_retry_base_seconds,
        )
        read = await replayer.replay_all()
        # The replay's own markers have done their work; the live consumer's are untouched.
        await db[PROCESSED].delete_many({"_id": {"$regex": f"^{name}:"}})
        rebuilt = {collection: await db[collection].count_documents({}) for collection in PROJECTION}
        log.info("projection_rebuilt", events_read=read, cleared=cleared, rebuilt=rebuilt)
        return {"events_read": read, "cleared": cleared, "rebuilt": rebuilt}
    finally:
        await publisher.stop()
        await client.close()


def main() -> None:
    outcome = asyncio.run(rebuild(ServiceSettings()))
    print(f"rebuilt the checkin projection from {outcome['events_read']} event(s): {outcome['rebuilt']}")
