"""The one destination interface. The engine knows nothing of vendors; a destination knows
nothing of diffs: it receives batches of mapped records and answers per record."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import pyarrow as pa

from reverse_etl.syncs import SyncConfigError, SyncSpec


@dataclass(frozen=True)
class Capabilities:
    """What a destination can do; the engine plans batches and pacing from this."""

    modes: frozenset[str]
    batch_size: int
    requests_per_second: float | None = None
    max_concurrency: int = 1


@dataclass(frozen=True)
class RecordResult:
    key: str
    ok: bool
    error: str | None = None
    destination_id: str | None = None


class Destination(ABC):
    """Subclasses declare `name` and `capabilities` and implement `send`.

    Lifecycle per sync run: `open(sync)`, `send(batch)` any number of times, `close(success)`.
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

    def open(self, sync: SyncSpec, schema: pa.Schema) -> None:  # noqa: B027 - optional hook
        """Prepare a run (create a job, open a file); `schema` is that of every batch."""

    @abstractmethod
    def send(self, batch: pa.RecordBatch, key_column: str) -> list[RecordResult]:
        """Deliver one batch of mapped records (destination field names) and say per record
        what happened, in the batch's order."""

    def close(self, success: bool) -> dict[str, Any]:
        """Finish the run (commit a file, close a job); returns metadata worth recording."""
        return {}
