"""Pacing for destination requests: a token bucket shared by a sync's workers, and retries with
exponential backoff and full jitter that honour the destination's Retry-After."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from reverse_etl.destinations.base import RetryableError

T = TypeVar("T")


class TokenBucket:
    """At most `rate` acquisitions per second on average, bursts up to `burst`; thread-safe."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.capacity = max(1.0, burst if burst is not None else rate)
        self.tokens = self.capacity
        self.clock, self.sleep = clock, sleep
        self.updated = clock()
        self.lock = threading.Lock()

    def acquire(self) -> None:
        """Take a token, waiting for it if the bucket is empty. Tokens are reserved (the count
        may go negative), so waiters queue up in order and never spin."""
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            self.tokens -= 1
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            self.sleep(wait)

    def pause(self, seconds: float) -> None:
        """The destination said slow down: nothing goes out for `seconds` from now. Several
        workers hearing it at once pause once, not once each."""
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            self.tokens = min(self.tokens, -seconds * self.rate)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits up to base * 2**n (at most `cap`),
    or what the destination asked for when it said (Retry-After), whichever is longer."""

    attempts: int = 8
    base_seconds: float = 0.5
    cap_seconds: float = 60.0

    def delay(self, attempt: int, asked: float | None, rng: random.Random) -> float:
        backoff = rng.uniform(0, min(self.cap_seconds, self.base_seconds * 2**attempt))
        return max(backoff, asked or 0.0)


class DeadlineExceeded(RuntimeError):
    pass


def with_retries(call: Callable[[], T], policy: RetryPolicy, bucket: TokenBucket | None, deadline: float,
                 rng: random.Random, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, on_retry: Callable[[RetryableError, float], None] | None = None) -> T:
    """Run `call` (one request), paced by `bucket`, retrying RetryableError up to the policy's
    attempts; raises the last RetryableError, or DeadlineExceeded rather than wait past `deadline`."""
    for attempt in range(policy.attempts):
        if clock() >= deadline:
            raise DeadlineExceeded("the sync's deadline passed")
        if bucket is not None:
            bucket.acquire()
        try:
            return call()
        except RetryableError as error:
            if attempt + 1 == policy.attempts:
                raise
            wait = policy.delay(attempt, error.retry_after, rng)
            if clock() + wait >= deadline:
                raise DeadlineExceeded(f"the sync's deadline passed while backing off after: {error}") from error
            if error.retry_after and bucket is not None:
                bucket.pause(error.retry_after)
            if on_retry is not None:
                on_retry(error, wait)
            sleep(wait)
    raise AssertionError("unreachable")
