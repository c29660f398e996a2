"""The interface of destinations that take events (event syncs, reverse_etl/events.py).

An event destination receives Segment-spec messages (dicts with type, messageId, userId,
anonymousId, event/name, properties/traits, context, timestamp) in order, in batches the
engine sizes from `event_capabilities` (events per request, bytes per request and per event,
as each wire format counts them through `encode`), and answers per event with RecordResult
(key: the message id). Errors are those of base.py: RetryableError, BatchRejected,
AuthorizationFailed. A class may be both a Destination (records) and an EventDestination.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from reverse_etl.destinations.base import RecordResult
from reverse_etl.syncs import SyncConfigError

if TYPE_CHECKING:
    from reverse_etl.syncs import EventSyncSpec


@dataclass(frozen=True)
class EventCapabilities:
    """`batch_size` events per request, at most `max_batch_bytes` per request body (the events'
    encoded sizes plus `envelope_bytes` and a separator each) and `max_event_bytes` per event;
    `requests_per_second`/`burst` pace the sync; `types`: the message types it takes (others are
    left out in the warehouse, like a filter), all when None."""

    batch_size: int
    max_batch_bytes: int | None = None
    max_event_bytes: int | None = None
    envelope_bytes: int = 256
    requests_per_second: float | None = None
    burst: float | None = None
    types: frozenset[str] | None = None


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


class EventDestination(ABC):
    """Lifecycle per run: `check_events(sync)` (before anything is read), `open_events(sync)`,
    `send_events(events, encoded)` one batch at a time (in order), `close_events()`."""

    name: ClassVar[str]
    event_capabilities: ClassVar[EventCapabilities]

    def __init__(self, env: Mapping[str, str], client: httpx.Client | None = None) -> None:
        self.env = env
        self.client = client

    def check_events(self, sync: EventSyncSpec) -> None:  # optional hook
        """Refuse an event sync this destination cannot run (settings, env), before anything is sent."""

    def open_events(self, sync: EventSyncSpec) -> None:  # optional hook
        self.event_sync = sync

    def encode(self, event: dict[str, Any]) -> bytes:
        """The event as it travels in a request body (what the size limits count)."""
        return json_bytes(event)

    @abstractmethod
    def send_events(self, events: list[dict[str, Any]], encoded: list[bytes]) -> list[RecordResult]:
        """Deliver one batch (`encoded[i]` is `encode(events[i])`) and say per event, in order,
        what happened."""

    def close_events(self) -> dict[str, Any]:
        return {}


def event_destinations() -> dict[str, type[EventDestination]]:
    """Every EventDestination subclass with a name in a module of reverse_etl.destinations."""
    import reverse_etl.destinations as package

    found: dict[str, type[EventDestination]] = {}
    for module in pkgutil.iter_modules(package.__path__):
        loaded = importlib.import_module(f"{package.__name__}.{module.name}")
        for value in vars(loaded).values():
            if isinstance(value, type) and issubclass(value, EventDestination) and value.__module__ == loaded.__name__ \
                    and getattr(value, "name", None):
                found[value.name] = value
    return found


def make_event_destination(name: str, env: Mapping[str, str], client: httpx.Client | None = None) -> EventDestination:
    known = event_destinations()
    if name not in known:
        raise SyncConfigError(f"destination {name!r} does not take events (event destinations: {', '.join(sorted(known))})")
    return known[name](env=env, client=client)
