"""Computed-trait definitions, checked with sqlglot before a build sends them to dbt.

The definitions are the dbt var `corral_computed_traits` (dbt_project.yml); the macro
`computed_traits` turns them into SQL and refuses bad ones itself, on every engine. This
module applies the same rules in Python with sqlglot's parser, so `corral build`, `corral demo`
and the Dagster definitions stop on a bad trait before dbt runs, with every problem listed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from reverse_etl.conditions import COMPARISONS, FilterError, Operand, name_path, parse_filter  # noqa: F401 - re-exported

TYPES = {
    "event_counter": False, "aggregation": True, "most_frequent": True, "first": True, "last": True,
    "unique_list": True, "unique_list_count": True, "first_seen": False, "last_seen": False,
}  # type -> needs a property
KEYS = {"name", "type", "description", "event", "message_type", "property", "function", "filter", "window_days", "min_occurrences"}
MESSAGE_TYPES = {"track", "page", "screen", "identify", "group", "alias"}
NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
PROPERTY = re.compile(r"^[A-Za-z_][A-Za-z0-9_ ]*(\.[A-Za-z_][A-Za-z0-9_ ]*)*$")


class TraitDefinitionError(ValueError):
    """One or more computed traits are wrong; the message names each and what to fix."""


def check_definitions(definitions: Any, where: str) -> list[str]:
    """Every problem with a list of trait definitions, each naming its trait."""
    if not isinstance(definitions, list) or not definitions:
        return [f"{where} must be a list of trait definitions"]
    problems: list[str] = []
    seen: set[str] = set()
    for number, definition in enumerate(definitions, start=1):
        if not isinstance(definition, dict):
            problems.append(f"{where}: computed trait #{number} must be a mapping with name and type")
            continue
        name = definition.get("name")
        label = f"{where}: computed trait {name!r}" if name else f"{where}: computed trait #{number}"
        problems += [f"{label}: {problem}" for problem in _definition_problems(definition, seen)]
        seen.add(str(name))
    return problems


def _definition_problems(definition: dict[str, Any], seen: set[str]) -> list[str]:
    problems = []
    name, kind, prop = definition.get("name"), definition.get("type"), definition.get("property")
    if not isinstance(name, str) or not NAME.match(name):
        problems.append("name must be a lower-case column name (letters, digits, underscores)")
    elif name in seen or name in {"profile_id", "computed_at"}:
        problems.append("the name is already taken; trait names must be unique and not profile_id or computed_at")
    if unknown := sorted(set(definition) - KEYS):
        problems.append(f"unknown key(s) {', '.join(unknown)}")
    if kind not in TYPES:
        problems.append(f"unknown type {kind!r}; use one of {', '.join(TYPES)}")
    elif TYPES[kind] and not prop:
        problems.append(f"type {kind} needs a property")
    elif not TYPES[kind] and prop:
        problems.append(f"type {kind} takes no property")
    if prop and (not isinstance(prop, str) or not PROPERTY.match(prop)):
        problems.append(f"property {prop!r} must be a dotted path of names")
    function = definition.get("function")
    if (kind == "aggregation") != (function is not None) or (function is not None and function not in {"sum", "avg", "min", "max"}):
        problems.append("an aggregation needs function: sum, avg, min or max" if kind == "aggregation" else "only an aggregation takes a function")
    event = definition.get("event")
    events = [event] if isinstance(event, str) else event
    if events is not None and (not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events)):
        problems.append("event must be an event name or a list of them")
    message_type = definition.get("message_type")
    if message_type is not None and message_type not in MESSAGE_TYPES:
        problems.append(f"message_type must be one of {', '.join(sorted(MESSAGE_TYPES))}")
    window = definition.get("window_days")
    if window is not None and (not isinstance(window, int) or isinstance(window, bool) or window < 1):
        problems.append("window_days must be a whole number of days, at least 1")
    occurrences = definition.get("min_occurrences")
    if occurrences is not None and (kind != "most_frequent" or not isinstance(occurrences, int) or occurrences < 1):
        problems.append("min_occurrences must be a whole number of at least 1" if kind == "most_frequent" else "only most_frequent takes min_occurrences")
    text = definition.get("filter")
    if text is not None:
        try:
            parse_filter(text)
        except FilterError as error:
            problems.append(f"filter {text!r} is not a plain boolean expression: {error}")
    return problems


VAR = "corral_computed_traits"


def project_trait_definitions(project_dir: Path, dbt_vars: dict[str, Any] | None = None) -> Any:
    """The trait definitions a build will use: var corral_computed_traits as passed with --vars,
    else as dbt_project.yml sets it."""
    if dbt_vars and VAR in dbt_vars:
        return dbt_vars[VAR]
    project = yaml.safe_load((project_dir / "dbt_project.yml").read_text()) or {}
    return (project.get("vars") or {}).get(VAR)


def check_project_traits(project_dir: Path, dbt_vars: dict[str, Any] | None = None) -> None:
    """Raise TraitDefinitionError listing every bad computed trait the build would use."""
    where = f"var {VAR}" + (" (--vars)" if dbt_vars and VAR in dbt_vars else f" ({project_dir.name}/dbt_project.yml)")
    if problems := check_definitions(project_trait_definitions(project_dir, dbt_vars), where):
        raise TraitDefinitionError("\n".join(problems))
