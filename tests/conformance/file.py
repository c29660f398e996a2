"""The file destination in the conformance suite: the CSV a marketer pulls, read back."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conformance import Case


class FileHarness:
    """`requests` counts the times the file was written (replaced: a new inode), seen by polling."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "people.csv"
        self.env = {"FILE_DESTINATION_DIR": str(directory)}
        self.writes = 0
        self.seen: tuple[int, int] | None = None

    def records(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        with self.path.open(newline="") as f:
            return {row["email"].strip().lower(): row for row in csv.DictReader(f)}

    def members(self, settings: Mapping[str, Any]) -> set[str]:
        return set(self.records())

    def fail(self, keys: set[str], message: str) -> None:
        raise NotImplementedError("a file cannot refuse single records")

    def accept_all(self) -> None:
        pass

    def deny(self, status: int) -> None:
        raise NotImplementedError("a file has no credentials")

    def requests(self) -> int:
        if self.path.exists():
            stat = self.path.stat()
            if (stat.st_ino, stat.st_mtime_ns) != self.seen:
                self.seen = (stat.st_ino, stat.st_mtime_ns)
                self.writes += 1
        return self.writes

    def violations(self) -> list[str]:
        partial = [p.name for p in self.path.parent.glob(".*.partial")]
        return [f"a partial file was left behind: {name}" for name in partial]


@contextmanager
def start(tmp_path: Path) -> Iterator[FileHarness]:
    directory = tmp_path / "exports"
    directory.mkdir()
    yield FileHarness(directory)


CASE = Case(
    destination="file",
    mapping={"id": "id", "email": "email", "first_name": "first_name", "plan": "plan", "ltv": "ltv", "vip": "vip", "signed_up": "signed_up"},
    match_field="email",
    modes={"mirror": {"filename": "people.csv"}},
    start=start,
    partial_failures=False,
    authenticates=False,
    notes="a file takes every row or none and has no credentials: no partial failures, no auth errors",
)
