"""Customer.io in the conformance suite: people identified by id over the Track v2 batch,
deleted for mirror, manual segment membership."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fakes.customerio import API_KEY, SITE_ID, FakeCustomerIo, serve

from conformance import Case

SEGMENT = "77"
LIMIT_PER_SECOND = 5  # lowered from 100 so every request of a run waits on the pace
MAPPING = {"id": "id", "email": "email", "first_name": "first_name", "last_name": "last_name", "plan": "plan", "ltv": "ltv",
           "vip": "vip", "signed_up": "signed_up"}


class CustomerIoHarness:
    def __init__(self, fake: FakeCustomerIo) -> None:
        self.fake = fake
        self.env = {"CUSTOMERIO_SITE_ID": SITE_ID, "CUSTOMERIO_API_KEY": API_KEY, "CUSTOMERIO_TRACK_URL": fake.url,
                    "CUSTOMERIO_REQUESTS_PER_SECOND": str(LIMIT_PER_SECOND)}

    def records(self) -> dict[str, dict[str, Any]]:
        with self.fake.lock:
            return {str(p["id"]).strip().lower(): {"id": p["id"], **p["attributes"]} for p in self.fake.people.values() if p["id"]}

    def members(self, settings: Mapping[str, Any]) -> set[str]:
        with self.fake.lock:
            return {m.strip().lower() for m in self.fake.members(str(settings["segment_id"]))}

    def fail(self, keys: set[str], message: str) -> None:
        self.fake.refuse = lambda entry: message if str(next(iter(entry["identifiers"].values()))).strip().lower() in keys else None

    def accept_all(self) -> None:
        self.fake.refuse = lambda entry: None

    def deny(self, status: int) -> None:
        self.fake.deny_status = status

    def requests(self) -> int:
        return self.fake.requests

    def violations(self) -> list[str]:
        with self.fake.lock:
            return list(self.fake.over_limit)


@contextmanager
def start(tmp_path: Path) -> Iterator[CustomerIoHarness]:
    with serve(FakeCustomerIo(limit=LIMIT_PER_SECOND, segments={SEGMENT: set()})) as fake:
        yield CustomerIoHarness(fake)


CASE = Case(
    destination="customerio",
    mapping=MAPPING,
    match_field="id",
    modes={"upsert": {}, "mirror": {}, "add_remove": {"segment_id": SEGMENT}},
    start=start,
    notes="Segment membership is checked as the fake applies it at once; the real Track API is asynchronous, so an add that "
          "arrives before the identify it follows is processed would be ignored there (the contract does not say).",
)
