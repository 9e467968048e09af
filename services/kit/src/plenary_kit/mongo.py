"""MongoDB access shared by the services: one async client, transactions that retry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo import AsyncMongoClient
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
