"""The webhook destination in the conformance suite: signed JSON batches to a strict receiver."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fakes.webhook import SECRET, FakeWebhook, serve

from conformance import Case


class WebhookHarness:
    def __init__(self, fake: FakeWebhook) -> None:
        self.fake = fake
        self.env = {"WEBHOOK_URL": fake.url, "WEBHOOK_SECRET": SECRET}

    def records(self) -> dict[str, dict[str, Any]]:
        with self.fake.lock:
            return {key.lower(): dict(record) for key, record in self.fake.records.items()}

    def members(self, settings: Mapping[str, Any]) -> set[str]:
        return set(self.records())

    def fail(self, keys: set[str], message: str) -> None:
        self.fake.refuse = lambda record: message if str(record[self.fake.key_field]).lower() in keys else None

    def accept_all(self) -> None:
        self.fake.refuse = lambda record: None

    def deny(self, status: int) -> None:
        self.fake.deny_status = status

    def requests(self) -> int:
        return self.fake.requests

    def violations(self) -> list[str]:
        return list(self.fake.violations)


@contextmanager
def start(tmp_path: Path) -> Iterator[WebhookHarness]:
    with serve(FakeWebhook(key_field="user_id", max_records=100)) as fake:
        yield WebhookHarness(fake)


CASE = Case(
    destination="webhook",
    mapping={"id": "user_id", "email": "email", "first_name": "first_name", "plan": "plan", "ltv": "ltv", "vip": "vip",
             "signed_up": "signed_up"},
    match_field="user_id",  # a removal carries only the primary key
    modes={"upsert": {"batch_size": 100}, "mirror": {"batch_size": 100}, "add_remove": {"batch_size": 100}},
    start=start,
    notes="a webhook has no documented rate limit: the receiver here enforces only its batch size (100)",
)
