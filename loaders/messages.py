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
_TYPES = frozenset(MESSAGE_TYPES)
_UNPARSED = object()


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


class RequestClock:
    """One request's receipt time and its caches: every message of a batch shares them, so a
    timestamp text is parsed once and a minute is formatted once."""

    __slots__ = ("received_us", "received_iso", "stamps", "_minutes")

    def __init__(self, received_us: int) -> None:
        self.stamps: dict[str, int | None] = {}
        self._minutes: dict[int, str] = {}
        self.received_us = received_us
        self.received_iso = self.iso(received_us)

    @classmethod
    def now(cls) -> "RequestClock":
        return cls((datetime.now(timezone.utc).replace(tzinfo=None) - EPOCH) // MICROSECOND)

    def micros(self, value: Any) -> int | None:
        if not isinstance(value, str):
            return None
        cached = self.stamps.get(value, _UNPARSED)
        if cached is _UNPARSED:
            cached = self.stamps[value] = epoch_us(value)
        return cached  # type: ignore[return-value]

    def iso(self, micros: int) -> str:
        """Epoch microseconds → `2026-10-01T12:00:00.123Z` (milliseconds, truncated)."""
        minute, ms = divmod(micros // 1000, 60_000)
        prefix = self._minutes.get(minute)
        if prefix is None:
            prefix = self._minutes[minute] = (EPOCH + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:")
        return "%s%02d.%03dZ" % (prefix, ms // 1000, ms % 1000)


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and (not value or value.isspace()))


def validation_error(message: Any, clock: RequestClock | None = None) -> str | None:
    """Why `message` is not a valid Segment-spec message, or None if it is."""
    return accept(message, clock or RequestClock(0), enrich=False)


def accept(
    message: Any,
    clock: RequestClock,
    batch_sent_at: Any = None,
    expected_type: str | None = None,
    enrich: bool = True,
) -> str | None:
    """Check one message against the spec's rules; if it passes and `enrich`, add the server's
    fields as Segment does (in place). Returns why it was refused, or None.

    Fields added: `receivedAt`; `sentAt` from the batch when the message has none;
    `originalTimestamp` defaulting to a server library's `timestamp`; `timestamp =
    receivedAt - (sentAt - originalTimestamp)` when both are known (else `timestamp` as sent,
    else `receivedAt`); `messageId` when missing; `type` lower-cased. One pass, written for
    speed: it runs for every collected message."""
    if not isinstance(message, dict):
        return "not a JSON object"
    get = message.get
    kind = get("type")
    if kind.__class__ is not str or kind not in _TYPES:  # the common case is already right
        if _is_blank(kind) or isinstance(kind, (dict, list)):
            return "missing 'type'"
        lowered = _text(kind).lower()
        if lowered not in _TYPES:
            return f"unknown type '{_text(kind)}' (expected one of {', '.join(MESSAGE_TYPES)})"
        kind = lowered
    if expected_type is not None and kind != expected_type:
        return f"type '{kind}' posted to /v1/{expected_type}"
    has_user = not _is_blank(get("userId"))
    if kind == "alias":
        if not has_user or _is_blank(get("previousId")):
            return "alias needs both 'previousId' and 'userId'"
    elif not has_user and _is_blank(get("anonymousId")):
        return "missing both 'userId' and 'anonymousId'"
    if kind == "track" and _is_blank(get("event")):
        return "track without 'event'"
    for key in OBJECT_KEYS:
        value = get(key)
        if value is not None and value.__class__ is not dict and not isinstance(value, dict):
            return f"'{key}' is not a JSON object"
    stamps = clock.stamps
    for key in TIMESTAMP_KEYS:
        value = get(key)
        if value is None:
            continue
        micros = stamps.get(value, _UNPARSED) if value.__class__ is str else None
        if micros is _UNPARSED:
            micros = stamps[value] = epoch_us(value)
        if micros is None:
            return f"'{key}' is not a timestamp: {_text(value)}"
    if not enrich:
        return None

    message["type"] = kind
    received_iso = clock.received_iso
    message["receivedAt"] = received_iso
    sent_at = get("sentAt")
    if sent_at is None and batch_sent_at is not None and clock.micros(batch_sent_at) is not None:
        sent_at = message["sentAt"] = batch_sent_at
    original = get("originalTimestamp")
    if original is None:
        original = get("timestamp")
        if original is not None:
            message["originalTimestamp"] = original
    if sent_at is not None and original is not None:
        if sent_at == original:
            message["timestamp"] = received_iso
        else:
            message["timestamp"] = clock.iso(clock.received_us - (stamps[sent_at] - stamps[original]))
    elif get("timestamp") is None:
        message["timestamp"] = received_iso
    if _is_blank(get("messageId")):
        message["messageId"] = f"corral-{uuid.uuid4().hex}"
    return None
