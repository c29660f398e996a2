"""Webhook importers: a vendor's JSON webhook → Segment `track` messages, by a declared mapping.

Mappings live in one YAML file (`CORRAL_WEBHOOKS`, default `loaders/webhooks.yml`):

    chat_assistant:                  # POST /v1/webhook/chat_assistant
      events: data.events            # optional: where the list of events is; default: the body is one event
      event: "Assistant {type}"      # the track event name; {dotted.path} placeholders
      message_id: id                 # dotted paths into each event
      user_id: user.id
      anonymous_id: visitor_id
      timestamp: created_at
      properties:                    # property name: dotted path
        conversation_id: conversation.id

A mapping with an unknown key, a missing `event`, or a non-string path is refused when the
collector starts, naming the file and the mapping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PATH = Path(__file__).with_name("webhooks.yml")
PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.\-]+)\}")
ID_KEYS = ("message_id", "user_id", "anonymous_id", "timestamp")
ALLOWED = {"events", "event", "properties", *ID_KEYS}
NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


class WebhookConfigError(ValueError):
    pass


@dataclass(frozen=True)
class WebhookMapping:
    name: str
    event: str
    events: str | None = None
    message_id: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    timestamp: str | None = None
    properties: dict[str, str] = field(default_factory=dict)

    def messages(self, payload: Any) -> list[Any]:
        """The Segment messages for one webhook body (items that are not objects pass through
        as they are, so validation rejects them with a reason)."""
        items = dig(payload, self.events) if self.events else [payload]
        if not isinstance(items, list):
            items = [items]
        return [self._message(item) if isinstance(item, dict) else item for item in items]

    def _message(self, item: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "track",
            "event": PLACEHOLDER.sub(lambda m: _text(dig(item, m.group(1))), self.event).strip(),
            "properties": {name: dig(item, path) for name, path in self.properties.items()},
            "context": {"library": {"name": "corral-webhook", "version": self.name}},
        }
        for key, target in (("message_id", "messageId"), ("user_id", "userId"), ("anonymous_id", "anonymousId"), ("timestamp", "timestamp")):
            path = getattr(self, key)
            value = dig(item, path) if path else None
            if value is not None:
                message[target] = value if key == "timestamp" else _text(value)
        return message


def dig(value: Any, path: str | None) -> Any:
    for part in (path or "").split(".") if path else []:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def load_webhook_mappings(path: Path = DEFAULT_PATH) -> dict[str, WebhookMapping]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise WebhookConfigError(f"{path}: webhook mapping file not found") from None
    except yaml.YAMLError as exc:
        raise WebhookConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise WebhookConfigError(f"{path}: expected a mapping of webhook name to mapping")
    mappings = {}
    for name, spec in raw.items():
        where = f"{path}: webhook {name!r}"
        if not isinstance(name, str) or not NAME.match(name):
            raise WebhookConfigError(f"{where}: names are lower-case letters, digits, '_' and '-'")
        if not isinstance(spec, dict):
            raise WebhookConfigError(f"{where}: expected a mapping")
        unknown = set(spec) - ALLOWED
        if unknown:
            raise WebhookConfigError(f"{where}: unknown key(s) {sorted(unknown)} (allowed: {sorted(ALLOWED)})")
        if not isinstance(spec.get("event"), str) or not spec["event"].strip():
            raise WebhookConfigError(f"{where}: 'event' (the track event name template) is required")
        for key in ("events", *ID_KEYS):
            if key in spec and not isinstance(spec[key], str):
                raise WebhookConfigError(f"{where}: {key!r} must be a dotted path string")
        properties = spec.get("properties") or {}
        if not isinstance(properties, dict) or not all(isinstance(v, str) for v in properties.values()):
            raise WebhookConfigError(f"{where}: 'properties' must map property names to dotted paths")
        if not (spec.get("user_id") or spec.get("anonymous_id")):
            raise WebhookConfigError(f"{where}: map 'user_id' or 'anonymous_id' so events belong to someone")
        mappings[name] = WebhookMapping(name=name, properties={str(k): v for k, v in properties.items()},
                                        **{k: spec.get(k) for k in ("event", "events", *ID_KEYS)})
    return mappings
