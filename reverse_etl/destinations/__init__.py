"""Destinations by name. Adding one: a module here with a `Destination` subclass, listed below."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from reverse_etl.destinations.base import Destination
from reverse_etl.destinations.file import FileDestination
from reverse_etl.destinations.hubspot import HubSpotDestination
from reverse_etl.destinations.webhook import WebhookDestination
from reverse_etl.syncs import SyncConfigError

DESTINATIONS: dict[str, type[Destination]] = {cls.name: cls for cls in (FileDestination, WebhookDestination, HubSpotDestination)}


def make_destination(name: str, env: Mapping[str, str], client: httpx.Client | None = None) -> Destination:
    try:
        cls = DESTINATIONS[name]
    except KeyError:
        raise SyncConfigError(f"unknown destination {name!r} (known: {', '.join(sorted(DESTINATIONS))})") from None
    return cls(env=env, client=client)
