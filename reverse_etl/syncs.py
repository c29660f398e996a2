"""Sync declarations: dbt exposures whose `meta.corral_sync` says what to send where.

Declared in the dbt project's YAML so dbt docs show every audience flowing to its tool and
syncs are reviewed like models. Credentials never appear there: destinations read env vars.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from reverse_etl.filters import EventFilters


def _filters() -> ModuleType:
    """reverse_etl.filters, imported when an event sync is read: it brings sqlglot, which record
    syncs (and their memory budget) do without."""
    return importlib.import_module("reverse_etl.filters")


EVENTS_MODE = "events"  # an event sync: forwards new rows of profile_events (reverse_etl/events.py)
EVENT_SETTINGS = {"destination", "mode", "settings", "filters", "start", "max_attempts", "deadline_seconds", "overlap_seconds",
                  "max_events_per_run"}
MODES = ("upsert", "update", "insert", "mirror", "add_remove")
RESERVED_FIELDS = {"record_key", "row_hash", "destination_id", "previous_destination_id", "change", "operation", "attempts",
                   "attempted_hash", "confirmed_hash", "ok", "error"}  # the engine's own columns beside the fields


class SyncConfigError(ValueError):
    """A sync declaration is wrong; the message names the sync and what to fix."""


@dataclass(frozen=True)
class SyncSpec:
    name: str
    model: str
    relation: str
    destination: str
    mode: str
    primary_key: str
    mapping: dict[str, str]
    schedule: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    max_attempts: int = 5
    deadline_seconds: float = 3600.0
    owner: str | None = None
    description: str = ""


@dataclass(frozen=True)
class EventSyncSpec:
    """An event sync (`mode: events`): new rows of the model (profile_events) go to the
    destination in order of arrival, each at least once with its message id as idempotency
    key. `start`: 'now' (default: events loaded before the first run are not sent),
    'beginning', or a timestamp. `overlap_seconds`: how far behind its cursor each run looks
    again for late-committed events (deduplicated by message id). `deadline_seconds`: a run
    gives up waiting for a destination after this long (the events wait for the next run)."""

    name: str
    model: str
    relation: str
    destination: str
    filters: EventFilters = field(default_factory=lambda: _filters().EventFilters())
    settings: dict[str, Any] = field(default_factory=dict)
    start: str = "now"
    max_attempts: int = 5
    deadline_seconds: float = 50.0
    overlap_seconds: float = 3600.0
    max_events_per_run: int = 50_000
    owner: str | None = None
    description: str = ""
    mode: str = EVENTS_MODE


def read_manifest(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def load_syncs(manifest: dict[str, Any]) -> list[SyncSpec]:
    """Every exposure with `meta.corral_sync` (record syncs; event syncs, `mode: events`, are
    load_event_syncs'), validated (not yet against the warehouse)."""
    return [_parse(exposure, config, manifest) for exposure, config in _declared(manifest) if not _is_events(config)]


def load_event_syncs(manifest: dict[str, Any]) -> list[EventSyncSpec]:
    """Every exposure with `meta.corral_sync` and `mode: events`, validated, filters included."""
    return [_parse_events(exposure, config, manifest) for exposure, config in _declared(manifest) if _is_events(config)]


def _declared(manifest: dict[str, Any]) -> list[tuple[dict[str, Any], Any]]:
    found = []
    for exposure in sorted(manifest.get("exposures", {}).values(), key=lambda e: e["name"]):
        meta = exposure.get("meta") or (exposure.get("config") or {}).get("meta") or {}
        if "corral_sync" in meta:
            found.append((exposure, meta["corral_sync"]))
    return found


def _is_events(config: Any) -> bool:
    return isinstance(config, dict) and config.get("mode") == EVENTS_MODE


def _parse_events(exposure: dict[str, Any], config: dict[str, Any], manifest: dict[str, Any]) -> EventSyncSpec:
    fail = _failer(exposure)
    if unknown := sorted(set(config) - EVENT_SETTINGS):
        hint = " (event syncs send whole events: no primary_key or mapping)" if {"primary_key", "mapping"} & set(unknown) else ""
        raise fail(f"unknown setting(s) {unknown} under meta.corral_sync for mode: events{hint}")
    node = _model(exposure, manifest, fail)
    if not config.get("destination"):
        raise fail("meta.corral_sync.destination is required")
    settings = config.get("settings") or {}
    if not isinstance(settings, dict):
        raise fail("settings must be a mapping")
    start = str(config.get("start", "now"))
    if start not in ("now", "beginning"):
        try:
            datetime.fromisoformat(start)
        except ValueError:
            raise fail(f"start must be now, beginning or an ISO timestamp, got {start!r}") from None
    try:
        filters = _filters().parse_filters(config.get("filters"))
    except _filters().FilterError as error:
        raise fail(f"refused before running: {error}") from None
    owner = exposure.get("owner") or {}
    return EventSyncSpec(
        name=exposure["name"],
        model=node["name"],
        relation=node["relation_name"],
        destination=str(config["destination"]),
        filters=filters,
        settings=dict(settings),
        start=start,
        max_attempts=int(_number(config, "max_attempts", 5, fail, whole=True)),
        deadline_seconds=float(_number(config, "deadline_seconds", 50, fail)),
        overlap_seconds=float(_number(config, "overlap_seconds", 3600, fail)),
        max_events_per_run=int(_number(config, "max_events_per_run", 50_000, fail, whole=True)),
        owner=owner.get("email") or owner.get("name"),
        description=exposure.get("description") or "",
    )


AnySync = TypeVar("AnySync", "SyncSpec", "EventSyncSpec")


def find_sync(syncs: Sequence[AnySync], name: str) -> AnySync:
    for sync in syncs:
        if sync.name == name:
            return sync
    known = ", ".join(s.name for s in syncs) or "none are declared"
    raise SyncConfigError(f"no sync named {name!r} (declared syncs: {known})")


def _failer(exposure: dict[str, Any]) -> Callable[[str], SyncConfigError]:
    def fail(problem: str) -> SyncConfigError:
        return SyncConfigError(f"sync {exposure['name']!r} ({exposure.get('original_file_path', '?')}): {problem}")

    return fail


def _model(exposure: dict[str, Any], manifest: dict[str, Any], fail: Callable[[str], SyncConfigError]) -> dict[str, Any]:
    models = [n for n in exposure.get("depends_on", {}).get("nodes", []) if n.startswith(("model.", "seed.", "snapshot."))]
    if len(models) != 1:
        raise fail(f"must depend on exactly one model (the mart it sends), found {len(models) or 'none'}")
    node: dict[str, Any] = manifest["nodes"][models[0]]
    return node


def _number(config: dict[str, Any], key: str, default: float, fail: Callable[[str], SyncConfigError], whole: bool = False) -> float:
    value = config.get(key, default)
    if whole and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise fail(f"{key} must be a whole number, at least 1, got {value!r}")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise fail(f"{key} must be a positive number, got {value!r}")
    return value


def _parse(exposure: dict[str, Any], config: Any, manifest: dict[str, Any]) -> SyncSpec:
    name = exposure["name"]
    fail = _failer(exposure)
    if not isinstance(config, dict):
        raise fail("meta.corral_sync must be a mapping")
    unknown = set(config) - {"destination", "mode", "primary_key", "mapping", "schedule", "settings", "max_attempts", "deadline_seconds"}
    if unknown:
        raise fail(f"unknown setting(s) {sorted(unknown)} under meta.corral_sync")
    node = _model(exposure, manifest, fail)
    for key in ("destination", "primary_key", "mapping"):
        if not config.get(key):
            raise fail(f"meta.corral_sync.{key} is required")
    mode = config.get("mode", "upsert")
    if mode not in MODES:
        raise fail(f"mode {mode!r} is not one of {', '.join((*MODES, EVENTS_MODE))}")
    mapping = config["mapping"]
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise fail("mapping must map mart columns to destination field names")
    if config["primary_key"] not in mapping:
        raise fail(f"primary_key {config['primary_key']!r} must be one of the mapped columns")
    if reserved := sorted(set(mapping.values()) & RESERVED_FIELDS):
        raise fail(f"destination field name(s) {reserved} are reserved by the engine; map to other names")
    max_attempts = config.get("max_attempts", 5)
    if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
        raise fail(f"max_attempts must be a whole number of runs, at least 1, got {max_attempts!r}")
    deadline = config.get("deadline_seconds", 3600)
    if not isinstance(deadline, (int, float)) or isinstance(deadline, bool) or deadline <= 0:
        raise fail(f"deadline_seconds must be a positive number of seconds, got {deadline!r}")
    settings = config.get("settings") or {}
    if not isinstance(settings, dict):
        raise fail("settings must be a mapping")
    owner = exposure.get("owner") or {}
    return SyncSpec(
        name=name,
        model=node["name"],
        relation=node["relation_name"],
        destination=str(config["destination"]),
        mode=mode,
        primary_key=config["primary_key"],
        mapping=dict(mapping),
        schedule=config.get("schedule"),
        settings=dict(settings),
        owner=owner.get("email") or owner.get("name"),
        max_attempts=max_attempts,
        deadline_seconds=float(deadline),
        description=exposure.get("description") or "",
    )
