"""The token bucket behind every rate limit, on a clock the test moves."""

from __future__ import annotations

import pytest

from plenary_kit.ratelimit import TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_the_steady_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(per_second=0.5, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(2.0)
    clock.now += 2.0
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(2.0)


def test_clients_do_not_share_an_allowance() -> None:
    buckets = TokenBuckets(per_second=1, burst=1, clock=Clock())
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0.0


def test_an_idle_client_refills_only_up_to_the_burst() -> None:
    clock = Clock()
    buckets = TokenBuckets(per_second=10, burst=2, clock=clock)
    buckets.take("a")
    clock.now += 3600
    assert [buckets.take("a") == 0.0 for _ in range(3)] == [True, True, False]


def test_memory_stays_bounded_dropping_the_longest_unseen_clients() -> None:
    clock = Clock()
    buckets = TokenBuckets(per_second=1, burst=1, max_keys=100, clock=clock)
    for n in range(1000):
        buckets.take(f"client-{n}")
    assert len(buckets._buckets) == 100
    # The most recent clients are still held back; the oldest were forgotten, with a fresh allowance.
    assert buckets.take("client-999") > 0
    assert buckets.take("client-0") == 0.0
