"""A deterministic synthetic data set of Segment-spec messages: a small outdoor-gear shop.

`generate_messages(DemoSpec())` simulates `users` people visiting a web shop (and, for some, its
iOS / Android app) over `days` days and yields every message the Segment SDKs would have sent,
in the HTTP API's camelCase form, ordered by `receivedAt`. `write_ndjson` writes the same
stream as sealed newline-delimited JSON segments, the way a collector lands them.

What is in it, on purpose (each is something the downstream models must handle):

* identity: every person has a web `anonymousId`; ~30% also have a mobile app install (own
  `anonymousId` + `context.device.id`). ~40% sign up (`identify` with `userId` on the web
  `anonymousId`, then `Signed Up`); those with the app later log in there (`identify`, or an
  `alias` from the mobile `anonymousId`): the cross-device link. Some people clear cookies and log
  in again on a new web `anonymousId`; ~1% share a browser with another person (one
  `anonymousId`, two `userId`s at different times). A few messages carry junk identifiers
  (`anonymousId` "undefined", `userId` "null" / "0", email "none") that must be blocked.
* traits that need normalizing: email in stray upper case or padded with whitespace, phone
  numbers in assorted formats (all in the fictional 555-01xx range).
* sessions: visits are bursts of 1-15 events seconds to minutes apart, now and then with a
  pause over 30 minutes inside the burst, starting with a `page` (web) or `screen` (app).
* acquisition: organic search, paid search (UTM + gclid), social, email, referral, direct; UTM
  parameters are in the landing page URL and (mostly) in `context.campaign`.
* commerce: the Segment e-commerce spec events, ending in `Order Completed` with revenue.
* delivery: `originalTimestamp` / `sentAt` are device-clock times (5% of devices are minutes to
  hours off, both shifted by the same amount), `receivedAt` is server time, so
  `receivedAt - (sentAt - originalTimestamp)` recovers the true event time. ~1% of messages are
  delivered twice (same `messageId`, identical content, the copy later in the stream). A few
  crawler page views (Googlebot, bingbot ...) are mixed in.

Everything derives from one `random.Random(spec.seed)`, so one spec always gives the same
messages and byte-identical files. All timestamps fall inside `[end - days, end)`. The whole data
set is built in memory (as JSON text) and sorted before the first message comes out: ~300 MB for
the defaults, growing linearly with `users` and `days`.
"""

from __future__ import annotations

import json
import os
import random
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote_plus

__all__ = ["DemoSpec", "generate_messages", "write_ndjson"]


@dataclass(frozen=True)
class DemoSpec:
    """What to simulate. The defaults make ~160k messages (~160 MB of NDJSON) over 90 days.
    `end` may also be timezone-aware; it is converted to UTC."""

    users: int = 3000  # people who ever visit
    days: int = 90
    seed: int = 7
    end: datetime = datetime(2026, 11, 1)  # naive UTC; events fall in [end - days, end)
    duplicate_rate: float = 0.01  # share of messages re-sent with the same messageId (SDK retries)
    skewed_device_rate: float = 0.05  # share of devices whose clock is off by minutes..hours

    def __post_init__(self) -> None:
        if self.users < 0:
            raise ValueError(f"users must be >= 0, not {self.users}")
        if self.days < 1:
            raise ValueError(f"days must be >= 1, not {self.days}")
        for name in ("duplicate_rate", "skewed_device_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")


def generate_messages(spec: DemoSpec) -> Iterator[dict]:
    """Every message of the data set, as fresh dicts, ordered by `receivedAt` (a duplicate
    comes later than its original; exact ties keep generation order)."""
    for line in _sorted_lines(spec):
        yield json.loads(line)


def write_ndjson(spec: DemoSpec, out_dir: Path, segment_rows: int = 50_000) -> list[Path]:
    """Write the messages as newline-delimited JSON files named demo-0001.ndjson, demo-0002.ndjson ...
    (at most segment_rows lines each) into out_dir (created if missing); write each to a temporary
    name `<name>.open` first and os.replace it to its final name when complete. Return the final
    paths in order.

    Files are UTF-8, one compact JSON object per line, every line ending in a newline. Other files
    already in `out_dir` are left alone (a later, smaller run does not remove extra segments)."""
    if segment_rows < 1:
        raise ValueError(f"segment_rows must be >= 1, not {segment_rows}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = _sorted_lines(spec)
    paths: list[Path] = []
    for number, first in enumerate(range(0, len(lines), segment_rows), start=1):
        final = out_dir / f"demo-{number:04d}.ndjson"
        partial = final.with_name(final.name + ".open")
        with partial.open("w", encoding="utf-8", newline="\n") as fh:
            fh.write("\n".join(lines[first : first + segment_rows]))
            fh.write("\n")
        os.replace(partial, final)
        paths.append(final)
    return paths


# --- constants (immutable) ----------------------------------------------------------------------

_DAY_MS = 86_400_000
_MAX_SKEW_MS = 3 * 3_600_000  # skewed device clocks are off by up to this much
_MIN_SKEW_MS = 2 * 60_000  # ... and by at least this much
_JITTER_MS = 1_500  # healthy device clocks are still off by up to this much
_MAX_SEND_MS = 5_000  # sentAt - originalTimestamp
_MAX_NETWORK_MS = 2_000  # receivedAt - (true time + send delay)
_EDGE_MS = _MAX_SKEW_MS + _JITTER_MS + _MAX_SEND_MS + _MAX_NETWORK_MS + 1_000

_JUNK_ANONYMOUS_RATE = 0.0008  # anonymousId "undefined"
_JUNK_USER_RATE = 0.0015  # userId "null" / "0", among messages that carry a userId
_JUNK_EMAIL_RATE = 0.02  # email "none", among identify calls that send an email

# gaps between the messages of a visit
_FIRST, _QUICK, _STAMP, _BROWSE, _NAV, _CRAWL = range(6)

_SITE = "https://shop.example.com"
_BRAND = "Trailhead Supply Co."
_WEB_LIBRARY = ("analytics.js", "2.11.1")
_IOS_LIBRARY = ("analytics-ios", "4.1.8")
_ANDROID_LIBRARY = ("analytics-android", "4.11.3")
_APP = ("Trailhead", "3.12.0", "3120")

_FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Carlos", "Karen", "Daniel", "Lisa", "Matthew", "Nancy", "Anthony", "Betty", "Mark", "Sandra",
    "Steven", "Ashley", "Andrew", "Emily", "Joshua", "Michelle", "Kevin", "Amanda", "Brian",
    "Melissa", "Wei", "Priya", "Aisha", "Hiroshi", "Olga", "Mateo", "Sofia", "Liam", "Noah",
    "Emma", "Olivia", "Ava", "José", "Zoë", "Renée", "Søren", "Chloé", "André", "Björn", "Nadia",
)
_LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott",
    "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell",
    "Patel", "Kim", "Chen", "Okafor", "Müller", "O'Brien", "Núñez", "Kowalski", "Sato", "Ivanova",
)
_EMAIL_DOMAINS = (
    ("gmail.com", 40), ("yahoo.com", 10), ("outlook.com", 8), ("hotmail.com", 7), ("icloud.com", 9),
    ("aol.com", 2), ("proton.me", 3), ("me.com", 2), ("comcast.net", 2), ("example.org", 3),
)
_AREA_CODES = (
    415, 212, 312, 206, 617, 303, 512, 646, 213, 404, 305, 702, 503, 612, 919, 720, 801, 215,
    602, 858, 971, 347, 773, 510, 408, 917, 718, 414, 615, 704,
)
_PHONE_FORMATS = (
    "+1 ({a}) 555-01{x:02d}", "({a}) 555-01{x:02d}", "{a}-555-01{x:02d}", "{a}.555.01{x:02d}",
    "+1{a}55501{x:02d}", "1-{a}-555-01{x:02d}", "{a} 555 01{x:02d}", "+1-{a}-555-01{x:02d}",
)
# (locale, weight, time zones)
_LOCALES = (
    ("en-US", 74, ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")),
    ("en-GB", 6, ("Europe/London",)),
    ("en-CA", 5, ("America/Toronto", "America/Vancouver")),
    ("es-MX", 4, ("America/Mexico_City",)),
    ("de-DE", 3, ("Europe/Berlin",)),
    ("fr-FR", 3, ("Europe/Paris",)),
    ("pt-BR", 2, ("America/Sao_Paulo",)),
    ("en-AU", 2, ("Australia/Sydney",)),
    ("ja-JP", 1, ("Asia/Tokyo",)),
)
# Browser user agents: (user agent, weight)
_WEB_AGENTS = (
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/130.0.0.0 Safari/537.36", 20),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/129.0.0.0 Safari/537.36", 11),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0", 6),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:131.0) Gecko/20100101 Firefox/131.0", 4),
    ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0", 1),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/18.0 Safari/605.1.15", 9),
    ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/129.0.0.0 Safari/537.36", 2),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_0_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/18.0.1 Mobile/15E148 Safari/604.1", 17),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_6_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "CriOS/130.0.6723.37 Mobile/15E148 Safari/604.1", 4),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_6_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Mobile/15E148 Instagram 352.0.0.38.100 (iPhone15,2; iOS 17_6_1; en_US; en; scale=3.00; 1179x2556)", 2),
    ("Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.6 Mobile/15E148 Safari/604.1", 4),
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/130.0.0.0 Mobile Safari/537.36", 12),
    ("Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", 4),
)
# Crawlers that run JavaScript: (user agent, IP prefix)
_BOT_AGENTS = (
    ("Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/130.0.6723.69 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
     "66.249.66."),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; "
     "+http://www.google.com/bot.html) Chrome/130.0.6723.69 Safari/537.36", "66.249.79."),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
     "+http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36", "40.77.167."),
    ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", "54.36.148."),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "HeadlessChrome/129.0.0.0 Safari/537.36", "34.82.14."),
)
# (model, marketing name, OS version, screen width, height, density)
_IOS_DEVICES = (
    ("iPhone14,5", "iPhone 13", "17.6.1", 390, 844, 3.0),
    ("iPhone14,7", "iPhone 14", "18.0.1", 390, 844, 3.0),
    ("iPhone15,2", "iPhone 14 Pro", "18.0.1", 393, 852, 3.0),
    ("iPhone15,4", "iPhone 15", "18.1", 393, 852, 3.0),
    ("iPhone16,2", "iPhone 15 Pro Max", "18.1", 430, 932, 3.0),
    ("iPhone17,1", "iPhone 16 Pro", "18.1", 402, 874, 3.0),
    ("iPhone12,8", "iPhone SE", "17.5.1", 375, 667, 2.0),
)
# (model, manufacturer, Android version, build, screen width, height, density)
_ANDROID_DEVICES = (
    ("Pixel 8", "Google", "15", "AP3A.241005.015", 412, 915, 2.625),
    ("Pixel 7a", "Google", "14", "AP2A.240905.003", 412, 915, 2.625),
    ("SM-S921U", "samsung", "14", "UP1A.231005.007", 384, 832, 2.8125),
    ("SM-A546U", "samsung", "14", "UP1A.231005.007", 412, 892, 2.625),
    ("moto g power 5G - 2024", "motorola", "14", "U1UD34.16-62", 412, 915, 2.625),
    ("CPH2451", "OnePlus", "14", "UKQ1.230924.001", 412, 919, 3.5),
)
_CARRIERS = ("T-Mobile", "Verizon", "AT&T", "Visible", "Mint Mobile")

# (category, SKU prefix, product kinds, (lowest, highest) price)
_CATEGORIES = (
    ("Tents", "TNT", ("2P Tent", "Ultralight Tent", "Dome Tent", "Family Tent", "Bivy"), (89, 499)),
    ("Backpacks", "BPK", ("Daypack 22L", "Pack 40L", "Pack 65L", "Hydration Pack", "Sling"), (29, 279)),
    ("Footwear", "FTW", ("Trail Runner", "Hiking Boot", "Approach Shoe", "Camp Sandal", "Wool Sock"), (14, 229)),
    ("Jackets", "JKT", ("Rain Jacket", "Down Jacket", "Fleece", "Softshell", "Wind Shell"), (49, 399)),
    ("Sleeping", "SLP", ("Sleeping Bag", "Sleeping Pad", "Camp Pillow", "Quilt", "Bag Liner"), (19, 449)),
    ("Camp Kitchen", "KIT", ("Camp Stove", "Cook Set", "Water Filter", "Insulated Mug", "Spork"), (5, 149)),
    ("Accessories", "ACC", ("Headlamp", "Trekking Poles", "Neck Gaiter", "Dry Bag", "Carabiner", "Sunglasses"),
     (5, 119)),
)
_PRODUCT_ADJECTIVES = (
    "Summit", "Ridge", "Canyon", "Alpine", "Basecamp", "Switchback", "Meadow", "Cirrus", "Granite",
    "Tamarack", "Boreal", "Juniper", "Sierra", "Cascade",
)
_SEARCH_TERMS = (
    "tent", "2 person tent", "rain jacket", "hiking boots womens", "sleeping bag 20 degree", "headlamp",
    "water filter", "trail running shoes", "down jacket", "camp stove", "backpack", "trekking poles",
    "wool socks", "ultralight", "mens fleece", "dry bag", "sleeping pad", "gift card", "sale",
)
_BLOG_POSTS = (
    ("how-to-choose-a-backpacking-tent", "How to Choose a Backpacking Tent"),
    ("layering-101", "Layering 101: Stay Warm on the Trail"),
    ("best-fall-hikes-2026", "The Best Fall Hikes of 2026"),
    ("leave-no-trace", "Leave No Trace, Explained"),
    ("sleeping-bag-temperature-ratings", "What Sleeping Bag Temperature Ratings Really Mean"),
)
_REFERRAL_SITES = (
    "https://www.reddit.com/r/CampingGear/", "https://www.reddit.com/r/Ultralight/",
    "https://news.ycombinator.com/", "https://www.pinterest.com/", "https://www.outdoorgearlab.com/",
    "https://www.youtube.com/", "https://t.co/", "https://www.trailforums.example/thread/4411",
)
_PAID_CAMPAIGNS = ("brand_search", "generic_tents", "shopping_fall", "competitor_terms")
_SOCIAL_CAMPAIGNS = ("fall_sale_2026", "new_arrivals", "retargeting_cart", "ugc_trail_stories")
_SOCIAL_CREATIVES = ("carousel_a", "carousel_b", "video_15s", "story_cta", "static_tent")
_EMAIL_CAMPAIGNS = ("weekly_digest", "fall_sale_2026", "back_in_stock", "abandoned_cart", "welcome_series")
_EMAIL_CONTENT = ("hero_cta", "product_grid", "footer_link")
_GROUP_NAMES = (
    "Ridge Runners Club", "Troop 42 Scouts", "Cascade Climbing Team", "Juniper Trail Crew",
    "Granite Peak Outfitters", "Sunday Hikers", "Boreal Paddling Club",
)
_CLICK_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
# events per visit, 1..15: mostly short
_EVENTS_CUM = tuple(sum((9, 10, 11, 11, 10, 10, 9, 8, 7, 6, 5, 4, 3, 3, 2)[: i + 1]) for i in range(15))
_ORDERS_CUM = tuple(sum((34, 20, 13, 9, 7, 5, 4, 3, 3, 2)[: i + 1]) for i in range(10))
# visit start hour (UTC), weighted towards North American daytime
_HOURS_CUM = tuple(
    sum((8, 7, 5, 3, 2, 2, 2, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 11, 11, 11, 10, 10, 10, 9)[: i + 1])
    for i in range(24)
)


# --- the simulation ------------------------------------------------------------------------------


def _sorted_lines(spec: DemoSpec) -> list[str]:
    return _Simulation(spec).run()


def _cumulative(weights: Sequence[float]) -> list[float]:
    total = 0.0
    out: list[float] = []
    for w in weights:
        total += w
        out.append(total)
    return out


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _slug(text: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in _ascii(text).lower()).split())


def _compact_encoder() -> Callable[[object], str]:
    """Compact JSON (UTF-8 text, no spaces), as `json.dumps(..., ensure_ascii=False, separators=(",", ":"))`."""
    return json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return (moment - datetime(1970, 1, 1)) // timedelta(milliseconds=1)


def _iso_formatter() -> Callable[[int], str]:
    """Epoch milliseconds -> `2026-10-01T12:34:56.789Z`, from lookup tables (it runs ~500k times)."""
    days: dict[int, str] = {}
    minutes = [f"{m // 60:02d}:{m % 60:02d}:" for m in range(1440)]
    seconds = [f"{s:02d}" for s in range(60)]
    millis = [f".{m:03d}Z" for m in range(1000)]

    def iso(ms: int) -> str:
        day, rest = divmod(ms, _DAY_MS)
        prefix = days.get(day)
        if prefix is None:
            prefix = days[day] = (date(1970, 1, 1) + timedelta(days=day)).isoformat() + "T"
        second, milli = divmod(rest, 1000)
        minute, second = divmod(second, 60)
        return prefix + minutes[minute] + seconds[second] + millis[milli]

    return iso


@dataclass(slots=True)
class _Device:
    """One SDK installation: a browser profile (cookie) or an app install."""

    kind: str  # "web", "ios", "android", "bot"
    anonymous_id: str
    skew_ms: int  # device clock minus true time
    context: str  # JSON members (no braces) of the part of `context` that never changes


@dataclass(slots=True)
class _Message:
    """A message before it is timed: its JSON parts, rendered once."""

    type: str
    label: str  # ',"event":"..."' / ',"name":"..."' / ''
    message_id: str
    anonymous_id: str | None
    user_id: str | None
    extra: str  # ',"previousId":"..."' / ',"groupId":"..."' / ''
    body: str  # ',"properties":{...}' / ',"traits":{...}'
    context: str  # the context object
    traits: dict[str, object] | None = None  # identify at sign-up: `created_at` is set when timed


@dataclass(slots=True)
class _Product:
    props: dict[str, object]  # Product Viewed properties
    props_json: str
    product_id: str
    sku: str
    category: str
    name: str
    price: float
    slug: str


@dataclass(slots=True)
class _Person:
    first_name: str
    last_name: str
    email: str
    phone: tuple[int, int] | None
    locale: str
    timezone: str
    home_ip: str
    web: _Device
    mobile: _Device | None
    user_id: str | None
    visits: list[bool]  # one entry per visit: True = in the app, False = on the web
    signup_visit: int = -1
    orders: frozenset[int] = frozenset()
    big_spender: bool = False
    rotate_at: int = 1 << 30  # from this visit on the browser has a fresh cookie ...
    rotated_web: _Device | None = None  # ... this one
    shared: bool = False  # shares `web` with another person
    upgrade_visit: int = -1
    newsletter_visit: int = -1
    group: tuple[str, str] | None = None


@dataclass(slots=True)
class _State:
    """What a person's SDKs remember while the simulation runs."""

    signed_up: bool = False
    mobile_linked: bool = False
    logged_in: set[str] = field(default_factory=set)  # web anonymousIds that hold the userId


class _Simulation:
    def __init__(self, spec: DemoSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.end_ms = _epoch_ms(spec.end)
        self.start_ms = self.end_ms - spec.days * _DAY_MS
        self.iso = _iso_formatter()
        self.encode = _compact_encoder()
        self.rows: list[tuple[int, int, str]] = []
        self.emails: set[str] = set()
        self.labels: dict[tuple[str, str], str] = {}  # rendered ',"event":"..."' and the like
        self.phones = 0
        self.orders = 0
        self.catalog = self._catalog()
        self.catalog_cum = _cumulative([1.0 / (rank + 1) ** 0.9 for rank in range(len(self.catalog))])
        self.domain_cum = _cumulative([w for _, w in _EMAIL_DOMAINS])
        self.locale_cum = _cumulative([w for _, w, _ in _LOCALES])
        self.agent_cum = _cumulative([w for _, w in _WEB_AGENTS])

    def run(self) -> list[str]:
        people = self._plan()
        for person in people:
            self._live(person)
        for _ in range((self.spec.users + 149) // 150):
            self._crawl()
        self.rows.sort()
        return [line for _, _, line in self.rows]

    # --- identifiers and small draws

    def _uuid(self, upper: bool = False) -> str:
        n = self.rng.getrandbits(128)
        n = (n & ~(0xF000 << 64)) | (4 << 76)  # version 4
        n = (n & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
        h = f"{n:032x}"
        text = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        return text.upper() if upper else text

    def _message_id(self, kind: str) -> str:
        if kind == "web" or kind == "bot":
            return f"ajs-next-{self.rng.getrandbits(128):032x}"
        return self._uuid(upper=kind == "ios")

    def _ip(self) -> str:
        r = self.rng.randrange
        first = (24, 47, 50, 64, 67, 68, 69, 71, 73, 75, 76, 96, 97, 98, 99, 107, 108, 173, 174, 184)[r(20)]
        return f"{first}.{r(256)}.{r(256)}.{1 + r(254)}"

    def _skew(self) -> int:
        rng = self.rng
        if rng.random() < self.spec.skewed_device_rate:
            magnitude = _MIN_SKEW_MS * (_MAX_SKEW_MS / _MIN_SKEW_MS) ** rng.random()  # log-uniform
            return int(magnitude) * (1 if rng.random() < 0.5 else -1)
        return rng.randint(-_JITTER_MS, _JITTER_MS)

    def _click_id(self, prefix: str) -> str:
        return prefix + "".join(self.rng.choices(_CLICK_ID_ALPHABET, k=56))

    # --- world building

    def _catalog(self) -> list[_Product]:
        rng = self.rng
        products: list[_Product] = []
        for category, code, kinds, (low, high) in _CATEGORIES:
            for kind in kinds:
                for adjective in rng.sample(_PRODUCT_ADJECTIVES, 3):
                    name = f"{adjective} {kind}"
                    price = round(rng.uniform(low, high)) + (0.99, 0.95, 0.0)[rng.randrange(3)]
                    price = round(min(max(price, 5.0), high + 0.99), 2)
                    product_id = f"{rng.getrandbits(96):024x}"
                    sku = f"{code}-{len(products) + 1:04d}"
                    props: dict[str, object] = {
                        "product_id": product_id, "sku": sku, "category": category, "name": name,
                        "brand": _BRAND, "price": price, "currency": "USD",
                    }
                    products.append(
                        _Product(props, self.encode(props), product_id, sku, category, name, price, _slug(name))
                    )
        rng.shuffle(products)  # popularity rank
        return products

    def _web_device(self) -> _Device:
        agent = _WEB_AGENTS[self._pick(self.agent_cum)][0]
        context = {"library": {"name": _WEB_LIBRARY[0], "version": _WEB_LIBRARY[1]}, "userAgent": agent}
        return _Device("web", self._uuid(), self._skew(), self.encode(context)[1:-1])

    def _mobile_device(self) -> _Device:
        rng = self.rng
        if rng.random() < 0.55:
            model, marketing, version, width, height, density = rng.choice(_IOS_DEVICES)
            device_id = self._uuid(upper=True)  # identifierForVendor
            context: dict[str, object] = {
                "library": {"name": _IOS_LIBRARY[0], "version": _IOS_LIBRARY[1]},
                "app": {"name": _APP[0], "version": _APP[1], "build": _APP[2], "namespace": "com.trailheadsupply.ios"},
                "device": {"id": device_id, "type": "ios", "model": model, "manufacturer": "Apple", "name": marketing},
                "os": {"name": "iOS", "version": version},
                "screen": {"width": width, "height": height, "density": density},
            }
            return _Device("ios", self._uuid(upper=True), self._skew(), self.encode(context)[1:-1])
        model, maker, version, build, width, height, density = rng.choice(_ANDROID_DEVICES)
        device_id = f"{rng.getrandbits(64):016x}"  # ANDROID_ID
        context = {
            "library": {"name": _ANDROID_LIBRARY[0], "version": _ANDROID_LIBRARY[1]},
            "app": {"name": _APP[0], "version": _APP[1], "build": _APP[2], "namespace": "com.trailheadsupply.android"},
            "device": {"id": device_id, "type": "android", "model": model, "manufacturer": maker, "name": model},
            "os": {"name": "Android", "version": version},
            "screen": {"width": width, "height": height, "density": density},
            "userAgent": f"Dalvik/2.1.0 (Linux; U; Android {version}; {model} Build/{build})",
        }
        return _Device("android", self._uuid(), self._skew(), self.encode(context)[1:-1])

    def _pick(self, cum: Sequence[float]) -> int:
        """An index drawn with the weights whose running totals are `cum`."""
        return bisect_right(cum, self.rng.random() * cum[-1], 0, len(cum) - 1)

    def _email(self, first: str, last: str) -> str:
        rng = self.rng
        f, n = _ascii(first).lower().replace("'", ""), _ascii(last).lower().replace("'", "")
        domain = _EMAIL_DOMAINS[self._pick(self.domain_cum)][0]
        local = (f"{f}.{n}", f"{f[0]}{n}", f"{f}{n}{rng.randrange(1, 99)}", f"{f}_{n}", f"{n}.{f}")[rng.randrange(5)]
        email = f"{local}@{domain}"
        while email in self.emails:
            email = f"{local}{rng.randrange(2, 999)}@{domain}"
        self.emails.add(email)
        return email

    def _visit_count(self, engaged: bool) -> int:
        rng = self.rng
        n = 1 + int(rng.lognormvariate(0.9 if engaged else 0.4, 1.55))
        if engaged:
            n += rng.randrange(3)
        return min(n, self.spec.days * 3, 200)

    def _plan(self) -> list[_Person]:
        rng = self.rng
        people: list[_Person] = []
        for index in range(self.spec.users):
            first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
            locale, _, zones = _LOCALES[self._pick(self.locale_cum)]
            phone = None
            if rng.random() < 0.35:
                k = self.phones
                self.phones += 1
                phone = (_AREA_CODES[k % len(_AREA_CODES)], (k // len(_AREA_CODES)) % 100)
            mobile = self._mobile_device() if rng.random() < 0.30 else None
            signs_up = rng.random() < 0.40
            n = self._visit_count(signs_up)
            visits = [False] * n
            if mobile is not None:
                in_app = rng.uniform(0.25, 0.75)
                for k in range(1, n):
                    visits[k] = rng.random() < in_app
            person = _Person(
                first_name=first, last_name=last, email=self._email(first, last), phone=phone,
                locale=locale, timezone=rng.choice(zones), home_ip=self._ip(), web=self._web_device(),
                mobile=mobile, user_id=f"u_{index + 1:06d}" if signs_up else None, visits=visits,
            )
            if signs_up:
                r = rng.random()
                signup = 0 if r < 0.45 else 1 if r < 0.7 else rng.randrange(n)
                signup = min(signup, n - 1)
                person.signup_visit = signup
                visits[signup] = False
                if mobile is not None and not any(visits[signup + 1 :]):
                    # people with the app log in there at some point: the cross-device link
                    if signup < len(visits) - 1:
                        visits[rng.randrange(signup + 1, len(visits))] = True
                    else:
                        visits.append(True)
                if rng.random() < 0.6:
                    wanted = 1 + self._pick(_ORDERS_CUM)
                    while len(visits) - signup < wanted:
                        visits.append(mobile is not None and rng.random() < 0.3)
                    person.orders = frozenset(rng.sample(range(signup, len(visits)), wanted))
                    person.big_spender = rng.random() < 0.08
                later_web = [k for k in range(signup + 1, len(visits)) if not visits[k]]
                if later_web and rng.random() < 0.12:
                    person.upgrade_visit = rng.choice(later_web)
                if rng.random() < 0.25:
                    person.newsletter_visit = signup
                if rng.random() < 0.04:
                    person.group = (f"grp_{index + 1:05d}", rng.choice(_GROUP_NAMES))
            else:
                if rng.random() < 0.04:  # guest checkout
                    person.orders = frozenset((rng.randrange(len(visits)),))
                if rng.random() < 0.06:
                    person.newsletter_visit = rng.choice([k for k in range(len(visits)) if not visits[k]])
            web_visits = [k for k in range(1, len(visits)) if not visits[k]]
            if web_visits and rng.random() < 0.07:  # cleared cookies / new browser profile
                person.rotate_at = rng.choice(web_visits)
                rotated = self._web_device()
                rotated.context = person.web.context  # same browser, new cookie
                person.rotated_web = rotated
            people.append(person)

        # ~1% of people share a browser with someone else who also has an account
        signed = [p for p in people if p.user_id is not None]
        sharers = min(max(1, self.spec.users // 200), len(signed) // 2)
        if sharers:
            guests = rng.sample(signed, sharers)
            taken = {id(p) for p in guests}
            hosts = [p for p in signed if id(p) not in taken]
            for guest in guests:
                host = rng.choice(hosts)
                guest.web = host.web
                for p in (guest, host):
                    p.shared = True
                    p.rotate_at, p.rotated_web = 1 << 30, None
        return people

    # --- one person's visits

    def _visit_starts(self, n: int) -> list[int]:
        rng = self.rng
        days = self.spec.days
        first = rng.random()
        span = min(rng.uniform(0.1, 1.0), 1.0 - first)
        positions = [first] + [first + rng.random() * span for _ in range(n - 1)]
        starts = []
        for u in positions:
            day = min(int(u * days), days - 1)
            hour = self._pick(_HOURS_CUM)
            starts.append(self.start_ms + day * _DAY_MS + hour * 3_600_000 + rng.randrange(3_600_000))
        starts.sort()
        return starts

    def _live(self, person: _Person) -> None:
        state = _State()
        starts = self._visit_starts(len(person.visits))
        free_at = self.start_ms
        for k, in_app in enumerate(person.visits):
            if in_app:
                visit = self._app_visit(person, k, state)
            else:
                visit = self._web_visit(person, k, state)
            free_at = self._schedule(visit, max(starts[k], free_at)) + 60_000

    def _web_visit(self, person: _Person, k: int, state: _State) -> _Visit:
        rng = self.rng
        device = person.rotated_web if person.rotated_web is not None and k >= person.rotate_at else person.web
        anonymous_id = device.anonymous_id
        if person.shared:  # someone else used this browser in between
            state.logged_in.discard(anonymous_id)
        user_id = person.user_id if anonymous_id in state.logged_in else None
        ip = person.home_ip if rng.random() < 0.8 else self._ip()
        visit = _Visit(self, person, device, ip, user_id)
        visit.land(*self._acquisition(k == 0))
        target = 1 + self._pick(_EVENTS_CUM)
        if k == person.signup_visit:
            visit.browse(len(visit.actions) + rng.randrange(3))
            visit.sign_up(newsletter=person.newsletter_visit == k)
            state.signed_up = True
            state.logged_in.add(anonymous_id)
        elif state.signed_up and user_id is None:
            visit.log_in(web=True)
            state.logged_in.add(anonymous_id)
        elif k == person.newsletter_visit:
            visit.track("Newsletter Subscribed", {"list": "weekly", "source": "footer"}, _BROWSE)
        if k == person.upgrade_visit:
            visit.page("/account", "Account", f"My Account | {_BRAND}")
            visit.identify({"plan": "pro"}, _QUICK)
        visit.browse(target)
        if k in person.orders:
            visit.order()
        return visit

    def _app_visit(self, person: _Person, k: int, state: _State) -> _Visit:
        rng = self.rng
        assert person.mobile is not None
        ip = person.home_ip if rng.random() < 0.5 else self._ip()
        visit = _Visit(self, person, person.mobile, ip, person.user_id if state.mobile_linked else None)
        visit.screen("Home", {})
        target = 1 + self._pick(_EVENTS_CUM)
        if state.signed_up and not state.mobile_linked:
            visit.log_in(web=False)
            state.mobile_linked = True
        visit.browse(target)
        if k in person.orders:
            visit.order()
        return visit

    def _acquisition(self, first_visit: bool) -> tuple[str, str, dict[str, str] | None, str]:
        """Where a visit came from: (referrer, landing query string, context.campaign, landing kind)."""
        rng = self.rng
        r = rng.random()
        if not first_visit:  # returning visitors mostly come back directly or from email
            r = (0.62 + 0.38 * r) if rng.random() < 0.55 else r
        term = rng.choice(_SEARCH_TERMS)
        if r < 0.30:
            referrer = "https://www.google.com/" if rng.random() < 0.85 else "https://www.bing.com/"
            return referrer, "", None, ("product", "home", "collection", "blog")[rng.randrange(4)]
        if r < 0.44:
            if rng.random() < 0.85:
                utm = {"source": "google", "medium": "cpc", "name": rng.choice(_PAID_CAMPAIGNS), "term": term}
                click, referrer = "gclid=" + self._click_id("Cj0KCQjw"), "https://www.google.com/"
            else:
                utm = {"source": "bing", "medium": "cpc", "name": rng.choice(_PAID_CAMPAIGNS), "term": term}
                click, referrer = f"msclkid={rng.getrandbits(128):032x}", "https://www.bing.com/"
            landing = "product" if rng.random() < 0.6 else "collection"
        elif r < 0.58:
            network = "facebook" if rng.random() < 0.6 else "instagram"
            paid = rng.random() < 0.7
            utm = {"source": network, "medium": "paid_social" if paid else "social",
                   "name": rng.choice(_SOCIAL_CAMPAIGNS)}
            if paid:
                utm["content"] = rng.choice(_SOCIAL_CREATIVES)
            click = "fbclid=" + self._click_id("IwZXh0bgNhZW0")
            referrer = "https://l.facebook.com/" if network == "facebook" else "https://l.instagram.com/"
            landing = "product" if rng.random() < 0.5 else "collection"
        elif r < 0.62:
            return rng.choice(_REFERRAL_SITES), "", None, ("blog", "product", "home")[rng.randrange(3)]
        elif r < 0.80:
            utm = {"source": "newsletter", "medium": "email", "name": rng.choice(_EMAIL_CAMPAIGNS),
                   "content": rng.choice(_EMAIL_CONTENT)}
            click, referrer = "", ""
            landing = ("product", "collection", "home")[rng.randrange(3)]
        else:
            return "", "", None, "home" if rng.random() < 0.8 else "product"
        pairs = [f"utm_{key if key != 'name' else 'campaign'}={quote_plus(value)}" for key, value in utm.items()]
        if click:
            pairs.append(click)
        campaign = utm if rng.random() < 0.85 else None  # some SDK setups drop it
        return referrer, "?" + "&".join(pairs), campaign, landing

    def _crawl(self) -> None:
        """A crawler session: a fresh anonymousId and a quick run of page views."""
        rng = self.rng
        agent, prefix = rng.choice(_BOT_AGENTS)
        context = {"library": {"name": _WEB_LIBRARY[0], "version": _WEB_LIBRARY[1]}, "userAgent": agent}
        device = _Device("bot", self._uuid(), 0, self.encode(context)[1:-1])
        person = _Person(first_name="", last_name="", email="", phone=None, locale="en-US",
                         timezone="America/Los_Angeles", home_ip=f"{prefix}{1 + rng.randrange(254)}",
                         web=device, mobile=None, user_id=None, visits=[False])
        visit = _Visit(self, person, device, person.home_ip, None)
        visit.land("", "", None, "home")
        for _ in range(rng.randrange(4, 30)):
            visit.wander(_CRAWL)
        start = self.start_ms + rng.randrange(self.spec.days * _DAY_MS)
        self._schedule(visit, start)

    # --- timing and output

    def _schedule(self, visit: _Visit, planned: int) -> int:
        """Give the visit's messages true times from `planned` on (kept inside the window with room
        for clock skew and delivery), emit them, and return the true time of the last one."""
        rng = self.rng
        offsets: list[int] = []
        t = 0
        split = False
        for gap, _ in visit.actions:
            if gap == _BROWSE or gap == _NAV:
                if gap == _NAV and not split and rng.random() < 0.04:
                    t += 1_860_000 + rng.randrange(5_400_000)  # back after 31..121 minutes
                    split = True
                else:
                    t += 2_000 + int(min(rng.expovariate(1 / 30.0), 480.0) * 1000)
            elif gap == _QUICK or gap == _STAMP:
                t += 80 + rng.randrange(1_500)
            elif gap == _CRAWL:
                t += 500 + rng.randrange(8_000)
            offsets.append(t)
        low = self.start_ms + _EDGE_MS
        high = self.end_ms - _EDGE_MS - t
        start = min(max(planned, low), max(high, low))
        skew = visit.device.skew_ms
        for (gap, message), offset in zip(visit.actions, offsets, strict=True):
            if gap == _STAMP and message.traits is not None:
                message.traits["created_at"] = self.iso(start + offset)
                message.body = ',"traits":' + self.encode(message.traits)
            self._emit(message, start + offset, skew)
        return start + t

    def _emit(self, message: _Message, true_ms: int, skew_ms: int) -> None:
        rng = self.rng
        anonymous_id, user_id = message.anonymous_id, message.user_id
        r = rng.random()
        if r < _JUNK_ANONYMOUS_RATE:
            if anonymous_id is not None:
                anonymous_id = "undefined"
        elif r < _JUNK_ANONYMOUS_RATE + _JUNK_USER_RATE:
            if user_id is not None and message.type != "alias":
                user_id = "null" if r < _JUNK_ANONYMOUS_RATE + _JUNK_USER_RATE / 2 else "0"
        ids = f',"anonymousId":"{anonymous_id}"' if anonymous_id is not None else ""
        if user_id is not None:
            ids += f',"userId":"{user_id}"'
        send = int(_MAX_SEND_MS * rng.random() ** 2)
        network = int(_MAX_NETWORK_MS * rng.random() ** 2)
        device_ms = true_ms + skew_ms
        received = true_ms + send + network
        iso = self.iso
        line = (
            f'{{"type":"{message.type}"{message.label},"messageId":"{message.message_id}"{ids}{message.extra}'
            f'{message.body},"context":{message.context},"originalTimestamp":"{iso(device_ms)}",'
            f'"sentAt":"{iso(device_ms + send)}","receivedAt":"{iso(received)}"}}'
        )
        rows = self.rows
        rows.append((received, len(rows), line))
        if rng.random() < self.spec.duplicate_rate:  # the SDK retries: same bytes, later
            rows.append((received + 1_000 + int(rng.expovariate(1 / 30_000)), len(rows), line))


class _Visit:
    """The messages of one visit, in order, each with the kind of gap that precedes it."""

    __slots__ = ("sim", "person", "device", "web", "user_id", "ip", "actions", "context", "where", "url",
                 "product", "cart", "cart_id")

    def __init__(self, sim: _Simulation, person: _Person, device: _Device, ip: str, user_id: str | None) -> None:
        self.sim = sim
        self.person = person
        self.device = device
        self.web = device.kind in ("web", "bot")
        self.user_id = user_id
        self.ip = ip
        self.actions: list[tuple[int, _Message]] = []
        self.url = ""
        self.product: _Product | None = None
        self.cart: list[tuple[_Product, int]] = []
        self.cart_id = ""
        # context members that hold for the whole visit; the web adds the page to them
        self.where = f',"ip":"{ip}","locale":"{person.locale}","timezone":"{person.timezone}"'
        self.context = "{}"
        if not self.web:
            rng = sim.rng
            wifi = rng.random() < 0.6
            network = sim.encode({"wifi": wifi, "cellular": not wifi, "carrier": rng.choice(_CARRIERS)})
            self.context = f'{{{device.context},"network":{network}{self.where}}}'

    # --- message builders

    def _add(self, gap: int, type_: str, label: str, body: str, extra: str = "",
             traits: dict[str, object] | None = None) -> None:
        sim = self.sim
        message = _Message(type_, label, sim._message_id(self.device.kind), self.device.anonymous_id,
                           self.user_id, extra, body, self.context, traits)
        self.actions.append((gap, message))

    def _label(self, key: str, value: str) -> str:
        labels = self.sim.labels
        label = labels.get((key, value))
        if label is None:
            label = labels[(key, value)] = f',"{key}":' + self.sim.encode(value)
        return label

    def track(self, event: str, properties: dict[str, object] | str, gap: int) -> None:
        body = properties if isinstance(properties, str) else self.sim.encode(properties)
        self._add(gap, "track", self._label("event", event), ',"properties":' + body)

    def page(self, path: str, name: str, title: str, search: str = "", referrer: str | None = None,
             campaign: dict[str, str] | None = None, gap: int = _NAV) -> None:
        encode = self.sim.encode
        url = f"{_SITE}{path}{search}"
        properties = encode({"path": path, "url": url, "title": title,
                             "referrer": self.url if referrer is None else referrer, "search": search})
        self.url = url
        self.product = None  # set again by the caller on a product page
        tail = "" if campaign is None else ',"campaign":' + encode(campaign)
        self.context = f'{{{self.device.context}{self.where},"page":{properties}{tail}}}'
        self._add(gap, "page", self._label("name", name), ',"properties":' + properties)

    def screen(self, name: str, properties: dict[str, object], gap: int = _NAV) -> None:
        self.product = None  # set again by the caller on a product screen
        self._add(gap, "screen", self._label("name", name), ',"properties":' + self.sim.encode(properties))

    def view(self, name: str, path: str, title: str, search: str = "",
             properties: dict[str, object] | None = None) -> None:
        """A page view on the web, a screen view in the app."""
        if self.web:
            self.page(path, name, title, search)
        else:
            self.screen(name, properties or {})

    def identify(self, traits: dict[str, object], gap: int) -> None:
        self._add(gap, "identify", "", ',"traits":' + self.sim.encode(traits), traits=traits if gap == _STAMP else None)

    # --- traits

    def _email(self) -> str:
        rng = self.sim.rng
        if rng.random() < _JUNK_EMAIL_RATE:
            return "none"
        email = self.person.email
        r = rng.random()
        if r < 0.10:  # typed with capitals
            local, domain = email.split("@")
            email = ".".join(part.capitalize() for part in local.split(".")) + "@" + domain.capitalize()
        elif r < 0.14:
            email = email.upper()
        if rng.random() < 0.05:  # pasted with whitespace
            email = (" ", "", "  ")[rng.randrange(3)] + email + (" ", "\t", " \n")[rng.randrange(3)]
        return email

    def _phone(self) -> str | None:
        phone = self.person.phone
        if phone is None:
            return None
        area, line = phone
        return self.sim.rng.choice(_PHONE_FORMATS).format(a=area, x=line)

    # --- behaviour

    def land(self, referrer: str, query: str, campaign: dict[str, str] | None, kind: str) -> None:
        sim = self.sim
        rng = sim.rng
        if kind == "product":
            product = sim.catalog[sim._pick(sim.catalog_cum)]
            self.page(f"/products/{product.slug}", "Product", f"{product.name} | {_BRAND}", query, referrer,
                      campaign, _FIRST)
            self.product = product
            self.track("Product Viewed", product.props_json, _QUICK)
            return
        if kind == "collection":
            category = sim.catalog[sim._pick(sim.catalog_cum)].category
            path, name, title = f"/collections/{_slug(category)}", "Collection", f"{category} | {_BRAND}"
        elif kind == "blog":
            slug, headline = rng.choice(_BLOG_POSTS)
            path, name, title = f"/blog/{slug}", "Blog Post", f"{headline} | {_BRAND}"
        else:
            path, name, title = "/", "Home", f"{_BRAND} | Outdoor Gear for Every Trail"
        self.page(path, name, title, query, referrer, campaign, _FIRST)

    def wander(self, gap: int = _NAV) -> None:
        """A page view without shopping intent (crawlers, content readers)."""
        sim = self.sim
        rng = sim.rng
        r = rng.random()
        if r < 0.5:
            product = sim.catalog[rng.randrange(len(sim.catalog))]
            self.page(f"/products/{product.slug}", "Product", f"{product.name} | {_BRAND}", gap=gap)
        elif r < 0.75:
            category = rng.choice(_CATEGORIES)[0]
            self.page(f"/collections/{_slug(category)}", "Collection", f"{category} | {_BRAND}", gap=gap)
        elif r < 0.9:
            slug, headline = rng.choice(_BLOG_POSTS)
            self.page(f"/blog/{slug}", "Blog Post", f"{headline} | {_BRAND}", gap=gap)
        else:
            self.page("/", "Home", f"{_BRAND} | Outdoor Gear for Every Trail", gap=gap)

    def browse(self, target: int) -> None:
        """Shop around until the visit has `target` messages."""
        sim = self.sim
        rng = sim.rng
        while len(self.actions) < target:
            r = rng.random()
            if r < 0.36:
                self.view_product(sim.catalog[sim._pick(sim.catalog_cum)])
            elif r < 0.56:
                category = sim.catalog[sim._pick(sim.catalog_cum)].category
                self.view("Collection", f"/collections/{_slug(category)}", f"{category} | {_BRAND}",
                          properties={"category": category})
            elif r < 0.68:
                term = rng.choice(_SEARCH_TERMS)
                self.view("Search", "/search", f"Search: {term} | {_BRAND}", f"?q={quote_plus(term)}", {"query": term})
                self.track("Products Searched", {"query": term}, _QUICK)
            elif r < 0.82 and self.product is not None:
                self.add_to_cart(self.product, 1 if rng.random() < 0.85 else 2)
            elif r < 0.86 and self.cart:
                self.view("Cart", "/cart", f"Your Cart | {_BRAND}")
                self.track("Checkout Started", self._order_properties(self._new_order_id(), self.cart, False), _BROWSE)
            elif r < 0.92 and self.web:
                self.wander()
            elif r < 0.95 and self.user_id is not None:
                self.view("Account", "/account", f"My Account | {_BRAND}")
            else:
                self.view("Home", "/", f"{_BRAND} | Outdoor Gear for Every Trail")

    def view_product(self, product: _Product) -> None:
        self.view("Product Detail" if not self.web else "Product", f"/products/{product.slug}",
                  f"{product.name} | {_BRAND}", properties={"product_id": product.product_id})
        self.product = product
        self.track("Product Viewed", product.props_json, _QUICK)

    def add_to_cart(self, product: _Product, quantity: int) -> None:
        if not self.cart_id:
            self.cart_id = f"{self.sim.rng.getrandbits(64):016x}"
        self.cart.append((product, quantity))
        self.track("Product Added", {**product.props, "quantity": quantity, "cart_id": self.cart_id}, _BROWSE)

    def _new_order_id(self) -> str:
        self.sim.orders += 1
        return f"{100000 + self.sim.orders}"

    def _order_properties(self, order_id: str, items: list[tuple[_Product, int]], completed: bool) -> dict[str, object]:
        rng = self.sim.rng
        revenue = round(sum(p.price * q for p, q in items), 2)
        products = [{"product_id": p.product_id, "sku": p.sku, "name": p.name, "category": p.category,
                     "price": p.price, "quantity": q} for p, q in items]
        if not completed:
            return {"order_id": order_id, "value": revenue, "revenue": revenue, "currency": "USD", "products": products}
        shipping = 0.0 if revenue >= 75 else 7.95
        tax = round(revenue * 0.0725, 2)
        properties: dict[str, object] = {"order_id": order_id, "checkout_id": f"{rng.getrandbits(64):016x}"}
        discount = 0.0
        if rng.random() < 0.15:
            discount = round(revenue * 0.1, 2)
            properties["coupon"] = "TRAIL10"
        properties.update({
            "total": round(revenue + shipping + tax - discount, 2), "revenue": revenue, "shipping": shipping,
            "tax": tax, "discount": discount, "currency": "USD", "products": products,
        })
        return properties

    def order(self) -> None:
        """Finish the visit with a purchase (an order of 5..500 USD; more for big spenders)."""
        sim = self.sim
        rng = sim.rng
        big = self.person.big_spender
        items: list[tuple[_Product, int]] = list(self.cart)
        wanted = rng.randint(2, 6) if big else (1 if rng.random() < 0.6 else rng.randint(2, 3))
        while len(items) < wanted:
            product = sim.catalog[sim._pick(sim.catalog_cum)]
            if any(p is product for p, _ in items):
                continue
            quantity = rng.randint(1, 3) if big else (1 if rng.random() < 0.85 or product.price > 100 else 2)
            if len(items) < 2:
                self.view_product(product)
            self.add_to_cart(product, quantity)
            items.append((product, quantity))
        if not big:
            while len(items) > 1 and sum(p.price * q for p, q in items) > 500:
                items.pop()
            if sum(p.price * q for p, q in items) > 500:
                items = [(items[0][0], 1)]
        order_id = self._new_order_id()
        self.view("Cart", "/cart", f"Your Cart | {_BRAND}")
        self.track("Checkout Started", self._order_properties(order_id, items, False), _BROWSE)
        self.view("Checkout", "/checkout", f"Checkout | {_BRAND}")
        self.track("Order Completed", self._order_properties(order_id, items, True), _BROWSE)
        self.view("Order Confirmation", "/checkout/thank-you", f"Thank you for your order | {_BRAND}",
                  properties={"order_id": order_id})
        self.cart, self.cart_id = [], ""

    def sign_up(self, newsletter: bool) -> None:
        sim = self.sim
        rng = sim.rng
        person = self.person
        assert person.user_id is not None
        self.page("/account/register", "Sign Up", f"Create Account | {_BRAND}")
        self.user_id = person.user_id
        traits: dict[str, object] = {
            "email": self._email(), "first_name": person.first_name, "last_name": person.last_name,
            "plan": "free", "created_at": None,  # set to the sign-up time when scheduled
        }
        phone = self._phone()
        if phone is not None:
            traits["phone"] = phone
        self.identify(traits, _STAMP)
        method = "email" if rng.random() < 0.7 else "google"
        self.track("Signed Up", {"method": method, "plan": "free"}, _QUICK)
        if person.group is not None:
            group_id, group_name = person.group
            traits = {"name": group_name, "plan": "team", "employees": rng.randint(3, 40)}
            self._add(_QUICK, "group", "", ',"traits":' + sim.encode(traits), self._label("groupId", group_id))
        if newsletter:
            self.track("Newsletter Subscribed", {"list": "weekly", "source": "sign_up"}, _QUICK)

    def log_in(self, web: bool) -> None:
        """Log in on this device: identify (or, in some apps, alias) and `Logged In`."""
        sim = self.sim
        rng = sim.rng
        user_id = self.person.user_id
        assert user_id is not None
        self.view("Log In", "/account/login", f"Log In | {_BRAND}")
        self.user_id = user_id
        if not web and rng.random() < 0.15:
            self._add(_QUICK, "alias", "", "", self._label("previousId", self.device.anonymous_id))
        else:
            traits: dict[str, object] = {"email": self._email()}
            if rng.random() < 0.5:
                traits.update(first_name=self.person.first_name, last_name=self.person.last_name)
            self.identify(traits, _QUICK)
        self.track("Logged In", {"method": "email" if rng.random() < 0.8 else "google"}, _QUICK)
