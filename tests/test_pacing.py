"""Pacing: the token bucket never lets more through a window than its rate and burst allow,
and retries back off within bounds, honour Retry-After and stop at the deadline."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reverse_etl.destinations.base import RetryableError
from reverse_etl.pacing import DeadlineExceeded, RetryPolicy, TokenBucket, with_retries


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


@given(
    rate=st.floats(1, 200), burst=st.floats(1, 50),
    gaps=st.lists(st.floats(0, 0.5), min_size=1, max_size=300), window=st.floats(0.1, 10),
)
def test_no_window_holds_more_than_burst_plus_rate_times_its_length(rate: float, burst: float, gaps: list[float], window: float) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, burst, clock=clock, sleep=clock.sleep)
    times = []
    for gap in gaps:
        clock.sleep(gap)
        bucket.acquire()
        times.append(clock.now)
    for i, start in enumerate(times):
        inside = sum(1 for t in times[i:] if t - start <= window)
        assert inside <= max(1.0, burst) + rate * window + 1e-6


@given(attempt=st.integers(0, 20), asked=st.none() | st.floats(0, 120), seed=st.integers(0, 2**32))
def test_backoff_is_jittered_capped_and_never_shorter_than_asked(attempt: int, asked: float | None, seed: int) -> None:
    policy = RetryPolicy(base_seconds=0.5, cap_seconds=30)
    delay = policy.delay(attempt, asked, random.Random(seed))
    assert (asked or 0) <= delay <= max(30, asked or 0)


def test_retries_until_success_then_gives_up_and_respects_the_deadline() -> None:
    clock = FakeClock()
    calls = []

    def flaky() -> str:
        calls.append(clock.now)
        if len(calls) < 3:
            raise RetryableError("HTTP 429", retry_after=2.0)
        return "ok"

    assert with_retries(flaky, RetryPolicy(attempts=5), None, 100, random.Random(1), sleep=clock.sleep, clock=clock) == "ok"
    assert calls[1] - calls[0] >= 2.0 and calls[2] - calls[1] >= 2.0

    def down() -> str:
        raise RetryableError("HTTP 503")

    with pytest.raises(RetryableError, match="503"):
        with_retries(down, RetryPolicy(attempts=3, base_seconds=0.01), None, clock.now + 100, random.Random(1), sleep=clock.sleep, clock=clock)
    with pytest.raises(DeadlineExceeded):
        with_retries(lambda: (_ for _ in ()).throw(RetryableError("429", retry_after=60)), RetryPolicy(), None, clock.now + 10,
                     random.Random(1), sleep=clock.sleep, clock=clock)
