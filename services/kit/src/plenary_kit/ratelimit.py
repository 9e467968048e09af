"""Rate limits for the public and door endpoints: a token bucket per client, 429 with Retry-After.

Buckets live in the process, so with N replicas a client gets up to N times the rate; that still
stops one phone or script from flooding the service, which is the point. Behind a proxy the client
is the address the proxy forwards (uvicorn's proxy headers, trusted per FORWARDED_ALLOW_IPS).
`PLENARY_RATE_LIMITS=off` turns every limit off, for load tests from one machine.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request

from plenary_kit.errors import ApiError


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """`burst` requests at once per key, then `per_second` on average; the least recently seen keys go first
    once more than `max_keys` are held, so memory stays bounded whatever the number of clients."""

    def __init__(
        self, per_second: float, burst: int, max_keys: int = 50_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_second = per_second
        self.burst = burst
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds until it could."""
        now = self._clock()
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), at=now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.per_second)
        bucket.at = now
        self._buckets[key] = bucket
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.per_second


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class RateLimit:
    """One limit, shared by every route that uses it: `burst` requests at once per client, then `per_second`."""

    def __init__(
        self, name: str, per_second: float, burst: int, key: Callable[[Request], str] = client_address
    ) -> None:
        self.name = name
        self._buckets = TokenBuckets(per_second, burst)
        self._key = key

    def wait(self, request: Request) -> int:
        """0 when the request may go ahead, else whole seconds to wait (limits off: always 0)."""
        if str(request.app.state.runtime.settings.plenary_rate_limits).lower() == "off":
            return 0
        seconds = self._buckets.take(self._key(request))
        return max(1, math.ceil(seconds)) if seconds > 0 else 0

    async def check(self, request: Request) -> None:
        """As a route dependency: 429 `rate_limited` with Retry-After when over the limit."""
        seconds = self.wait(request)
        if seconds:
            raise ApiError(
                429,
                "rate_limited",
                f"Too many requests; please try again in {seconds} s.",
                retry_after_seconds=seconds,
            )

    @property
    def dependency(self) -> Any:
        return Depends(self.check)
