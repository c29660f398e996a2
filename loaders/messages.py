"""The Segment spec's rules for one message, in Python: what the collector applies per request.

`corral load` applies the same rules in SQL, in bulk (loaders/load.py); a property test holds the
two to each other. Rules, in order: `type` known; `userId` or `anonymousId` (alias: `previousId`
and `userId`); `track` has `event`; objects where objects belong; timestamps that parse.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
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


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 timestamp as naive UTC, or None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed


def validation_error(message: Any) -> str | None:
    """Why `message` is not a valid Segment-spec message, or None if it is."""
    if not isinstance(message, dict):
        return "not a JSON object"
    kind = message.get("type")
    if _blank(kind) or isinstance(kind, (dict, list)):
        return "missing 'type'"
    if _text(kind).lower() not in MESSAGE_TYPES:
        return f"unknown type '{_text(kind)}' (expected one of {', '.join(MESSAGE_TYPES)})"
    kind = _text(kind).lower()
    get = message.get
    if kind == "alias":
        if _blank(get("previousId")) or _blank(get("userId")):
            return "alias needs both 'previousId' and 'userId'"
    elif _blank(get("userId")) and _blank(get("anonymousId")):
        return "missing both 'userId' and 'anonymousId'"
    if kind == "track" and _blank(get("event")):
        return "track without 'event'"
    for key in OBJECT_KEYS:
        value = get(key)
        if value is not None and not isinstance(value, dict):
            return f"'{key}' is not a JSON object"
    for key in TIMESTAMP_KEYS:
        value = get(key)
        if value is not None and parse_timestamp(value) is None:
            return f"'{key}' is not a timestamp: {_text(value)}"
    return None


def iso(moment: datetime) -> str:
    """Naive UTC → `2026-10-01T12:00:00.123Z`."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def enrich(message: dict[str, Any], received_at: datetime, received_iso: str, batch_sent_at: Any = None) -> None:
    """Server-side fields, as Segment sets them (in place): `receivedAt`; `sentAt` from the
    message or its batch; `originalTimestamp` defaulting to a server library's `timestamp`;
    `timestamp = receivedAt - (sentAt - originalTimestamp)` when `sentAt` is known; a
    `messageId` when missing; `type` lower-cased. Call only on valid messages."""
    message["type"] = _text(message["type"]).lower()
    message["receivedAt"] = received_iso
    if message.get("sentAt") is None and batch_sent_at is not None and parse_timestamp(batch_sent_at) is not None:
        message["sentAt"] = batch_sent_at
    if message.get("originalTimestamp") is None and message.get("timestamp") is not None:
        message["originalTimestamp"] = message["timestamp"]
    sent_at = parse_timestamp(message.get("sentAt"))
    original = parse_timestamp(message.get("originalTimestamp"))
    if sent_at is not None and original is not None:
        message["timestamp"] = iso(received_at - (sent_at - original))
    elif message.get("timestamp") is None:
        message["timestamp"] = received_iso
    if _blank(message.get("messageId")):
        message["messageId"] = f"corral-{uuid.uuid4().hex}"
