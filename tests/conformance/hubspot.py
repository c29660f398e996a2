"""HubSpot in the conformance suite: contacts upserted by email, static list membership."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fakes.hubspot import TOKEN, FakeHubSpot, serve

from conformance import Case

LIST = "701"
LIMIT_PER_10S = 30  # lowered from 190 so a few hundred records wait on the pace


class HubSpotHarness:
    def __init__(self, fake: FakeHubSpot) -> None:
        self.fake = fake
        self.env = {"HUBSPOT_ACCESS_TOKEN": TOKEN, "HUBSPOT_BASE_URL": fake.url, "HUBSPOT_REQUESTS_PER_10S": str(LIMIT_PER_10S)}

    def records(self) -> dict[str, dict[str, Any]]:
        with self.fake.lock:
            return {email: dict(properties) for email, properties in self.fake.contacts.items()}

    def members(self, settings: Mapping[str, Any]) -> set[str]:
        with self.fake.lock:
            return self.fake.members(str(settings["list_id"]))

    def fail(self, keys: set[str], message: str) -> None:
        self.fake.invalid = lambda contact: message if contact["id"].lower() in keys else None

    def accept_all(self) -> None:
        self.fake.invalid = lambda contact: None

    def deny(self, status: int) -> None:
        self.fake.deny_status = status

    def requests(self) -> int:
        return self.fake.requests

    def violations(self) -> list[str]:
        found = [f"{self.fake.throttled} requests over {LIMIT_PER_10S} in a rolling 10 s window"] if self.fake.throttled else []
        if self.fake.largest_batch > self.fake.max_inputs:
            found.append(f"a batch of {self.fake.largest_batch} inputs (at most {self.fake.max_inputs})")
        return found


@contextmanager
def start(tmp_path: Path) -> Iterator[HubSpotHarness]:
    with serve(FakeHubSpot(limit=LIMIT_PER_10S, lists={LIST: set()})) as fake:
        yield HubSpotHarness(fake)


CASE = Case(
    destination="hubspot",
    mapping={"id": "corral_id", "email": "email", "first_name": "firstname", "last_name": "lastname", "plan": "plan",
             "ltv": "lifetime_value", "vip": "is_vip", "signed_up": "signup_date"},
    match_field="email",
    modes={"upsert": {}, "add_remove": {"list_id": LIST}},
    start=start,
)
