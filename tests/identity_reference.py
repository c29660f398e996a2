"""A small, plain Python reference of Corral's identity rules, to hold the SQL to.

It replays the identity graph's edges one by one in time order, as the rules in
dbt_project/models/intermediate/identity/_identity__models.yml state them: union-find where a
merge that would break a limit (by default: two user ids in one profile) does not happen. The SQL computes the same
thing set-wise (components, then earliest-arrival labels); tests compare the two.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

PRIORITY = {"user_id": 1, "email": 2, "phone": 3, "device_id": 4, "anonymous_id": 5}
BLOCKED = {"", "null", "undefined", "none", "nil", "unknown", "anonymous", "anonymousid", "0", "-1"}
SEEDED = {("email", "test@example.com"), ("email", "noreply@example.com"), ("*", "guest")}
DEFAULT_LIMITS = {"user_id": 1}

Identifier = tuple[str, str]


def node_id(identifier: Identifier) -> str:
    """The warehouse's node id: md5 of 'type-value' (macros/surrogate_key.sql)."""
    return hashlib.md5(f"{identifier[0]}-{identifier[1]}".encode()).hexdigest()


def _blocked(kind: str, value: str) -> bool:
    lowered = value.lower()
    return (
        lowered in BLOCKED
        or value.replace("0", "").replace("-", "") == ""
        or (kind, lowered) in SEEDED
        or ("*", lowered) in SEEDED
    )


def identifiers(message: dict[str, Any]) -> set[Identifier]:
    """The normalized, unblocked identifiers of one Segment message (SQL: trim = spaces only)."""
    traits = message.get("traits") or {}
    context = message.get("context") or {}
    context_traits = context.get("traits") or {}
    raw: list[tuple[str, Any]] = [
        ("user_id", message.get("userId")),
        ("anonymous_id", message.get("anonymousId")),
        ("email", traits.get("email") if traits.get("email") is not None else context_traits.get("email")),
        ("phone", traits.get("phone") if traits.get("phone") is not None else context_traits.get("phone")),
        ("device_id", (context.get("device") or {}).get("id")),
    ]
    if message.get("type") == "alias":
        raw.append(("anonymous_id", message.get("previousId")))
    found = set()
    for kind, value in raw:
        if value is None:
            continue
        text = str(value).strip(" ")
        if kind == "email":
            text = text.lower()
        elif kind == "phone":
            digits = "".join(c for c in str(value) if c.isdigit())
            if len(digits) < 5:
                continue
            text = "+" + digits
        if not _blocked(kind, text):
            found.add((kind, text))
    return found


@dataclass
class Resolution:
    profile_of: dict[Identifier, str]  # identifier -> profile_id
    first_seen: dict[Identifier, datetime]

    def profile_of_message(self, message: dict[str, Any]) -> str | None:
        ids = identifiers(message)
        if not ids:
            return None
        deciding = min(ids, key=lambda i: (PRIORITY[i[0]], node_id(i)))
        return self.profile_of[deciding]


def resolve(messages: Iterable[tuple[datetime, dict[str, Any]]], limits: dict[str, int] | None = None) -> Resolution:
    """`messages`: (time the message occurred, Segment message) pairs, deduplicated. `limits`:
    at most this many identifiers of a type per profile (default: one user id)."""
    limits = DEFAULT_LIMITS if limits is None else limits
    anchor_type = min(limits, key=PRIORITY.__getitem__) if limits else None
    first_seen: dict[Identifier, datetime] = {}
    edge_time: dict[tuple[Identifier, Identifier], datetime] = {}
    for at, message in messages:
        ids = sorted(identifiers(message), key=node_id)
        for identifier in ids:
            first_seen[identifier] = min(first_seen.get(identifier, at), at)
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                edge_time[(a, b)] = min(edge_time.get((a, b), at), at)

    def order(edge: tuple[Identifier, Identifier]) -> tuple[Any, ...]:
        a, b = edge
        high, low = sorted((PRIORITY[a[0]], PRIORITY[b[0]]))
        return (edge_time[edge], high, low, node_id(a), node_id(b))

    parent = {identifier: identifier for identifier in first_seen}
    counts = {i: {kind: int(i[0] == kind) for kind in limits} for i in first_seen}

    def find(x: Identifier) -> Identifier:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in sorted(edge_time, key=order):
        ra, rb = find(a), find(b)
        if ra == rb or any(counts[ra][kind] + counts[rb][kind] > limit for kind, limit in limits.items()):
            continue  # same profile already, or the merge would break a limit
        parent[rb] = ra
        counts[ra] = {kind: counts[ra][kind] + counts[rb][kind] for kind in limits}

    members: dict[Identifier, list[Identifier]] = {}
    for identifier in first_seen:
        members.setdefault(find(identifier), []).append(identifier)
    profile_of = {}
    for group in members.values():
        # named for its earliest anchor-type identifier (user id), else its earliest identifier
        key = min(group, key=lambda i: (i[0] != anchor_type, first_seen[i], PRIORITY[i[0]], node_id(i)))
        for identifier in group:
            profile_of[identifier] = node_id(key)
    return Resolution(profile_of, first_seen)
