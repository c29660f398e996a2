"""The Segment spec's rules for one message, in Python: what the collector applies per request.

`corral load` applies the same rules in SQL, in bulk (loaders/load.py); a property test holds the
two to each other. Rules, in order: `type` known; `userId` or `anonymousId` (alias: `previousId`
and `userId`); `track` has `event`; objects where objects belong; timestamps that parse.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
SHORT_TYPES = {t[0]: t for t in MESSAGE_TYPES}  # analytics.js posts to /v1/t, /v1/i, ...
OBJECT_KEYS = ("traits", "properties", "context", "integrations")
TIMESTAMP_KEYS = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _text(value: Any) -> str:
    """How a JSON scalar reads as text (as DuckDB's json_extract_string gives it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


EPOCH = datetime(1970, 1, 1)
EPOCH_UTC = EPOCH.replace(tzinfo=timezone.utc)
MICROSECOND = timedelta(microseconds=1)


def epoch_us(value: Any) -> int | None:
    """An ISO 8601 timestamp as integer microseconds since the epoch (UTC; no offset means UTC),
    or None if it is not one. Exact, and cheap: no time-zone conversion."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return (parsed - (EPOCH if parsed.tzinfo is None else EPOCH_UTC)) // MICROSECOND


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 timestamp as naive UTC, or None if it is not one."""
    micros = epoch_us(value)
    return None if micros is None else EPOCH + timedelta(microseconds=micros)


class RequestClock:
    """One request's receipt time and its caches: every message of a batch shares them, so a
    timestamp text is parsed once and a date is formatted once."""

    __slots__ = ("received_us", "received_iso", "_stamps", "_days")

    def __init__(self, received_us: int) -> None:
        self._stamps: dict[str, int | None] = {}
        self._days: dict[int, str] = {}
        self.received_us = received_us
        self.received_iso = self.iso(received_us)

    @classmethod
    def now(cls) -> "RequestClock":
        return cls((datetime.now(timezone.utc).replace(tzinfo=None) - EPOCH) // MICROSECOND)

    def micros(self, value: Any) -> int | None:
        if not isinstance(value, str):
            return None
        cached = self._stamps.get(value, -1)
        if cached == -1:
            cached = self._stamps[value] = epoch_us(value)
        return cached

    def iso(self, micros: int) -> str:
        """Epoch microseconds → `2026-10-01T12:00:00.123Z` (milliseconds, truncated)."""
        day, ms = divmod(micros // 1000, 86_400_000)
        prefix = self._days.get(day)
        if prefix is None:
            prefix = self._days[day] = (EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")
        hours, ms = divmod(ms, 3_600_000)
        minutes, ms = divmod(ms, 60_000)
        seconds, ms = divmod(ms, 1000)
        return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}Z"


def validation_error(message: Any, clock: RequestClock | None = None) -> str | None:
    """Why `message` is not a valid Segment-spec message, or None if it is. `clock` caches
    parsed timestamps across the messages of one request."""
    if not isinstance(message, dict):
        return "not a JSON object"
    kind = message.get("type")
    if _blank(kind) or isinstance(kind, (dict, list)):
        return "missing 'type'"
    if _text(kind).lower() not in MESSAGE_TYPES:
        return f"unknown type '{_text(kind)}' (expected one of {', '.join(MESSAGE_TYPES)})"
    kind = _text(kind).lower()
    get = message.get
    user_id = get("userId")
    has_user = user_id is not None and (not isinstance(user_id, str) or user_id.strip() != "")
    if kind == "alias":
        if _blank(get("previousId")) or not has_user:
            return "alias needs both 'previousId' and 'userId'"
    elif not has_user and _blank(get("anonymousId")):
        return "missing both 'userId' and 'anonymousId'"
    if kind == "track" and _blank(get("event")):
        return "track without 'event'"
    for key in OBJECT_KEYS:
        value = get(key)
        if value is not None and not isinstance(value, dict):
            return f"'{key}' is not a JSON object"
    parse = clock.micros if clock is not None else epoch_us
    for key in TIMESTAMP_KEYS:
        value = get(key)
        if value is not None and parse(value) is None:
            return f"'{key}' is not a timestamp: {_text(value)}"
    return None


def enrich(message: dict[str, Any], clock: RequestClock, batch_sent_at: Any = None) -> None:
    """Server-side fields, as Segment sets them (in place): `receivedAt`; `sentAt` from the
    message or its batch; `originalTimestamp` defaulting to a server library's `timestamp`;
    `timestamp = receivedAt - (sentAt - originalTimestamp)` when `sentAt` is known; a
    `messageId` when missing; `type` lower-cased. Call only on valid messages."""
    message["type"] = _text(message["type"]).lower()
    message["receivedAt"] = clock.received_iso
    if message.get("sentAt") is None and clock.micros(batch_sent_at) is not None:
        message["sentAt"] = batch_sent_at
    if message.get("originalTimestamp") is None and message.get("timestamp") is not None:
        message["originalTimestamp"] = message["timestamp"]
    sent_at, original = message.get("sentAt"), message.get("originalTimestamp")
    if sent_at is not None and original is not None:
        if sent_at == original:
            message["timestamp"] = clock.received_iso
        else:
            skew = clock.micros(sent_at) - clock.micros(original)  # type: ignore[operator]
            message["timestamp"] = clock.iso(clock.received_us - skew)
    elif message.get("timestamp") is None:
        message["timestamp"] = clock.received_iso
    if _blank(message.get("messageId")):
        message["messageId"] = f"corral-{uuid.uuid4().hex}"
