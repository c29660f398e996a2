"""Mailchimp in the conformance suite: audience members by email with merge fields, archived for
mirror, static segment membership (removals one by one by the kept subscriber hash, since the
suite's primary key is the id)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fakes.mailchimp import API_KEY, LIST, FakeMailchimp, serve

from conformance import Case

SEGMENT = "9101"
MAX_CONNECTIONS = 10  # Mailchimp's documented limit; it is concurrency, not a rate, so nothing to lower
MAPPING = {"id": "CORRAL_ID", "email": "email_address", "first_name": "FNAME", "last_name": "LNAME", "plan": "PLAN", "ltv": "LTV",
           "vip": "vip", "signed_up": "SIGNUP"}


class MailchimpHarness:
    def __init__(self, fake: FakeMailchimp) -> None:
        self.fake = fake
        self.env = {"MAILCHIMP_API_KEY": API_KEY, "MAILCHIMP_BASE_URL": fake.url, "MAILCHIMP_MAX_CONNECTIONS": str(MAX_CONNECTIONS)}

    def records(self) -> dict[str, dict[str, Any]]:
        with self.fake.lock:
            return {email.strip(): record for email, record in self.fake.records().items()}

    def members(self, settings: Mapping[str, Any]) -> set[str]:
        with self.fake.lock:
            return {email.strip() for email in self.fake.segment_emails(str(settings["segment_id"]), str(settings["list_id"]))}

    def fail(self, keys: set[str], message: str) -> None:
        self.fake.refuse = lambda member: message if member["email_address"].strip().lower() in keys else None

    def accept_all(self) -> None:
        self.fake.refuse = lambda member: None

    def deny(self, status: int) -> None:
        self.fake.deny_status = status

    def requests(self) -> int:
        return self.fake.requests

    def violations(self) -> list[str]:
        with self.fake.lock:
            return list(self.fake.over_limit)


@contextmanager
def start(tmp_path: Path) -> Iterator[MailchimpHarness]:
    # a little latency so that requests of concurrent workers overlap and the connection count means something
    fake = FakeMailchimp(max_connections=MAX_CONNECTIONS, latency_seconds=0.02, members={LIST: {}}, segments={LIST: {SEGMENT: set()}})
    with serve(fake):
        yield MailchimpHarness(fake)


CASE = Case(
    destination="mailchimp",
    mapping=MAPPING,
    match_field="email_address",
    modes={"upsert": {"list_id": LIST, "status_if_new": "subscribed"}, "mirror": {"list_id": LIST, "status_if_new": "subscribed"},
           "add_remove": {"list_id": LIST, "status_if_new": "subscribed", "segment_id": SEGMENT}},
    start=start,
    notes="450 rows are one batch of 500, so the 10-connection cap is exercised by tests/test_mailchimp.py (7,000 rows, 14 batches) "
          "rather than here; the fake counts simultaneous requests, not idle keep-alive connections (the contract does not say "
          "which Mailchimp counts).",
)
