"""Destinations by name. Adding one is adding a module here with one `Destination` subclass
(with a `name`): every module of this package is looked at, so there is no list to edit."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping

import httpx

from reverse_etl.destinations.base import Destination
from reverse_etl.syncs import SyncConfigError


def destinations() -> dict[str, type[Destination]]:
    """Every Destination subclass defined in a module of this package, by its name."""
    found: dict[str, type[Destination]] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name == "base":
            continue
        loaded = importlib.import_module(f"{__name__}.{module.name}")
        for value in vars(loaded).values():
            if isinstance(value, type) and issubclass(value, Destination) and value.__module__ == loaded.__name__ \
                    and getattr(value, "name", None):
                if value.name in found and found[value.name] is not value:
                    raise RuntimeError(f"two destinations are named {value.name!r}: {found[value.name].__module__} and {value.__module__}")
                found[value.name] = value
    return found


def make_destination(name: str, env: Mapping[str, str], client: httpx.Client | None = None) -> Destination:
    known = destinations()
    try:
        cls = known[name]
    except KeyError:
        raise SyncConfigError(f"unknown destination {name!r} (known: {', '.join(sorted(known))})") from None
    return cls(env=env, client=client)
