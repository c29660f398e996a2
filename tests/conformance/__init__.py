"""The conformance suite's contract: what each destination gives `tests/test_conformance.py`.

Every destination has one module here (`tests/conformance/<destination>.py`) defining `CASE`, a
`Case`. The suite runs the same scenario for every case and every mode it lists, through the
real engine (`run_sync`) against the destination's fake in `tests/fakes/`:

1. first sync of the conformance mart (`people`, PEOPLE_SQL: 450 rows) lands every record;
2. an unchanged re-sync sends no request;
3. changes (5 rows), removals (3 rows) and additions (2 rows) reach the fake as the mode says
   (upsert: every current row holds its current values; mirror: the fake holds exactly the
   current rows; add_remove: the list's members are exactly the current rows);
4. partial failures (`partial_failures`): the fake refuses some records in the vendor's own
   per-record error shape; exactly those are failed in `corral_sync.records` with the vendor's
   message, the others synced, and the next run (after `accept_all`) sends only those;
5. auth (`authenticates`): after `deny(401)` / `deny(403)` the sync fails at once (a handful of
   requests at most, never retried) with an error naming the status;
and after all of it, `violations()` is empty: no rate-limit window exceeded, no request over
a documented size, concurrency or batch limit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# The conformance mart. Columns: id (integer, the primary key), email, first_name (null on
# every tenth row), last_name, plan ('free', 'pro', 'team'), ltv (double), vip (boolean),
# signed_up (date). The suite edits rows of this table between runs.
PEOPLE_SQL = """
create or replace table people as
select
    i as id,
    'person' || i || '@example.com' as email,
    case when i % 10 = 0 then null else 'First' || i end as first_name,
    'Last' || i as last_name,
    ['free', 'pro', 'team'][1 + i % 3] as plan,
    round(i * 1.25, 2)::double as ltv,
    i % 4 = 0 as vip,
    date '2025-01-01' + i::int as signed_up
from range(1, 451) t(i)
"""


class Harness(Protocol):
    """A running fake, seen from the suite."""

    env: dict[str, str]
    """What `make_destination` needs: base URL(s), credentials, and the rate limit the fake
    enforces, lowered so the suite's runs (a few hundred records) really exercise pacing
    while a whole case stays within ~20 s."""

    def records(self) -> dict[str, dict[str, Any]]:
        """What the fake holds now, by the normalized match key (`Case.match_field`'s value,
        lower-cased and stripped): each record's fields under the destination field names of
        `Case.mapping` (the harness undoes vendor nesting such as merge fields or
        attributes objects). Deleted records are absent."""

    def members(self, settings: Mapping[str, Any]) -> set[str]:
        """add_remove: the normalized match keys of the members of the list / segment /
        subscription group named by `settings` (a mode's settings of `Case.modes`)."""

    def fail(self, keys: set[str], message: str) -> None:
        """From now on refuse the records with these match keys, one by one, in the vendor's
        partial-failure shape (207 bodies, errors inside a 200, per-record success false,
        failed-results files...), with `message` in the vendor's error text, while
        accepting the other records of the same requests."""

    def accept_all(self) -> None:
        """Stop refusing records (undoes `fail`)."""

    def deny(self, status: int) -> None:
        """From now on answer every API request with `status` (401 or 403) in the vendor's
        error shape; `deny(0)` stops."""

    def requests(self) -> int:
        """API requests received so far (any endpoint, polling included)."""

    def violations(self) -> list[str]:
        """Every documented limit broken so far, one line each: rate-limit windows exceeded
        (the fake must count, not only answer 429), requests over the batch size or payload
        size, too many concurrent connections. The suite requires it empty."""


@dataclass(frozen=True)
class Case:
    destination: str  # its name in the registry (reverse_etl.destinations)
    mapping: Mapping[str, str]  # people column -> destination field; must include the primary key `id`
    match_field: str  # the destination field of `mapping` the vendor matches records on (email, external_id, ...)
    modes: Mapping[str, Mapping[str, Any]]  # each mode the suite runs (upsert, mirror, add_remove) -> the sync's settings
    start: Callable[[Path], AbstractContextManager[Harness]]  # start the fake (files may go under the path) -> a Harness
    partial_failures: bool = True  # the vendor can refuse single records of a request
    authenticates: bool = True  # the vendor has credentials it can refuse
    notes: str = ""  # what this destination cannot be checked for, and why
    extra: dict[str, Any] = field(default_factory=dict)


def normalize(value: Any) -> str | None:
    """How the suite compares a mart value with what a fake holds: null and "" are None,
    booleans "true"/"false", numbers (or numeric text) by their float value, dates and
    midnight timestamps (or their ISO text) as YYYY-MM-DD, anything else as text."""
    import datetime as dt
    import re
    from decimal import Decimal

    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return repr(float(value))
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value)
    if text.lower() in ("true", "false"):
        return text.lower()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return repr(float(text))
    if match := re.fullmatch(r"(\d{4}-\d{2}-\d{2})([T ]00:00:00(\.0+)?(Z|[+-]00:?00)?)?", text):
        return match.group(1)
    return text
