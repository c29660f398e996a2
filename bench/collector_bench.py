"""Collector throughput: `corral collect` (HTTP /v1/batch, fsync'd before it answers) against a
no-HTTP ceiling (orjson parse + re-serialize + append + fsync in one process), same run, same bodies.

    .venv/bin/python bench/collector_bench.py [--seconds 10] [--clients 8] [--batch 100] [--wrk]

1. Starts `corral collect` on a free loopback port in a temporary CORRAL_HOME, then a cheap load
   generator (raw asyncio HTTP/1.1 on keep-alive connections, pre-built requests; or `wrk` with
   --wrk, if it is on PATH) posts batches of ~1 KB Segment-spec messages from --clients
   connections: a warm-up, then --seconds measured. Only requests answered 200 count. After
   SIGTERM the landing files must hold at least as many lines as events acknowledged.
2. The ceiling: the same bodies, one process, no HTTP: orjson.loads each body, orjson.dumps each
   message as one line, append the request's lines to a file, fsync after each request.
3. Prints a table, the ratio and the spec's targets (>= 50,000 events/s on 2 cores, and >= half
   the ceiling), and rewrites its section of bench/README.md (--no-readme to skip).

With --plan, instead: the same collector measured without a tracking plan and then with a
50-event plan in block mode (loaders/protocols.py; the bench's 8 event names carry 14-property
schemas, 42 more events are planned but not sent), same bodies, same run, alternating --repeat
times; --violating (default 1%) of the messages break the plan (a wrong type or a misspelt
event name) and are blocked. Target: the plan keeps >= 70% of the throughput without one. It
writes its own section of bench/README.md.

Also reports, for the measured window, the CPU used by the collector's process tree, by the load
generator and by the whole machine, so one can tell whether the server is CPU-bound or starved.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
from readme_section import write_section  # bench/, the script's own folder

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- collector_bench:begin -->", "<!-- collector_bench:end -->"
PLAN_BEGIN, PLAN_END = "<!-- collector_plan_bench:begin -->", "<!-- collector_plan_bench:end -->"
PLAN_EVENTS = 50
TARGET_PLAN_RATIO = 0.7
HOST = "127.0.0.1"
SOURCE, WRITE_KEY = "bench", "benchkey"
TARGET_EVENTS_PER_S = 50_000
TARGET_RATIO = 0.5
CLEAN_EXIT = (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a graceful shutdown
SEED = 11

# --- synthetic messages ---------------------------------------------------------------------------

_EVENTS = (
    "Product Viewed", "Product Viewed", "Product Viewed", "Product Clicked", "Product Added",
    "Product List Viewed", "Cart Viewed", "Checkout Started", "Products Searched", "Order Completed",
)
# (product_id, sku, name, category, brand, price)
_PRODUCTS = (
    ("507f1f77bcf86cd799439011", "TH-TENT-2P-GRN", "Ridgeline 2-Person Backpacking Tent", "Camping/Tents", "Trailhead", 329.00),
    ("507f1f77bcf86cd799439012", "TH-BAG-20F-REG", "Summit 20°F Down Sleeping Bag", "Camping/Sleeping Bags", "Trailhead", 249.95),
    ("507f1f77bcf86cd799439013", "AL-PACK-55L-M", "Alpine Loop 55L Trekking Pack", "Packs/Backpacking", "Alpine Loop", 214.50),
    ("507f1f77bcf86cd799439014", "NR-JKT-RAIN-W-M", "Stormfront Women's Rain Jacket", "Apparel/Jackets", "Northridge", 159.00),
    ("507f1f77bcf86cd799439015", "TH-STOVE-TI", "Titanium Canister Stove", "Camping/Cooking", "Trailhead", 64.99),
    ("507f1f77bcf86cd799439016", "CW-BOOT-MID-10", "Cascade Mid Waterproof Hiking Boot", "Footwear/Hiking", "Cascade Works", 189.00),
    ("507f1f77bcf86cd799439017", "TH-LAMP-400", "Beacon 400-Lumen Headlamp", "Camping/Lighting", "Trailhead", 39.95),
    ("507f1f77bcf86cd799439018", "PF-FILTER-SQ", "Squeeze Water Filter System", "Camping/Water", "PureFlow", 44.00),
)
_PAGES = (
    ("/products/ridgeline-2p-tent", "Ridgeline 2-Person Backpacking Tent | Trailhead Supply Co."),
    ("/collections/sleeping-bags", "Sleeping Bags | Trailhead Supply Co."),
    ("/search", "Search results | Trailhead Supply Co."),
    ("/cart", "Your cart | Trailhead Supply Co."),
    ("/collections/new-arrivals", "New Arrivals | Trailhead Supply Co."),
)
_REFERRERS = ("https://www.google.com/", "https://www.instagram.com/", "", "https://duckduckgo.com/")
_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15",
)
_LOCALES = (("en-US", "America/New_York"), ("en-US", "America/Los_Angeles"), ("en-GB", "Europe/London"), ("de-DE", "Europe/Berlin"))
_CAMPAIGNS = (  # context.campaign, as (key, value) pairs
    (("source", "google"), ("medium", "cpc"), ("name", "fall_camping_sale"), ("term", "backpacking tent"), ("content", "ad_group_7")),
    (("source", "newsletter"), ("medium", "email"), ("name", "2026-10-weekly"), ("content", "hero_banner")),
)


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def build_message(rng: random.Random, message_id: str) -> dict:
    """One Segment-spec `track` message of about 1 KB: e-commerce properties and a web context."""
    product_id, sku, name, category, brand, price = rng.choice(_PRODUCTS)
    path, title = rng.choice(_PAGES)
    locale, timezone = rng.choice(_LOCALES)
    sent = datetime(2026, 10, 1, 12, tzinfo=UTC) + timedelta(milliseconds=rng.randrange(86_400_000))
    original = sent - timedelta(milliseconds=rng.randrange(50, 5_000))
    quantity = rng.randint(1, 3)
    message = {
        "type": "track",
        "event": rng.choice(_EVENTS),
        "anonymousId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "messageId": message_id,
        "properties": {
            "product_id": product_id, "sku": sku, "name": name, "category": category,
            "brand": brand, "variant": rng.choice(("Forest Green", "Slate", "Desert Tan")),
            "price": price, "quantity": quantity, "value": round(price * quantity, 2),
            "currency": "USD", "coupon": rng.choice(("", "FALL15", "FREESHIP")),
            "position": rng.randint(1, 24), "url": f"https://shop.example.com{path}",
            "image_url": f"https://cdn.example.com/images/{sku.lower()}-main.jpg",
        },
        "context": {
            "library": {"name": "analytics.js", "version": "2.11.1"},
            "page": {"path": path, "referrer": rng.choice(_REFERRERS), "search": "",
                     "title": title, "url": f"https://shop.example.com{path}"},
            "userAgent": rng.choice(_AGENTS),
            "ip": f"203.0.113.{rng.randint(1, 254)}",
            "locale": locale,
            "timezone": timezone,
        },
        "originalTimestamp": _timestamp(original),
        "sentAt": _timestamp(sent),
    }
    if rng.random() < 0.3:
        message["context"]["campaign"] = dict(rng.choice(_CAMPAIGNS))
    if rng.random() < 0.4:
        message["userId"] = f"user_{rng.randrange(1_000_000):06d}"
    return message


def build_bodies(count: int, batch: int, seed: int = SEED, violating: float = 0.0) -> list[bytes]:
    """`count` distinct /v1/batch JSON bodies of `batch` messages each (every messageId unique);
    a share `violating` of the messages break the --plan tracking plan (half a price sent as
    text, half a misspelt event name)."""
    rng = random.Random(seed)
    bodies = []
    for b in range(count):
        messages = [build_message(rng, f"bench-{b:04d}-{m:05d}-{rng.getrandbits(64):016x}") for m in range(batch)]
        for message in messages:
            if violating and rng.random() < violating:
                if rng.random() < 0.5:
                    message["properties"]["price"] = str(message["properties"]["price"])
                else:
                    message["event"] = message["event"].replace("Product", "Prodcut")
        bodies.append(orjson.dumps({"batch": messages}))
    return bodies


# --- the tracking plan of --plan ----------------------------------------------------------------

_OTHER_EVENTS = (
    "Signed Up", "Logged In", "Logged Out", "Password Reset", "Account Deleted", "Newsletter Subscribed",
    "Newsletter Unsubscribed", "Product Shared", "Product Reviewed", "Product Removed", "Product List Filtered",
    "Promotion Viewed", "Promotion Clicked", "Cart Shared", "Checkout Step Viewed", "Checkout Step Completed",
    "Payment Info Entered", "Order Updated", "Order Refunded", "Order Cancelled", "Coupon Entered", "Coupon Applied",
    "Coupon Denied", "Coupon Removed", "Wishlist Product Added", "Wishlist Product Removed", "Wishlist Product Added to Cart",
    "Store Located", "Gift Card Purchased", "Review Submitted", "Support Chat Started", "Support Chat Ended",
    "Return Requested", "Return Completed", "Subscription Started", "Subscription Renewed", "Subscription Cancelled",
    "Video Playback Started", "Video Playback Completed", "Application Installed", "Application Opened",
    "Push Notification Tapped",
)


def plan_yaml() -> str:
    """A 50-event plan in block mode: the 8 event names the bench sends, each with a schema of
    its 14 properties (required, types, a pattern, enums, ranges, URI formats, no other
    properties), and 42 more events as an e-commerce plan would have them."""
    product = """
      required: [product_id, sku, name, price, currency]
      additionalProperties: false
      properties:
        product_id: {type: string, pattern: "^[0-9a-f]{24}$"}
        sku: {type: string, minLength: 1, maxLength: 64}
        name: {type: string, minLength: 1}
        category: {type: string}
        brand: {type: string}
        variant: {type: string}
        price: {type: number, minimum: 0}
        quantity: {type: integer, minimum: 1, maximum: 100}
        value: {type: number, minimum: 0}
        currency: {type: string, enum: [USD, EUR, GBP, CAD]}
        coupon: {type: string, maxLength: 20}
        position: {type: integer, minimum: 1}
        url: {type: string, format: uri}
        image_url: {type: string, format: uri}"""
    other = """
      required: [id]
      properties:
        id: {type: string}
        value: {type: number, minimum: 0}
        reason: {type: string, enum: [customer, fraud, stock, other]}"""
    sent = sorted(set(_EVENTS))
    names = sent + list(_OTHER_EVENTS[: PLAN_EVENTS - len(sent)])
    assert len(names) == PLAN_EVENTS
    events = "".join(f"  {name}:\n    properties:{product if name in sent else other}\n" for name in names)
    return f"mode: block\nevents:\n{events}"


def basic_auth(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


def build_request(body: bytes, host: str, port: int, write_key: str) -> bytes:
    """The whole HTTP/1.1 keep-alive POST /v1/batch, head and body, as bytes."""
    head = (
        f"POST /v1/batch HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {basic_auth(write_key)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode("ascii") + body


# --- CPU accounting (Linux /proc; None elsewhere) -------------------------------------------------

@dataclass(frozen=True)
class CpuSnapshot:
    at: float  # time.monotonic()
    client: float  # this process's CPU seconds
    children: float  # CPU seconds of waited-for children (wrk)
    server: dict[int, float] | None  # CPU seconds of each process of the collector's tree
    machine: tuple[int, int] | None  # /proc/stat (busy, total) jiffies


@dataclass(frozen=True)
class CpuUse:
    server_processes: tuple[float, ...] | None  # cores used by each collector process, busiest first
    client_cores: float
    machine_busy: float | None  # 0..1 of all CPUs

    @property
    def server_cores(self) -> float | None:
        return None if self.server_processes is None else sum(self.server_processes)

    def describe(self) -> str:
        cpus = os.cpu_count() or 1
        if self.server_processes is None:
            server = "n/a"
        else:
            busy = [f"{c:.2f}" for c in self.server_processes if c >= 0.01]
            split = f" ({' + '.join(busy)} in {len(self.server_processes)} processes)" if len(self.server_processes) > 1 else ""
            server = f"{self.server_cores:.2f} cores{split}"
        text = f"collector {server}, load generator {self.client_cores:.2f} cores"
        if self.machine_busy is not None:
            text += f", whole machine {self.machine_busy:.0%} busy of {cpus} CPUs"
            if self.server_cores is not None:
                other = self.machine_busy * cpus - self.server_cores - self.client_cores
                text += f" (everything else, kernel threads and other processes: {max(0.0, other):.2f} cores)"
        return text


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, utime + stime in seconds) of one process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> dict[int, float] | None:
    """CPU seconds used so far by `root` and each of its living descendants (threads included)."""
    if not Path("/proc").is_dir():
        return None
    stats = {int(p.name): _proc_stat(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    stats = {pid: stat for pid, stat in stats.items() if stat is not None}
    if root not in stats:
        return None
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _) in stats.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return {pid: stats[pid][1] for pid in tree}


def machine_jiffies() -> tuple[int, int] | None:
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def cpu_snapshot(server_pid: int) -> CpuSnapshot:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuSnapshot(time.monotonic(), time.process_time(), children.ru_utime + children.ru_stime,
                       tree_cpu_seconds(server_pid), machine_jiffies())


def cpu_use(before: CpuSnapshot, after: CpuSnapshot) -> CpuUse:
    wall = max(after.at - before.at, 1e-9)
    server = None
    if before.server is not None and after.server is not None:
        used = [(seconds - before.server.get(pid, 0.0)) / wall for pid, seconds in after.server.items()]
        server = tuple(sorted(used, reverse=True))
    busy = None
    if before.machine and after.machine and after.machine[1] > before.machine[1]:
        busy = (after.machine[0] - before.machine[0]) / (after.machine[1] - before.machine[1])
    client = (after.client - before.client) + (after.children - before.children)
    return CpuUse(server, client / wall, busy)


# --- the collector subprocess ---------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_collector(corral: Path, home: Path, port: int, log: Path, workers: int | None, plans: Path) -> subprocess.Popen:
    env = {**os.environ, "CORRAL_HOME": str(home), "CORRAL_WRITE_KEYS": f"{SOURCE}:{WRITE_KEY}", "CORRAL_TRACKING_PLANS": str(plans)}
    command = [str(corral), "collect", "--host", HOST, "--port", str(port)]
    if workers is not None:
        command += ["--workers", str(workers)]
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def wait_healthy(process: subprocess.Popen, port: int, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"corral collect exited with {process.returncode} before it was ready:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    process.kill()
    sys.exit(f"corral collect did not answer GET /health with 200 within {timeout:.0f}s:\n{log.read_text()[-3000:]}")


def stop_collector(process: subprocess.Popen, timeout: float = 60.0) -> tuple[int, float]:
    """SIGTERM, wait for it to seal its files; (exit code, seconds it took)."""
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
        print(f"warning: corral collect ignored SIGTERM for {timeout:.0f}s and was killed", file=sys.stderr)
    return code, time.monotonic() - start


@dataclass(frozen=True)
class Landing:
    files: int
    lines: int
    other: tuple[str, ...]  # files under landing/<source>/ that are not *.ndjson (unsealed?)
    rejected: int = 0  # lines in landing/_rejected/<source>/ (messages a tracking plan blocked)


def count_lines(path: Path) -> int:
    lines = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            lines += chunk.count(b"\n")
    return lines


def landing_report(home: Path, source: str = SOURCE) -> Landing:
    folder = home / "landing" / source
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    sealed = [p for p in files if p.name.endswith(".ndjson")]
    others = tuple(str(p.relative_to(folder)) for p in files if not p.name.endswith(".ndjson"))

    rejected = sum(count_lines(p) for p in (home / "landing" / "_rejected" / source).glob("*.ndjson"))
    return Landing(len(sealed), sum(count_lines(p) for p in sealed), others, rejected)


# --- load generator: raw asyncio HTTP/1.1 ---------------------------------------------------------

@dataclass(frozen=True)
class Window:
    start: float  # time.monotonic() at which counting starts (after the warm-up)
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Tally:
    """One client's counts (merged after the run; nothing shared while it runs)."""

    acked_events: int = 0  # events answered 200, warm-up included: what the landing must hold
    window_events: int = 0  # events answered 200 inside the measured window
    window_requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # seconds, measured window only

    def merge(self, other: "Tally") -> "Tally":
        return Tally(
            self.acked_events + other.acked_events, self.window_events + other.window_events,
            self.window_requests + other.window_requests, self.statuses + other.statuses,
            self.errors + other.errors, self.latencies + other.latencies,
        )


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; return (status, connection reusable). Only the status line and the
    framing headers are looked at; the body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    keep_alive = lines[0].startswith(b"HTTP/1.1")
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep_alive = value.strip().lower() == b"keep-alive" or (keep_alive and b"close" not in value.lower())
    if chunked:
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")  # no trailers expected
    elif length:
        await reader.readexactly(length)
    return status, keep_alive


async def client(port: int, requests: Sequence[bytes], first: int, window: Window, batch: int) -> Tally:
    """Post requests back to back on one keep-alive connection until the window ends."""
    tally, index, writer = Tally(), first, None
    while time.monotonic() < window.end:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            while (sent := time.monotonic()) < window.end:
                writer.write(requests[index % len(requests)])
                index += 1
                await writer.drain()
                status, keep_alive = await read_response(reader)
                done = time.monotonic()
                tally.statuses[status] += 1
                if status == 200:
                    tally.acked_events += batch
                    if window.start <= done < window.end:
                        tally.window_events += batch
                        tally.window_requests += 1
                        tally.latencies.append(done - sent)
                if not keep_alive:
                    break
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError) as exc:
            tally.errors[type(exc).__name__] += 1
            await asyncio.sleep(0.05)
        finally:
            if writer is not None:
                writer.close()
                writer = None
    return tally


async def sample_cpu(server_pid: int, window: Window) -> tuple[CpuSnapshot, CpuSnapshot]:
    await asyncio.sleep(max(0.0, window.start - time.monotonic()))
    before = cpu_snapshot(server_pid)
    await asyncio.sleep(max(0.0, window.end - time.monotonic()))
    return before, cpu_snapshot(server_pid)


async def asyncio_load(port: int, server_pid: int, bodies: Sequence[bytes], opts: argparse.Namespace) -> tuple[Tally, float, CpuUse]:
    requests = [build_request(body, HOST, port, WRITE_KEY) for body in bodies]
    start = time.monotonic() + opts.warmup
    window = Window(start, start + opts.seconds)
    spread = max(1, len(requests) // opts.clients)
    results = await asyncio.gather(
        sample_cpu(server_pid, window),
        *(client(port, requests, i * spread, window, opts.batch) for i in range(opts.clients)),
    )
    (before, after), tallies = results[0], results[1:]
    total = Tally()
    for tally in tallies:
        total = total.merge(tally)
    return total, window.seconds, cpu_use(before, after)


# --- load generator: wrk (optional) ---------------------------------------------------------------

_WRK_SCRIPT = """
local paths = {%(paths)s}
local requests, next_request = {}, 0
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "%(auth)s"}
for i, path in ipairs(paths) do
  local f = assert(io.open(path, "rb"))
  requests[i] = wrk.format("POST", "/v1/batch", headers, f:read("*a"))
  f:close()
end
request = function()
  next_request = next_request %% #requests + 1
  return requests[next_request]
end
done = function(summary, latency, _)
  local e = summary.errors
  io.write(string.format("WRK_RESULT %%d %%d %%d %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    e.status, e.connect, e.read, e.write, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_script(bodies: Sequence[bytes], folder: Path) -> Path:
    paths = []
    for number, body in enumerate(bodies):
        path = folder / f"body-{number:03d}.json"
        path.write_bytes(body)
        paths.append(path)
    script = folder / "post_batch.lua"
    quoted = ", ".join(f'"{p}"' for p in paths)
    script.write_text(_WRK_SCRIPT % {"paths": quoted, "auth": basic_auth(WRITE_KEY)})
    return script


def wrk_seconds(seconds: float) -> int:
    """wrk takes whole seconds."""
    return max(1, round(seconds))


def run_wrk(script: Path, port: int, clients: int, seconds: float) -> dict[str, int]:
    command = ["wrk", "-t1", f"-c{clients}", f"-d{wrk_seconds(seconds)}s", "--timeout", "30s",
               "-s", str(script), f"http://{HOST}:{port}/v1/batch"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = re.search(r"^WRK_RESULT (.*)$", out, re.M)
    if not found:
        sys.exit(f"no result from wrk:\n{out}")
    keys = ("requests", "duration_us", "status_errors", "connect", "read", "write", "timeout", "p50_us", "p99_us")
    return dict(zip(keys, map(int, found.group(1).split())))


def wrk_load(port: int, server_pid: int, bodies: Sequence[bytes], opts: argparse.Namespace, work: Path) -> tuple[Tally, float, CpuUse]:
    folder = work / "wrk"
    folder.mkdir()
    script = wrk_script(bodies, folder)
    warm = run_wrk(script, port, opts.clients, opts.warmup)
    before = cpu_snapshot(server_pid)
    main = run_wrk(script, port, opts.clients, opts.seconds)
    after = cpu_snapshot(server_pid)
    ok = [(run["requests"] - run["status_errors"]) for run in (warm, main)]
    errors = Counter({k: main[k] + warm[k] for k in ("connect", "read", "write", "timeout", "status_errors") if main[k] + warm[k]})
    tally = Tally(acked_events=sum(ok) * opts.batch, window_events=ok[1] * opts.batch, window_requests=ok[1],
                  statuses=Counter({"2xx": sum(ok)}), errors=errors,
                  latencies=[main["p50_us"] / 1e6, main["p99_us"] / 1e6])
    return tally, main["duration_us"] / 1e6, cpu_use(before, after)


# --- the two measurements -------------------------------------------------------------------------

@dataclass(frozen=True)
class CollectorResult:
    tally: Tally
    seconds: float
    cpu: CpuUse
    landing: Landing
    exit_code: int
    stop_seconds: float

    @property
    def events_per_s(self) -> float:
        return self.tally.window_events / self.seconds

    @property
    def landing_ok(self) -> bool:
        return self.landing.lines + self.landing.rejected >= self.tally.acked_events > 0


@dataclass(frozen=True)
class CeilingResult:
    events: int
    seconds: float
    fsyncs: int
    lines_written: int

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds


def measure_collector(corral: Path, bodies: Sequence[bytes], opts: argparse.Namespace, work: Path, plans: Path | None = None) -> CollectorResult:
    """One collector run in `work`; `plans` is its CORRAL_TRACKING_PLANS (default: an empty folder)."""
    work.mkdir(parents=True, exist_ok=True)
    home, log, port = work / "home", work / "collector.log", free_port()
    if plans is None:
        plans = work / "no-plans"
        plans.mkdir(exist_ok=True)
    process = start_collector(corral, home, port, log, opts.workers, plans)
    try:
        wait_healthy(process, port, log)
        if opts.wrk:
            tally, seconds, cpu = wrk_load(port, process.pid, bodies, opts, work)
        else:
            tally, seconds, cpu = asyncio.run(asyncio_load(port, process.pid, bodies, opts))
    finally:
        exit_code, stop_seconds = stop_collector(process)
    if exit_code not in CLEAN_EXIT:
        print(f"warning: corral collect exited with {exit_code} after SIGTERM:\n{log.read_text()[-2000:]}", file=sys.stderr)
    return CollectorResult(tally, seconds, cpu, landing_report(home), exit_code, stop_seconds)


def append_fsync(fd: int, body: bytes) -> int:
    """The ceiling's work for one request: parse, one line per message, append, fsync."""
    messages = orjson.loads(body)["batch"]
    os.write(fd, b"".join([orjson.dumps(message) + b"\n" for message in messages]))
    os.fsync(fd)
    return len(messages)


def measure_ceiling(bodies: Sequence[bytes], path: Path, seconds: float, warmup: float) -> CeilingResult:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        index, deadline = 0, time.monotonic() + warmup
        while time.monotonic() < deadline:
            append_fsync(fd, bodies[index % len(bodies)])
            index += 1
        events, fsyncs, start = 0, 0, time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            events += append_fsync(fd, bodies[index % len(bodies)])
            index += 1
            fsyncs += 1
    finally:
        os.close(fd)
    return CeilingResult(events, elapsed, fsyncs, count_lines(path))


# --- report ---------------------------------------------------------------------------------------

def command_line(opts: argparse.Namespace) -> str:
    parts = [".venv/bin/python", "bench/collector_bench.py", "--seconds", f"{opts.seconds:g}",
             "--clients", str(opts.clients), "--batch", str(opts.batch)]
    if opts.workers is not None:
        parts += ["--workers", str(opts.workers)]
    if opts.wrk:
        parts.append("--wrk")
    return shlex.join(parts)


def exit_text(code: int) -> str:
    if code == -signal.SIGTERM:
        return "exited by SIGTERM (re-raised after its shutdown)"
    return f"exited with code {code}"


def verdict(met: bool) -> str:
    return "**met**" if met else "**not met**"


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def latency_line(result: CollectorResult, opts: argparse.Namespace) -> str:
    values = result.tally.latencies
    if not values:
        return ""
    if opts.wrk:  # wrk reports percentiles itself: [p50, p99]
        return f"Request latency (wrk): p50 {values[0] * 1e3:.1f} ms, p99 {values[1] * 1e3:.1f} ms.\n"
    return (f"Request latency: p50 {statistics.median(values) * 1e3:.1f} ms, "
            f"p99 {percentile(values, 0.99) * 1e3:.1f} ms ({result.tally.window_requests:,} requests).\n")


def render(opts: argparse.Namespace, bodies: Sequence[bytes], collector: CollectorResult, ceiling: CeilingResult) -> str:
    cpus = os.cpu_count() or 0
    ratio = collector.events_per_s / ceiling.events_per_s if ceiling.events_per_s else 0.0
    message_bytes = sum(len(b) for b in bodies) / (len(bodies) * opts.batch)
    generator = "wrk, 1 thread" if opts.wrk else "raw asyncio HTTP/1.1 client"
    tally = collector.tally
    errors = dict(tally.errors) or "none"
    non_200 = {k: v for k, v in tally.statuses.items() if k not in (200, "2xx")} or "none"
    check = "holds" if collector.landing_ok else "**FAILS**"
    cores_note = "" if cpus == 2 else f" (this machine has {cpus} CPUs, not 2)"
    unsealed = f" Files left not named *.ndjson: {', '.join(collector.landing.other)}." if collector.landing.other else ""
    return (
        f"{BEGIN}\n## Collector: HTTP ingest vs a no-HTTP ceiling\n\n"
        f"`{command_line(opts)}` ({date.today()}, {platform.machine()}, {cpus} CPUs; "
        f"{opts.seconds:g} s measured after {wrk_seconds(opts.warmup) if opts.wrk else opts.warmup:g} s warm-up; "
        f"load generator: {generator}):\n\n"
        "| path | events | seconds | events/s |\n| --- | ---: | ---: | ---: |\n"
        f"| `corral collect`: POST /v1/batch, {opts.clients} keep-alive clients, {opts.batch} events "
        f"of {message_bytes:,.0f} B per request, 200 after fsync | {tally.window_events:,} | "
        f"{collector.seconds:.2f} | {collector.events_per_s:,.0f} |\n"
        f"| ceiling: orjson.loads + orjson.dumps per line + append + fsync per request, one process, "
        f"no HTTP | {ceiling.events:,} | {ceiling.seconds:.2f} | {ceiling.events_per_s:,.0f} |\n\n"
        f"**Collector / ceiling = {ratio:.2f}.**\n\n"
        f"Targets (spec):\n\n"
        f"- at least {TARGET_EVENTS_PER_S:,} events/s on 2 cores: "
        f"{verdict(collector.events_per_s >= TARGET_EVENTS_PER_S)} "
        f"({collector.events_per_s:,.0f} events/s){cores_note}\n"
        f"- at least half the ceiling: {verdict(ratio >= TARGET_RATIO)} (ratio {ratio:.2f})\n\n"
        f"Check: after SIGTERM the landing files hold {collector.landing.lines:,} lines in "
        f"{collector.landing.files} file(s) for {tally.acked_events:,} events acknowledged "
        f"(warm-up included): lines >= acknowledged {check}.{unsealed} "
        f"Non-200 answers: {non_200}; connection errors: {errors}. "
        f"Collector {exit_text(collector.exit_code)} {collector.stop_seconds:.1f} s after SIGTERM.\n\n"
        f"CPU in the measured window: {collector.cpu.describe()}.\n"
        f"{latency_line(collector, opts)}"
        f"{END}"
    )


def plan_command_line(opts: argparse.Namespace) -> str:
    parts = [".venv/bin/python", "bench/collector_bench.py", "--plan", "--seconds", f"{opts.seconds:g}",
             "--clients", str(opts.clients), "--batch", str(opts.batch), "--violating", f"{opts.violating:g}",
             "--repeat", str(opts.repeat)]
    if opts.workers is not None:
        parts += ["--workers", str(opts.workers)]
    return shlex.join(parts)


def cpu_us(result: CollectorResult) -> float | None:
    """The collector's CPU microseconds per event answered in the measured window."""
    cores = result.cpu.server_cores
    return cores * 1e6 / result.events_per_s if cores and result.events_per_s else None


def render_plan(opts: argparse.Namespace, bodies: Sequence[bytes], pairs: list[tuple[CollectorResult, CollectorResult]]) -> str:
    cpus = os.cpu_count() or 0
    ratios = [planned.events_per_s / plain.events_per_s if plain.events_per_s else 0.0 for plain, planned in pairs]
    ratio = statistics.median(ratios)
    message_bytes = sum(len(b) for b in bodies) / (len(bodies) * opts.batch)

    def row(label: str, result: CollectorResult) -> str:
        values = result.tally.latencies
        p50 = f"{statistics.median(values) * 1e3:.1f}" if values else "n/a"
        p99 = f"{percentile(values, 0.99) * 1e3:.1f}" if values else "n/a"
        cores = "n/a" if result.cpu.server_cores is None else f"{result.cpu.server_cores:.2f}"
        per_event = cpu_us(result)
        return (f"| {label} | {result.tally.window_events:,} | {result.seconds:.2f} | {result.events_per_s:,.0f} | "
                f"{p50} | {p99} | {cores} | {'n/a' if per_event is None else f'{per_event:.1f}'} |\n")

    table = ("| run | events | seconds | events/s | p50 ms | p99 ms | collector cores | collector CPU µs/event |\n"
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    for number, (plain, planned) in enumerate(pairs, start=1):
        suffix = f" (round {number})" if len(pairs) > 1 else ""
        table += row(f"no tracking plan{suffix}", plain) + row(f"{PLAN_EVENTS}-event plan, block mode{suffix}", planned)
    cpu_ratios = [a / b for a, b in ((cpu_us(plain), cpu_us(planned)) for plain, planned in pairs) if a and b]
    cpu_line = (f"CPU per event (the collector's CPU over the events it answered), without / with the plan: "
                f"{statistics.median(cpu_ratios):.2f} (median; {', '.join(f'{r:.2f}' for r in cpu_ratios)}): the ratio to "
                "expect when the collector has both cores to itself and is CPU-bound.\n\n") if cpu_ratios else ""
    planned = pairs[-1][1]
    checks = all(p.landing_ok and q.landing_ok for p, q in pairs)
    blocked_share = planned.landing.rejected / planned.tally.acked_events if planned.tally.acked_events else 0.0
    machine = pairs[-1][1].cpu.describe()
    return (
        f"{PLAN_BEGIN}\n## Collector with a tracking plan: {PLAN_EVENTS} events in block mode vs no plan\n\n"
        f"`{plan_command_line(opts)}` ({date.today()}, {platform.machine()}, {cpus} CPUs; {opts.seconds:g} s measured "
        f"after {opts.warmup:g} s warm-up per run; the two runs one after the other on the same bodies: {opts.batch} "
        f"events of {message_bytes:,.0f} B per POST /v1/batch, {opts.clients} keep-alive clients, "
        f"{opts.violating:.0%} of the messages breaking the plan):\n\n"
        f"{table}\n"
        f"**With the plan / without = {ratio:.2f}**"
        + (f" (median of {len(ratios)} rounds: {', '.join(f'{r:.2f}' for r in ratios)})" if len(ratios) > 1 else "")
        + f". Target (spec): at least {TARGET_PLAN_RATIO:.0%} of the throughput without a plan: "
        f"{verdict(ratio >= TARGET_PLAN_RATIO)}.\n\n"
        f"{cpu_line}"
        f"The plan: {PLAN_EVENTS} events; the 8 names the bench sends have a schema of their 14 properties (5 required, "
        "types, a 24-hex-digit pattern, enums, ranges, two URI formats, `additionalProperties: false`), 42 more are "
        "planned but not sent; each schema compiled once per worker into a Python predicate (loaders/schema_predicate.py), "
        "each message checked in the collector before its 200. Messages breaking it (a price sent as text, or 'Prodcut' for 'Product' in the event name) "
        f"are blocked: in the last run {planned.landing.rejected:,} messages ({blocked_share:.1%}) went to "
        "`landing/_rejected/` with their violations, so most group commits fsync two files (side by side) instead of one.\n\n"
        f"Check: accepted + blocked lines landed >= events acknowledged, in every run: {'holds' if checks else '**FAILS**'}. "
        f"CPU in the last measured window: {machine}. The machine is shared with other engineers' work (tests, "
        "builds) that runs at the same time, so absolute rates move between runs; the ratio compares runs made "
        "back to back.\n"
        f"{PLAN_END}"
    )


def main_plan(opts: argparse.Namespace) -> None:
    bodies = build_bodies(opts.bodies, opts.batch, violating=opts.violating)
    pairs = []
    with tempfile.TemporaryDirectory(prefix="collector-plan-bench-") as tmp:
        work = Path(tmp)
        plans = work / "plans"
        plans.mkdir()
        (plans / f"{SOURCE}.yml").write_text(plan_yaml())
        for number in range(opts.repeat):
            plain = measure_collector(opts.corral, bodies, opts, work / f"plain-{number}")
            planned = measure_collector(opts.corral, bodies, opts, work / f"plan-{number}", plans=plans)
            print(f"round {number + 1}: no plan {plain.events_per_s:,.0f} events/s, plan {planned.events_per_s:,.0f} events/s "
                  f"({planned.events_per_s / max(plain.events_per_s, 1e-9):.2f})", flush=True)
            pairs.append((plain, planned))
    report = render_plan(opts, bodies, pairs)
    print(report)
    if not opts.no_readme:
        write_section(report, PLAN_BEGIN, PLAN_END)
    if not all(p.landing_ok and q.landing_ok for p, q in pairs):
        sys.exit("landing check failed: fewer lines landed than events acknowledged")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--seconds", type=float, default=10.0, help="measured duration of each path")
    args.add_argument("--clients", type=int, default=8, help="concurrent keep-alive connections")
    args.add_argument("--batch", type=int, default=100, help="messages per request")
    args.add_argument("--warmup", type=float, default=1.5, help="seconds of load before measuring")
    args.add_argument("--bodies", type=int, default=50, help="distinct request bodies to cycle through")
    args.add_argument("--workers", type=int, help="pass --workers N to corral collect (default: its own)")
    args.add_argument("--wrk", action="store_true", help="use wrk (must be on PATH) as the load generator")
    args.add_argument("--corral", type=Path, default=ROOT / ".venv" / "bin" / "corral", help="corral executable")
    args.add_argument("--no-readme", action="store_true", help="print only; leave bench/README.md alone")
    args.add_argument("--plan", action="store_true", help=f"measure a {PLAN_EVENTS}-event tracking plan in block mode against no plan")
    args.add_argument("--violating", type=float, default=0.01, help="--plan: share of messages that break the plan (default 0.01)")
    args.add_argument("--repeat", type=int, default=1, help="--plan: rounds of (no plan, plan), alternating (default 1)")
    opts = args.parse_args(argv)
    if opts.wrk and shutil.which("wrk") is None:
        args.error("--wrk: no wrk binary on PATH")
    if min(opts.clients, opts.batch, opts.bodies, opts.repeat) < 1 or opts.seconds <= 0 or opts.warmup < 0:
        args.error("--clients, --batch, --bodies, --repeat must be >= 1 and --seconds > 0")
    if not 0 <= opts.violating <= 1:
        args.error("--violating is a share between 0 and 1")
    if opts.plan and opts.wrk:
        args.error("--plan uses the asyncio load generator; drop --wrk")
    return opts


def main() -> None:
    opts = parse_args()
    if opts.plan:
        main_plan(opts)
        return
    bodies = build_bodies(opts.bodies, opts.batch)
    with tempfile.TemporaryDirectory(prefix="collector-bench-") as tmp:
        work = Path(tmp)
        collector = measure_collector(opts.corral, bodies, opts, work)
        ceiling = measure_ceiling(bodies, work / "ceiling.ndjson", opts.seconds, opts.warmup)
    report = render(opts, bodies, collector, ceiling)
    print(report)
    if not opts.no_readme:
        write_section(report, BEGIN, END)
    if not collector.landing_ok:
        sys.exit("landing check failed: fewer lines landed than events acknowledged")


if __name__ == "__main__":
    main()
