"""Klaviyo in the conformance suite: profiles matched on email by bulk import jobs (polled to the
end, import errors read), list membership by the kept profile ids; the fake's per-endpoint
limits lowered to 6 a second and 120 a minute (and the destination told so), jobs complete on
their second poll, and polling starts after 0.05 s."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakes.klaviyo import API_KEY, FakeKlaviyo, serve

from conformance import Case

LIST = "CnfRmL"
BURST, STEADY = 6, 120


@dataclass
class KlaviyoHarness:
    fake: FakeKlaviyo
    env: dict[str, str]

    def records(self) -> dict[str, dict[str, Any]]:
        return self.fake.records()

    def members(self, settings: Mapping[str, Any]) -> set[str]:
        return self.fake.members(settings["list_id"])

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
def start(path: Path) -> Iterator[KlaviyoHarness]:
    with serve(FakeKlaviyo(burst=BURST, steady=STEADY, lists={LIST: set()})) as fake:
        yield KlaviyoHarness(fake, {"KLAVIYO_API_KEY": API_KEY, "KLAVIYO_BASE_URL": fake.url, "KLAVIYO_BURST_PER_SECOND": str(BURST),
                                    "KLAVIYO_STEADY_PER_MINUTE": str(STEADY), "KLAVIYO_POLL_SECONDS": "0.05"})


CASE = Case(
    destination="klaviyo",
    mapping={"id": "external_id", "email": "email", "first_name": "first_name", "last_name": "last_name", "plan": "plan",
             "ltv": "ltv", "vip": "vip", "signed_up": "signed_up"},
    match_field="email",
    modes={"upsert": {}, "add_remove": {"list_id": LIST}},
    start=start,
    notes="No mirror: Klaviyo deletes profiles only through data-privacy deletion jobs. A list removal has no per-record outcome "
          "(204), so partial failures are exercised on imports only.",
)
