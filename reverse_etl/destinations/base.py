"""The one destination interface. The engine knows nothing of vendors; a destination knows
nothing of diffs: it receives batches of mapped records and answers per record."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx
import pyarrow as pa

from reverse_etl.syncs import SyncConfigError, SyncSpec

OPERATIONS = ("upsert", "insert", "update", "delete", "add", "remove")
REMOVALS = ("delete", "remove")  # the operations that take a record away


@dataclass(frozen=True)
class Capabilities:
    """What a destination can do; the engine plans batches and pacing from this.

    `requests_per_second` and `burst` feed the token bucket shared by the sync's workers;
    `snapshot` destinations (files) get every current row each run that has any change."""

    modes: frozenset[str]
    batch_size: int
    requests_per_second: float | None = None
    burst: float | None = None
    max_concurrency: int = 1
    snapshot: bool = False


class RetryableError(Exception):
    """The request may succeed later (429, 5xx, timeout); `retry_after` in seconds if the
    destination said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BatchRejected(Exception):
    """The destination refused the whole request (a 4xx other than 429): every record of the
    batch failed with this message; retrying the same request now would not help."""


class AuthorizationFailed(BatchRejected):
    """The destination refused the credentials (401, 403): the sync stops sending, since every
    further request would be refused the same way."""


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After (seconds or an HTTP date), else a reset header, as seconds from now."""
    value = response.headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
            except (TypeError, ValueError):
                return None
    for header in ("X-RateLimit-Reset-After", "RateLimit-Reset"):
        if response.headers.get(header, "").replace(".", "", 1).isdigit():
            return float(response.headers[header])
    return None


def send_request(client: httpx.Client | None, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
    """One HTTP request, redirects not followed; a timeout or a connection failure is a
    RetryableError naming `what` (the status of the answer is the caller's to judge)."""
    assert client is not None, f"{what}: the destination needs an HTTP client"
    try:
        return client.request(method, url, follow_redirects=False, **kwargs)
    except httpx.TimeoutException as exc:
        raise RetryableError(f"{what}: timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise RetryableError(f"{what}: {type(exc).__name__}: {exc}") from exc


def body_text(response: httpx.Response) -> str:
    return response.text[:500]


def raise_for_status(response: httpx.Response, what: str, describe: Callable[[httpx.Response], str] = body_text,
                     throttled_pause: float | None = None, pause: Callable[[float], None] | None = None) -> None:
    """How every HTTP destination reads a status: a 2xx returns; 429 and 5xx are RetryableError
    (waiting what Retry-After or a rate-limit header asks, else `throttled_pause` after a 429,
    and after a 429 `pause` makes every worker wait that long); 401 and 403 AuthorizationFailed;
    any other status BatchRejected. Messages name `what` and the vendor's error (`describe`)."""
    status = response.status_code
    if 200 <= status < 300:
        return
    if status == 429 or status >= 500:
        asked = retry_after_seconds(response)
        wait = asked if asked is not None or status != 429 else throttled_pause
        if status == 429 and wait and pause is not None:
            pause(wait)
        raise RetryableError(f"{what}: HTTP {status}: {describe(response)}", wait)
    if status in (401, 403):
        raise AuthorizationFailed(f"{what}: HTTP {status}: {describe(response)}")
    raise BatchRejected(f"{what}: HTTP {status}: {describe(response)}")


def json_answer(response: httpx.Response, what: str, loads: Callable[[bytes], Any] = json.loads) -> Any:
    """The body of a successful answer as JSON ({} when empty), or BatchRejected saying it is not."""
    if not response.content:
        return {}
    try:
        return loads(response.content)
    except ValueError:
        raise BatchRejected(f"{what}: HTTP {response.status_code} with a body that is not JSON: {response.text[:200]!r}") from None


@dataclass(frozen=True)
class RecordResult:
    key: str
    ok: bool
    error: str | None = None
    destination_id: str | None = None


class Destination(ABC):
    """Subclasses declare `name` and `capabilities` and implement `send`.

    Lifecycle per sync run: `open(sync)`, `send(batch, key, operation)` any number of times
    (from up to `max_concurrency` threads at once), `close(success)`. `send` raises
    RetryableError (the engine backs off and retries) or BatchRejected (every record failed).
    Settings come from the sync declaration, credentials and base URLs from `env`, and HTTP
    goes through the injected `client` so tests point it at local servers.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def __init__(self, env: Mapping[str, str], client: httpx.Client | None = None) -> None:
        self.env = env
        self.client = client

    def check(self, sync: SyncSpec) -> None:
        """Refuse a sync this destination cannot run, before anything is sent."""
        if sync.mode not in self.capabilities.modes:
            raise SyncConfigError(
                f"sync {sync.name!r}: destination {self.name!r} does not support mode {sync.mode!r} "
                f"(supported: {', '.join(sorted(self.capabilities.modes))})"
            )

    def snapshot_exists(self, sync: SyncSpec) -> bool:
        """Snapshot destinations: whether the last delivered snapshot is still there."""
        return False

    def open(self, sync: SyncSpec, schema: pa.Schema) -> None:
        """Prepare a run (create a job, open a file); `schema` is that of every batch."""

    @abstractmethod
    def send(self, batch: pa.RecordBatch, key_column: str, operation: str) -> list[RecordResult]:
        """Deliver one batch of mapped records (destination field names; `destination_id`
        holds the id the destination gave a record before, or null) for one operation of
        OPERATIONS, and say per record what happened, in the batch's order."""

    def close(self, success: bool) -> dict[str, Any]:
        """Finish the run (commit a file, close a job); returns metadata worth recording."""
        return {}
