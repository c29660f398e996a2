"""Landing segments: append-only NDJSON files the collector makes durable before it answers.

A writer appends to `landing/<source>/<stamp>-<pid>-<seq>.ndjson.open` (rejected messages, and
messages a tracking plan blocked, to `landing/_rejected/<source>/...`), holding an exclusive flock on each open file. Appends from
concurrent requests are group-committed: one write and one fsync per file per round (the files of
a round are fsync'd side by side, so a round costs about one fsync however many files it
touched), and every request in the round is acknowledged only after those fsyncs. A segment is sealed (renamed without
`.open`, directory fsync'd) when it reaches `max_bytes` or `max_age_seconds`, or when the writer
stops. Only sealed segments are loaded.

After a crash, `recover_orphans` seals `.open` files no live writer holds: it cuts a torn last
line (it was never acknowledged) and keeps every complete one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("corral.landing")

OPEN_SUFFIX = ".open"
CREATING_SUFFIX = ".creating"
REJECTED_DIR = "_rejected"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class _Segment:
    path: Path
    fd: int
    opened_at: float
    size: int = 0

    def seal(self) -> Path | None:
        """Close and rename to the sealed name (deleting it if empty); returns the sealed path."""
        os.fsync(self.fd)
        os.close(self.fd)  # releases the flock
        if self.size == 0:
            self.path.unlink(missing_ok=True)
            fsync_dir(self.path.parent)
            return None
        sealed = self.path.with_name(self.path.name.removesuffix(OPEN_SUFFIX))
        os.rename(self.path, sealed)
        fsync_dir(sealed.parent)
        return sealed


@dataclass
class _Round:
    chunks: dict[Path, list[bytes]] = field(default_factory=dict)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class LandingWriter:
    """Group-committing appender; use from one asyncio loop: `await start()`, `await
    append(...)` from request handlers, `await stop()` to seal everything."""

    def __init__(self, landing: Path, max_bytes: int = 64 << 20, max_age_seconds: float = 60.0) -> None:
        self.landing = landing
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_seconds
        self._segments: dict[Path, _Segment] = {}
        self._round = _Round()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._sequence = 0
        self._stopping = False
        self._fsyncs: concurrent.futures.ThreadPoolExecutor | None = None

    def directory(self, source: str, rejected: bool = False) -> Path:
        return self.landing / REJECTED_DIR / source if rejected else self.landing / source

    async def start(self) -> None:
        self.landing.mkdir(parents=True, exist_ok=True)
        self._fsyncs = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="landing-fsync")
        recovered = await asyncio.to_thread(recover_orphans, self.landing)
        for path in recovered:
            log.info("recovered unsealed segment %s", path)
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="landing-writer")

    async def append(self, directory: Path, data: bytes) -> None:
        """Append `data` (whole NDJSON lines) to the open segment of `directory`; returns once
        it is on disk."""
        await self.append_all([(directory, data)])

    async def append_all(self, parts: list[tuple[Path, bytes]]) -> None:
        """Append each `(directory, data)` in the same round (one wait for all of a request's
        files); returns once every part is on disk."""
        if self._wake is None or self._stopping:
            raise RuntimeError("landing writer is not running")
        parts = [(directory, data) for directory, data in parts if data]
        if not parts:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for directory, data in parts:
            self._round.chunks.setdefault(directory, []).append(data)
        self._round.waiters.append(waiter)
        self._wake.set()
        await waiter

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None and self._wake is not None:
            self._wake.set()
            await self._task
        _log_sealed(await asyncio.to_thread(self._seal, lambda s: True))
        if self._fsyncs is not None:
            self._fsyncs.shutdown()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=min(1.0, self.max_age_seconds))
            except TimeoutError:
                pass
            self._wake.clear()
            current, self._round = self._round, _Round()
            try:
                _log_sealed(await asyncio.to_thread(self._commit, current.chunks))
            except Exception as exc:  # disk full, permissions: every waiter hears it
                log.exception("landing write failed")
                for waiter in current.waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
            else:
                for waiter in current.waiters:
                    if not waiter.done():
                        waiter.set_result(None)
            if self._stopping and not self._round.chunks:
                return

    def _commit(self, chunks: dict[Path, list[bytes]]) -> list[Path]:
        """One round, in the writer thread: append and fsync, then seal what is due."""
        if chunks:
            self._write(chunks)
        now = time.monotonic()
        return self._seal(lambda s: s.size >= self.max_bytes or now - s.opened_at >= self.max_age_seconds)

    def _write(self, chunks: dict[Path, list[bytes]]) -> None:
        touched = []
        for directory, parts in chunks.items():
            segment = self._segments.get(directory) or self._open(directory)
            data = b"".join(parts)
            view = memoryview(data)
            while view:
                written = os.write(segment.fd, view)
                view = view[written:]
            segment.size += len(data)
            touched.append(segment)
        if len(touched) > 1 and self._fsyncs is not None:  # side by side: the journal commits them together
            for done in [self._fsyncs.submit(os.fsync, segment.fd) for segment in touched]:
                done.result()
        else:
            for segment in touched:
                os.fsync(segment.fd)

    def _open(self, directory: Path) -> _Segment:
        directory.mkdir(parents=True, exist_ok=True)
        self._sequence += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        path = directory / f"{stamp}-{os.getpid()}-{self._sequence:06d}.ndjson{OPEN_SUFFIX}"
        # Created under a temporary name and locked before it is visible as `.open`, so
        # recovery in another process can never take a live segment for an orphan.
        creating = path.with_name(path.name + CREATING_SUFFIX)
        fd = os.open(creating, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(creating, path)
        fsync_dir(directory)
        segment = _Segment(path, fd, time.monotonic())
        self._segments[directory] = segment
        return segment

    def _seal(self, due: Callable[[_Segment], bool]) -> list[Path]:
        sealed = []
        for directory, segment in list(self._segments.items()):
            if due(segment):
                del self._segments[directory]
                path = segment.seal()
                if path is not None:
                    sealed.append(path)
        return sealed


def _log_sealed(paths: list[Path]) -> None:
    for path in paths:
        log.info("sealed %s", path)


def recover_orphans(landing: Path) -> list[Path]:
    """Seal `.open` segments whose writer is gone (no flock held): cut a torn last line, keep
    every complete line. Returns the sealed paths."""
    recovered = []
    for path in landing.rglob(f"*{CREATING_SUFFIX}"):  # empty: renamed to .open before any write
        if time.time() - path.stat().st_mtime > 60:
            path.unlink(missing_ok=True)
    for path in sorted(landing.rglob(f"*{OPEN_SUFFIX}")):
        fd = os.open(path, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer holds it
            size = os.fstat(fd).st_size
            keep = _complete_prefix(fd, size)
            if keep < size:
                log.warning("cutting %d bytes of a torn, never-acknowledged line from %s", size - keep, path)
                os.ftruncate(fd, keep)
            os.fsync(fd)
        finally:
            os.close(fd)
        if keep == 0:
            path.unlink()
        else:
            sealed = path.with_name(path.name.removesuffix(OPEN_SUFFIX))
            os.rename(path, sealed)
            recovered.append(sealed)
        fsync_dir(path.parent)
    return recovered


def _complete_prefix(fd: int, size: int) -> int:
    """Length of the file up to and including its last newline."""
    position = size
    while position > 0:
        start = max(0, position - 65536)
        block = os.pread(fd, position - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0


def write_segment(directory: Path, data: bytes, prefix: str) -> Path:
    """Write `data` (whole NDJSON lines) as one sealed segment of `directory`, outside any
    collector (e.g. `corral replay-rejected`): created and locked like a writer's, so a
    collector starting meanwhile never takes it for an orphan; durable when this returns."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = directory / f"{prefix}-{stamp}-{os.getpid()}-{time.monotonic_ns()}.ndjson{OPEN_SUFFIX}"
    creating = path.with_name(path.name + CREATING_SUFFIX)
    fd = os.open(creating, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(creating, path)
    segment = _Segment(path, fd, time.monotonic())
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    segment.size = len(data)
    sealed = segment.seal()
    if sealed is None:
        raise ValueError("write_segment: no data")
    return sealed
