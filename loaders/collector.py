"""The collector: a Segment- and RudderStack-compatible Tracking API (an ASGI app).

Existing SDKs work by changing only their host. Every accepted message is appended to a landing
segment and fsync'd before the 200 goes out (loaders/landing.py); the collector never opens the
warehouse. Invalid messages are kept, with their reason, under `landing/_rejected/`. A source
with a tracking plan (loaders/protocols.py) has each valid message checked against it: a message
the plan blocks goes to `landing/_rejected/<source>/` with its violations (answered 200 and
counted as `blocked`); one it lets through carries its violations on its line (key `_corral`).

Routes: POST /v1/{identify,track,page,screen,group,alias,batch} and analytics.js's /v1/{i,t,p,s,
g,a,b}; POST /v1/webhook/{name} (loaders/webhooks.py); GET /health; GET /metrics (Prometheus).
"""

from __future__ import annotations

import base64
import hmac
import logging
import multiprocessing
import os
import re
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson

from loaders.home import CorralHome
from loaders.landing import LandingWriter
from loaders.messages import MESSAGE_TYPES, SHORT_TYPES, RequestClock, accept
from loaders.protocols import RESERVED_KEY, TrackingPlan, annotate, blocked_line, load_plans, plans_directory
from loaders.webhooks import DEFAULT_PATH, WebhookMapping, load_webhook_mappings

log = logging.getLogger("corral.collector")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MAX_MESSAGE_BYTES = 32 * 1024
# A message's size is checked as stored, which adds the server's fields (receivedAt, timestamp,
# messageId, a batch's shared context...): allow for them so an SDK's 32 KB message passes.
MAX_STORED_MESSAGE_BYTES = MAX_MESSAGE_BYTES + 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_MESSAGES = 2500
MAX_ERRORS_SHOWN = 20
SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"POST, GET, OPTIONS"),
    (b"access-control-allow-headers", b"content-type, authorization, content-encoding"),
]


class CollectorConfigError(ValueError):
    pass


REFUSAL_CODES = (
    "unauthorized", "invalid_json", "invalid_batch", "invalid_message", "body_too_large", "message_too_large",
    "too_many_messages", "unsupported_encoding", "invalid_gzip", "incomplete_body", "not_found", "unavailable",
)
COUNTER_NAMES = (
    "requests", "accepted", "rejected", "blocked", "violations", "omitted_properties",
    *(f"refused_{code}" for code in REFUSAL_CODES),
)


class Counters:
    """Counts across every worker process: one row per worker in a shared-memory array made
    by the launcher. Each worker writes only its own row (no lock on the request path); a
    reader sums the rows, so /metrics says the same whichever worker answers."""

    def __init__(self, shared: Any = None, worker: int = 0) -> None:
        self._values = shared if shared is not None else self.shared_array(1)
        self._offset = worker * len(COUNTER_NAMES)
        self._index = {name: self._offset + i for i, name in enumerate(COUNTER_NAMES)}

    @staticmethod
    def shared_array(workers: int) -> Any:
        return multiprocessing.get_context("spawn").Array("q", workers * len(COUNTER_NAMES), lock=False)

    def add(self, name: str, amount: int = 1) -> None:
        self._values[self._index[name]] += amount

    def snapshot(self) -> dict[str, int]:
        values, width = self._values[:], len(COUNTER_NAMES)
        return {name: sum(values[i::width]) for i, name in enumerate(COUNTER_NAMES)}


@dataclass
class Prepared:
    """One request's messages as NDJSON lines, by landing file, and what to answer."""

    accepted: list[bytes] = field(default_factory=list)
    rejected: list[bytes] = field(default_factory=list)  # spec-invalid, and blocked by the plan
    errors: list[dict[str, Any]] = field(default_factory=list)  # spec-invalid, for the answer
    notes: list[dict[str, Any]] = field(default_factory=list)  # messages with plan violations, for the answer
    blocked: int = 0
    violation_count: int = 0
    omitted: int = 0


class Refused(Exception):
    """A request answered with an error status and `{"code", "message"}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def parse_write_keys(text: str | None) -> dict[str, str]:
    """`source:key,source:key` → {key: source}. Refuses an empty or malformed setting."""
    if not text or not text.strip():
        raise CollectorConfigError("CORRAL_WRITE_KEYS is empty: set it to source:key[,source:key...]; the collector will not run open")
    keys: dict[str, str] = {}
    for number, item in enumerate(text.split(","), start=1):
        source, _, key = item.strip().partition(":")
        if not source or not key:
            raise CollectorConfigError(f"CORRAL_WRITE_KEYS item {number} is not source:key")
        if not SOURCE_NAME.match(source):
            raise CollectorConfigError(f"CORRAL_WRITE_KEYS item {number}: source {source!r} must be lower-case letters, digits, '_' or '-'")
        if key in keys:
            raise CollectorConfigError(f"CORRAL_WRITE_KEYS item {number}: the same key is given to two sources")
        keys[key] = source
    return keys


@dataclass
class CollectorConfig:
    home: CorralHome
    write_keys: dict[str, str]
    webhooks: dict[str, WebhookMapping] = field(default_factory=dict)
    plans: dict[str, TrackingPlan] = field(default_factory=dict)
    segment_max_bytes: int = 64 << 20
    segment_max_age_seconds: float = 60.0

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str] | None = None) -> CollectorConfig:
        env = os.environ if environ is None else environ
        write_keys = parse_write_keys(env.get("CORRAL_WRITE_KEYS"))
        return cls(
            home=CorralHome.from_env(dict(env)),
            write_keys=write_keys,
            webhooks=load_webhook_mappings(Path(env.get("CORRAL_WEBHOOKS") or DEFAULT_PATH)),
            plans=load_plans(plans_directory(env), known_sources=write_keys.values()),
            segment_max_bytes=int(env.get("CORRAL_SEGMENT_MAX_BYTES") or 64 << 20),
            segment_max_age_seconds=float(env.get("CORRAL_SEGMENT_MAX_AGE_SECONDS") or 60.0),
        )


class Collector:
    def __init__(self, config: CollectorConfig, counters: Counters | None = None) -> None:
        self.config = config
        self.writer = LandingWriter(config.home.landing, config.segment_max_bytes, config.segment_max_age_seconds)
        self.counters = counters or Counters()

    # --- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await self.writer.start()
                log.info("collecting into %s for sources %s", self.config.home.landing, sorted(set(self.config.write_keys.values())))
                for plan in {id(p): p for p in self.config.plans.values()}.values():
                    log.info("tracking plan for %s", plan.describe())
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await self.writer.stop()
                log.info("stopped; counts across workers so far: %s", {k: v for k, v in self.counters.snapshot().items() if v})
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"].rstrip("/")
        try:
            if method == "OPTIONS":
                await self._respond(send, 204, b"")
            elif method == "GET" and path == "/health":
                await self._respond(send, 200, b'{"status":"ok"}')
            elif method == "GET" and path == "/metrics":
                await self._respond(send, 200, self._metrics(), content_type=b"text/plain; version=0.0.4")
            elif method == "POST" and path.startswith("/v1/"):
                self.counters.add("requests")
                status, body = await self._post(scope, receive, path[4:])
                await self._respond(send, status, body)
            else:
                raise Refused(404, "not_found", f"no route {method} {path or '/'}")
        except Refused as refused:
            self.counters.add(f"refused_{refused.code}")
            await self._respond(send, refused.status, orjson.dumps({"code": refused.code, "message": refused.message}))
        except OSError:
            log.exception("could not make messages durable")
            self.counters.add("refused_unavailable")
            body = orjson.dumps({"code": "unavailable", "message": "could not write to landing; retry"})
            await self._respond(send, 503, body)

    async def _respond(self, send: Send, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *CORS]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # --- tracking API -----------------------------------------------------------------------

    async def _post(self, scope: Scope, receive: Receive, route: str) -> tuple[int, bytes]:
        kind = SHORT_TYPES.get(route, route)
        webhook = None
        if route.startswith("webhook/"):
            name = route.removeprefix("webhook/")
            webhook = self.config.webhooks.get(name)
            if webhook is None:
                raise Refused(404, "not_found", f"no webhook mapping named {name!r} (known: {', '.join(sorted(self.config.webhooks)) or 'none'})")
        elif kind not in (*MESSAGE_TYPES, "batch", "b"):
            raise Refused(404, "not_found", f"no route POST /v1/{route}")
        single = webhook is None and kind != "batch" and kind != "b"
        limit = MAX_MESSAGE_BYTES if single else MAX_BATCH_BYTES
        headers = dict(scope["headers"])
        body = await read_body(receive, headers, limit)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Refused(400, "invalid_json", f"body is not valid JSON: {exc}") from None
        source = self._authenticate(headers, payload, scope.get("query_string", b""))
        clock = RequestClock.now()
        if webhook is not None:
            items, shared = webhook.messages(payload), {}
        elif single:
            if isinstance(payload, dict):
                payload.setdefault("type", kind)
            items, shared = [payload], {}
        else:
            if not isinstance(payload, dict) or not isinstance(payload.get("batch"), list):
                raise Refused(400, "invalid_batch", "a batch body is an object with a 'batch' list of messages")
            items, shared = payload["batch"], payload
            if len(items) > MAX_BATCH_MESSAGES:
                raise Refused(400, "too_many_messages", f"{len(items)} messages in one batch; the limit is {MAX_BATCH_MESSAGES}")
        prepared = self._prepare(items, shared, kind if single else None, source, clock)
        writer = self.writer
        await writer.append_all([
            (writer.directory(source), b"".join(prepared.accepted)),
            (writer.directory(source, rejected=True), b"".join(prepared.rejected)),
        ])
        self.counters.add("accepted", len(prepared.accepted))
        rejected = len(prepared.rejected) - prepared.blocked
        self.counters.add("rejected", rejected)
        if prepared.notes:
            self.counters.add("blocked", prepared.blocked)
            self.counters.add("violations", prepared.violation_count)
            self.counters.add("omitted_properties", prepared.omitted)
        if single and prepared.errors:
            self.counters.add("refused_invalid_message")
            return 400, orjson.dumps({"code": "invalid_message", "message": prepared.errors[0]["reason"]})
        result: dict[str, Any] = {"success": True, "accepted": len(prepared.accepted), "rejected": rejected}
        if prepared.errors:
            result["errors"] = prepared.errors[:MAX_ERRORS_SHOWN]
        if prepared.notes:  # tracking plan: what was blocked or kept with violations, and why
            result["blocked"] = prepared.blocked
            result["violations"] = prepared.notes[:MAX_ERRORS_SHOWN]
        return 200, orjson.dumps(result)

    def _authenticate(self, headers: dict[bytes, bytes], payload: Any, query_string: bytes) -> str:
        given = None
        authorization = headers.get(b"authorization", b"")
        if authorization[:6].lower() == b"basic ":
            try:
                given = base64.b64decode(authorization[6:].strip(), validate=True).decode().partition(":")[0]
            except (ValueError, UnicodeDecodeError):
                raise Refused(401, "unauthorized", "malformed Basic authorization header") from None
        if not given and isinstance(payload, dict) and isinstance(payload.get("writeKey"), str):
            given = payload["writeKey"]
        if not given:
            given = (parse_qs(query_string.decode("latin-1")).get("writeKey") or [None])[0]
        if not given:
            raise Refused(401, "unauthorized", "no write key: send it as the Basic-auth user name or as 'writeKey' in the body")
        source = None
        for key, candidate in self.config.write_keys.items():  # every key compared, in constant time
            if hmac.compare_digest(key.encode(), given.encode()):
                source = candidate
        if source is None:
            raise Refused(401, "unauthorized", "unknown write key")
        return source

    def _prepare(
        self, items: list[Any], shared: dict[str, Any], endpoint_type: str | None, source: str, clock: RequestClock
    ) -> Prepared:
        """Validate and enrich every item into NDJSON lines (accepted, rejected, violations),
        checking valid ones against the source's tracking plan. Refuses the whole request
        (storing nothing) if one message is over the per-message limit."""
        batch_context, batch_integrations = shared.get("context"), shared.get("integrations")
        batch_sent_at = shared.get("sentAt")
        plan = self.config.plans.get(source)
        prepared = Prepared()
        accepted, rejected, errors = prepared.accepted, prepared.rejected, prepared.errors
        for index, item in enumerate(items):
            if isinstance(item, dict):  # a batch's context/integrations apply to each item
                item.pop("writeKey", None)
                if RESERVED_KEY in item:  # only the collector writes it
                    del item[RESERVED_KEY]
                if isinstance(batch_context, dict):
                    own = item.get("context")
                    item["context"] = {**batch_context, **own} if isinstance(own, dict) else own or batch_context
                if isinstance(batch_integrations, dict) and "integrations" not in item:
                    item["integrations"] = batch_integrations
            reason = accept(item, clock, batch_sent_at, endpoint_type)
            verdict = None if reason is not None or plan is None else plan.check(item)
            if verdict is not None:
                assert plan is not None
                line = orjson.dumps(item) + b"\n"
                if len(line) > MAX_STORED_MESSAGE_BYTES:
                    raise Refused(400, "message_too_large", f"message {index} is over the {MAX_MESSAGE_BYTES // 1024} KB limit per message")
                prepared.omitted += verdict.omitted
                prepared.violation_count += len(verdict.violations)
                if verdict.blocked:
                    rejected.append(blocked_line(verdict, line, source, plan, clock.received_iso))
                    prepared.blocked += 1
                else:
                    annotate(item, verdict, plan)
                    accepted.append(orjson.dumps(item) + b"\n")
                prepared.notes.append({
                    "index": index, "messageId": item.get("messageId"), "blocked": verdict.blocked,
                    "violations": [{"path": v.path, "rule": v.rule, "action": v.action, "description": v.description}
                                   for v in verdict.violations[:MAX_ERRORS_SHOWN]],
                })
                continue
            if reason is None:
                line = orjson.dumps(item) + b"\n"
                accepted.append(line)
            else:
                errors.append({"index": index, "reason": reason})
                record = {"reason": reason, "receivedAt": clock.received_iso, "sourceId": source, "message": item}
                line = orjson.dumps(record, default=str) + b"\n"
                rejected.append(line)
            if len(line) > MAX_STORED_MESSAGE_BYTES:
                raise Refused(400, "message_too_large", f"message {index} is over the {MAX_MESSAGE_BYTES // 1024} KB limit per message")
        return prepared

    def _metrics(self) -> bytes:
        counts = self.counters.snapshot()
        lines = [
            "# HELP corral_collector_messages_total Messages by outcome, across workers.",
            "# TYPE corral_collector_messages_total counter",
            f'corral_collector_messages_total{{outcome="accepted"}} {counts["accepted"]}',
            f'corral_collector_messages_total{{outcome="rejected"}} {counts["rejected"]}',
            f'corral_collector_messages_total{{outcome="blocked"}} {counts["blocked"]}',
            "# HELP corral_collector_plan_violations_total Tracking-plan violations found, across workers.",
            "# TYPE corral_collector_plan_violations_total counter",
            f'corral_collector_plan_violations_total {counts["violations"]}',
            "# HELP corral_collector_omitted_properties_total Properties or traits dropped by omit_properties plans.",
            "# TYPE corral_collector_omitted_properties_total counter",
            f'corral_collector_omitted_properties_total {counts["omitted_properties"]}',
            "# HELP corral_collector_requests_total POST requests, and those refused by code, across workers.",
            "# TYPE corral_collector_requests_total counter",
            f'corral_collector_requests_total{{outcome="all"}} {counts["requests"]}',
        ]
        lines += [f'corral_collector_requests_total{{outcome="refused_{code}"}} {counts[f"refused_{code}"]}' for code in REFUSAL_CODES]
        return ("\n".join(lines) + "\n").encode()


async def read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    """The request body, inflated if gzip'd, refused past `limit` bytes without reading (or
    inflating) more than the limit allows."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(400, "body_too_large", f"body of {int(declared)} bytes is over the {limit // 1024} KB limit for this endpoint")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refused(400, "incomplete_body", "client went away mid-body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refused(400, "body_too_large", f"body is over the {limit // 1024} KB limit for this endpoint")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    encoding = headers.get(b"content-encoding", b"").strip().lower()
    if encoding in (b"", b"identity"):
        return body
    if encoding != b"gzip":
        raise Refused(415, "unsupported_encoding", f"Content-Encoding {encoding.decode(errors='replace')!r}; use gzip or none")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise Refused(400, "invalid_gzip", f"body is not valid gzip: {exc}") from None
    if len(inflated) > limit:
        raise Refused(400, "body_too_large", f"gzip body inflates past the {limit // 1024} KB limit for this endpoint")
    if not inflater.eof:
        raise Refused(400, "invalid_gzip", "gzip body is truncated")
    return inflated


def create_app(counters: Counters | None = None) -> Collector:
    """The app, configured from the environment."""
    return Collector(CollectorConfig.from_env(), counters)
