"""Braze in the conformance suite: users matched on external_id (the mart's id), membership as a
boolean custom attribute, mirror deletes by external id; the fake's /users/track limit lowered
to 12 requests per 3 s (and the destination told so), so the suite's syncs are paced."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakes.braze import API_KEY, FakeBraze, serve

from conformance import Case

LIMIT_PER_3S = 12
AUDIENCE = {"membership": "attribute", "attribute": "in_conformance_audience"}


@dataclass
class BrazeHarness:
    fake: FakeBraze
    env: dict[str, str]

    def records(self) -> dict[str, dict[str, Any]]:
        return self.fake.records("external_id")

    def members(self, settings: Mapping[str, Any]) -> set[str]:
        return self.fake.members(dict(settings), "external_id")

    def fail(self, keys: set[str], message: str) -> None:
        with self.fake.lock:
            self.fake.refuse.update({key: message for key in keys})

    def accept_all(self) -> None:
        with self.fake.lock:
            self.fake.refuse.clear()

    def deny(self, status: int) -> None:
        self.fake.deny_status = status

    def requests(self) -> int:
        return self.fake.requests

    def violations(self) -> list[str]:
        return list(self.fake.violations)


@contextmanager
def start(path: Path) -> Iterator[BrazeHarness]:
    with serve(FakeBraze(track_limit=LIMIT_PER_3S)) as fake:
        yield BrazeHarness(fake, {"BRAZE_API_KEY": API_KEY, "BRAZE_REST_ENDPOINT": fake.url, "BRAZE_REQUESTS_PER_3S": str(LIMIT_PER_3S)})


CASE = Case(
    destination="braze",
    mapping={"id": "external_id", "email": "email", "first_name": "first_name", "last_name": "last_name", "plan": "plan",
             "ltv": "ltv", "vip": "vip", "signed_up": "signed_up"},
    match_field="external_id",
    modes={"upsert": {}, "mirror": {}, "add_remove": AUDIENCE},
    start=start,
    notes="Braze documents no concurrency limit, so none is checked; subscription-group membership is covered by tests/test_braze.py.",
)
