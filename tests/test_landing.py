"""Landing segments: group commit, sealing, and recovery of segments a crashed writer left open."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

import pytest

from loaders.landing import LandingWriter, recover_orphans


class CountingWriter(LandingWriter):
    rounds = 0

    def _write(self, chunks: dict[Path, list[bytes]]) -> None:
        self.rounds += 1
        super()._write(chunks)


def lines(directory: Path, pattern: str = "*.ndjson") -> list[bytes]:
    return [line for path in sorted(directory.glob(pattern)) for line in path.read_bytes().splitlines()]


def test_concurrent_appends_share_fsyncs_and_all_land(tmp_path: Path) -> None:
    async def scenario() -> CountingWriter:
        writer = CountingWriter(tmp_path / "landing")
        await writer.start()
        target = writer.directory("web")
        await asyncio.gather(*(writer.append(target, f'{{"n":{i}}}\n'.encode()) for i in range(200)))
        assert not list(target.glob("*.ndjson")), "nothing is sealed before its time"
        assert len(lines(target, "*.ndjson.open")) == 200, "acknowledged means written"
        await writer.stop()
        return writer

    writer = asyncio.run(scenario())
    assert writer.rounds < 20, f"200 concurrent appends took {writer.rounds} write+fsync rounds"
    assert sorted(lines(tmp_path / "landing" / "web")) == sorted(f'{{"n":{i}}}'.encode() for i in range(200))
    assert not list((tmp_path / "landing").rglob("*.open"))


def test_segments_seal_by_size_and_by_age(tmp_path: Path) -> None:
    async def scenario() -> None:
        writer = LandingWriter(tmp_path / "landing", max_bytes=100, max_age_seconds=0.2)
        await writer.start()
        target = writer.directory("web")
        for _ in range(5):
            await writer.append(target, b"x" * 60 + b"\n")
        await asyncio.sleep(0.1)
        by_size = len(list(target.glob("*.ndjson")))
        await writer.append(writer.directory("web", rejected=True), b'{"reason":"r"}\n')
        await asyncio.sleep(1.3)
        assert list((tmp_path / "landing" / "_rejected" / "web").glob("*.ndjson")), "sealed by age"
        assert by_size >= 2
        await writer.stop()

    asyncio.run(scenario())
    assert len(lines(tmp_path / "landing" / "web")) == 5


def test_recovery_cuts_a_torn_line_and_leaves_live_segments_alone(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    (landing / "web").mkdir(parents=True)
    torn = landing / "web" / "a.ndjson.open"
    torn.write_bytes(b'{"n":1}\n{"n":2}\n{"n":3, "cut": "mid-wr')
    empty = landing / "web" / "b.ndjson.open"
    empty.write_bytes(b'{"partial')
    live = landing / "web" / "c.ndjson.open"
    live.write_bytes(b'{"n":9}\n')
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert recover_orphans(landing) == [landing / "web" / "a.ndjson"]
    finally:
        os.close(fd)
    assert (landing / "web" / "a.ndjson").read_bytes() == b'{"n":1}\n{"n":2}\n'
    assert not empty.exists() and live.exists()


def test_append_after_stop_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        writer = LandingWriter(tmp_path / "landing")
        await writer.start()
        await writer.stop()
        with pytest.raises(RuntimeError, match="not running"):
            await writer.append(writer.directory("web"), b"{}\n")

    asyncio.run(scenario())
