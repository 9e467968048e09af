"""A lean HTTP/1.1 keep-alive client for load generation: one connection per simulated phone.

A load generator shares this machine with the stack it measures, so every millisecond of its CPU is
taken from the services. General-purpose clients spend more per request on pool bookkeeping than
on the request; this one writes a prepared request to its own socket and reads one response.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit


class Http1Error(Exception):
    """The server closed the connection or answered something that is not HTTP/1.1."""


class Connection:
    def __init__(
        self, url: str, timeout: float = 60.0, headers: Mapping[str, str] | None = None, retry_stale: bool = False
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"plain http URLs only, not {url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._authority = parts.netloc
        self._timeout = timeout
        # Sent with every request, e.g. a door device's Authorization.
        self._headers = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        # A kept-alive connection the server closed while it was idle fails on its next request, as in
        # any HTTP client; with this set, such a request is sent once more on a new connection. Only
        # for requests that are safe to repeat (a scan, which carries its nonce).
        self._retry_stale = retry_stale

    async def post_json(self, path: str, payload: Any) -> tuple[int, bytes]:
        body = json.dumps(payload, separators=(",", ":")).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._authority}\r\n{self._headers}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        return await asyncio.wait_for(self._exchange(head + body), self._timeout)

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        reused = self._writer is not None
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        try:
            self._writer.write(request)
            status, length, close = await self._read_head(self._reader)
            body = await self._reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError) as exc:
            await self.close()
            if reused and self._retry_stale:
                return await self._exchange(request)
            raise Http1Error(type(exc).__name__) from exc
        if close:
            await self.close()
        return status, body

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> tuple[int, int, bool]:
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionResetError("closed by the server")
        if not status_line.startswith(b"HTTP/1.1 "):
            raise Http1Error("not an HTTP/1.1 response")
        status = int(status_line[9:12])
        length, close = 0, False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
            elif name == b"transfer-encoding":
                raise Http1Error("chunked responses are not expected here")
        return status, length, close

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass


class Pool:
    """Idle keep-alive connections to one server; a request due while every one is busy opens another.

    For load sent on a schedule (open loop): a request leaves at its time whatever earlier replies
    take, so none queues behind a slow one, and the pool grows to what the schedule needs.
    """

    def __init__(
        self, url: str, timeout: float = 60.0, headers: Mapping[str, str] | None = None, retry_stale: bool = False
    ) -> None:
        self._new = lambda: Connection(url, timeout, headers, retry_stale)
        self._idle: list[Connection] = []
        self._all: list[Connection] = []

    def take(self) -> Connection:
        if self._idle:
            return self._idle.pop()
        connection = self._new()
        self._all.append(connection)
        return connection

    def give(self, connection: Connection) -> None:
        self._idle.append(connection)

    @property
    def opened(self) -> int:
        return len(self._all)

    async def close(self) -> None:
        await asyncio.gather(*(connection.close() for connection in self._all))
