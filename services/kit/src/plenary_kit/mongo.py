"""MongoDB access shared by the services: one async client, transactions that retry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import bson
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

T = TypeVar("T")

Session = AsyncClientSession
Document = dict[str, Any]

# The server's code for a unique key already taken.
DUPLICATE_KEY = 11000


def connect(uri: str) -> AsyncMongoClient[Document]:
    return AsyncMongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000, uuidRepresentation="standard")


async def in_transaction(
    client: AsyncMongoClient[Document], work: Callable[[Session], Awaitable[T]]
) -> T:
    """Run `work` in one majority-committed transaction, retried on transient conflicts."""
    async with client.start_session() as session:
        return await session.with_transaction(
            work,
            read_concern=ReadConcern("snapshot"),
            write_concern=WriteConcern("majority"),
        )


async def insert_all(collection: AsyncCollection[Document], documents: list[Document], session: Session) -> None:
    """insert_many in order, with a duplicate key reported as DuplicateKeyError, as insert_one reports it.

    insert_many reports it as a BulkWriteError; one that holds any other error is raised as it is.
    """
    try:
        await collection.insert_many(documents, ordered=True, session=session)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if not errors or any(error.get("code") != DUPLICATE_KEY for error in errors):
            raise
        raise DuplicateKeyError(errors[0].get("errmsg", "duplicate key"), DUPLICATE_KEY, errors[0]) from exc


async def by_id(
    collection: AsyncCollection[Document],
    ids: list[Any],
    session: Session | None = None,
    projection: Document | None = None,
) -> dict[Any, Document]:
    """The documents with these ids that exist, by id, in one request (none for no ids)."""
    if not ids:
        return {}
    cursor = collection.find({"_id": {"$in": ids}}, projection, session=session)
    return {row["_id"]: row async for row in cursor}


async def set_fields(
    collection: AsyncCollection[Document],
    changes: Mapping[Any, Document],
    session: Session,
    *,
    on_insert: Document | None = None,
    existing: Mapping[Any, Document] | None = None,
) -> dict[Any, Document]:
    """Set top-level fields on each document by id, creating those that do not exist; returns each as it now is.

    What `UpdateOne({"_id": id}, {"$set": fields, "$setOnInsert": on_insert}, upsert=True)` for each
    would do. An upsert that creates its document costs the embedded document server two and a half
    times an insert, and a projection fed by a surge of registrations creates hundreds at a time.
    Here one read finds which documents exist (none, when the caller has just read them and passes
    them as `existing`), one insert creates the others and one bulk update changes those found.

    For a transaction only: a document created concurrently after its snapshot makes the insert a
    write conflict, and the transaction runs again, this time finding the document.
    """
    for fields in changes.values():
        if any("." in name or name.startswith("$") for name in fields):
            raise ValueError("set_fields sets top-level fields only")
    found = existing if existing is not None else await by_id(collection, list(changes), session)
    created = {key: {"_id": key, **(on_insert or {}), **fields} for key, fields in changes.items() if key not in found}
    if created:
        await insert_all(collection, list(created.values()), session)
    updates = {key: fields for key, fields in changes.items() if key in found and fields}
    if updates:
        await collection.bulk_write(
            [UpdateOne({"_id": key}, {"$set": fields}) for key, fields in updates.items()],
            ordered=True,
            session=session,
        )
    # As a read would return them: through BSON, so times are to the millisecond as stored.
    options = collection.codec_options
    stored: dict[Any, Document] = {}
    for key in changes:
        document = created.get(key) or {**found[key], **changes[key]}
        stored[key] = bson.decode(bson.encode(document, codec_options=options), codec_options=options)
    return stored


async def insert_missing(
    collection: AsyncCollection[Document], documents: list[Document], session: Session
) -> set[Any]:
    """Insert each document whose `_id` does not exist yet; returns the ids inserted. For a transaction only.

    What an upsert with `$setOnInsert` of the whole document does, at the cost of an insert (see `set_fields`).
    """
    found = await by_id(collection, [document["_id"] for document in documents], session, {"_id": 1})
    created: dict[Any, Document] = {}
    for document in documents:
        if document["_id"] not in found:
            created.setdefault(document["_id"], document)
    if created:
        await insert_all(collection, list(created.values()), session)
    return set(created)
