"""Salesforce in the conformance suite: Contacts upserted by the external id Corral_Id__c, upsert
through Bulk API 2.0 jobs of 200 records (polling, results files) and mirror through sObject
Collections (upsert, then delete by the kept record ids)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fakes.salesforce import TOKEN, FakeSalesforce, serve

from conformance import Case

REQUESTS_PER_SECOND = 10  # the fake counts every second over it; low enough that a bulk job's requests wait on the pace
EXTERNAL_ID = "Corral_Id__c"


class SalesforceHarness:
    def __init__(self, fake: FakeSalesforce) -> None:
        self.fake = fake
        self.env = {"SALESFORCE_INSTANCE_URL": fake.url, "SALESFORCE_ACCESS_TOKEN": TOKEN,
                    "SALESFORCE_REQUESTS_PER_SECOND": str(REQUESTS_PER_SECOND), "SALESFORCE_BULK_POLL_SECONDS": "0.05"}

    def records(self) -> dict[str, dict[str, Any]]:
        return self.fake.by_external_id("Contact", EXTERNAL_ID)

    def members(self, settings: Mapping[str, Any]) -> set[str]:
        raise NotImplementedError("salesforce has no add_remove mode")

    def fail(self, keys: set[str], message: str) -> None:
        with self.fake.lock:
            self.fake.refused.update(dict.fromkeys(keys, message))

    def accept_all(self) -> None:
        with self.fake.lock:
            self.fake.refused.clear()

    def deny(self, status: int) -> None:
        self.fake.denied = status

    def requests(self) -> int:
        return self.fake.requests

    def violations(self) -> list[str]:
        with self.fake.lock:
            return list(self.fake.violations)


@contextmanager
def start(tmp_path: Path) -> Iterator[SalesforceHarness]:
    with serve(FakeSalesforce(requests_per_second=REQUESTS_PER_SECOND, polls_to_complete=2)) as fake:
        yield SalesforceHarness(fake)


CASE = Case(
    destination="salesforce",
    mapping={"id": EXTERNAL_ID, "email": "Email", "first_name": "FirstName", "last_name": "LastName", "plan": "Plan__c",
             "ltv": "LTV__c", "vip": "VIP__c", "signed_up": "Signed_Up__c"},
    match_field=EXTERNAL_ID,
    modes={"upsert": {"object": "Contact", "external_id_field": EXTERNAL_ID, "api": "bulk", "bulk_batch_size": 200},
           "mirror": {"object": "Contact", "external_id_field": EXTERNAL_ID}},
    start=start,
    notes="upsert runs Bulk API 2.0 jobs, mirror sObject Collections (auto: 450 records are under the bulk threshold)",
)
