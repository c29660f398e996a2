"""Sync declarations: dbt exposures whose `meta.corral_sync` says what to send where.

Declared in the dbt project's YAML so dbt docs show every audience flowing to its tool and
syncs are reviewed like models. Credentials never appear there: destinations read env vars.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def read_manifest(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def load_syncs(manifest: dict[str, Any]) -> list[SyncSpec]:
    """Every exposure with `meta.corral_sync`, validated (not yet against the warehouse)."""
    syncs = []
    for exposure in sorted(manifest.get("exposures", {}).values(), key=lambda e: e["name"]):
        meta = exposure.get("meta") or (exposure.get("config") or {}).get("meta") or {}
        if "corral_sync" in meta:
            syncs.append(_parse(exposure, meta["corral_sync"], manifest))
    return syncs


def find_sync(syncs: list[SyncSpec], name: str) -> SyncSpec:
    for sync in syncs:
        if sync.name == name:
            return sync
    known = ", ".join(s.name for s in syncs) or "none are declared"
    raise SyncConfigError(f"no sync named {name!r} (declared syncs: {known})")


def _parse(exposure: dict[str, Any], config: Any, manifest: dict[str, Any]) -> SyncSpec:
    name = exposure["name"]

    def fail(problem: str) -> SyncConfigError:
        return SyncConfigError(f"sync {name!r} ({exposure.get('original_file_path', '?')}): {problem}")

    if not isinstance(config, dict):
        raise fail("meta.corral_sync must be a mapping")
    unknown = set(config) - {"destination", "mode", "primary_key", "mapping", "schedule", "settings", "max_attempts", "deadline_seconds"}
    if unknown:
        raise fail(f"unknown setting(s) {sorted(unknown)} under meta.corral_sync")
    models = [n for n in exposure.get("depends_on", {}).get("nodes", []) if n.startswith(("model.", "seed.", "snapshot."))]
    if len(models) != 1:
        raise fail(f"must depend on exactly one model (the mart it sends), found {len(models) or 'none'}")
    node = manifest["nodes"][models[0]]
    for key in ("destination", "primary_key", "mapping"):
        if not config.get(key):
            raise fail(f"meta.corral_sync.{key} is required")
    mode = config.get("mode", "upsert")
    if mode not in MODES:
        raise fail(f"mode {mode!r} is not one of {', '.join(MODES)}")
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
