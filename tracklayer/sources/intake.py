"""The state every source route reads on each request, swapped whole on reload: who may
send (write keys → sources), how events are canonicalised, and where they are handed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import msgspec
from aiohttp import web

from tracklayer.config import Config, Source
from tracklayer.metrics import Metrics
from tracklayer.model import Event, Rejection
from tracklayer.pipeline.canonical import Canonicaliser
from tracklayer.sources.http import ClientAddress, Cors, Refusal, retry_after, success
from tracklayer.store.database import StoreUnavailable
from tracklayer.token_bucket import TokenBucket

# (source id, events, whether each event's messageId came from the client) → stored
Admit = Callable[[str, Sequence[Event], Sequence[bool]], Awaitable[None]]


@dataclass
class SourceState:
    config: Source
    bucket: TokenBucket | None = None
    allow: frozenset[str] | None = None

    @classmethod
    def of(cls, source: Source) -> SourceState:
        limit = source.rate_limit
        bucket = TokenBucket(limit.rps, limit.capacity) if limit else None
        allow = frozenset(source.allow_events) if source.allow_events is not None else None
        return cls(source, bucket, allow)


@dataclass
class Intake:
    config: Config
    canonicaliser: Canonicaliser
    admit: Admit
    metrics: Metrics
    by_key: dict[str, SourceState] = field(default_factory=dict)
    by_id: dict[str, SourceState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        server = self.config.server
        self.max_body = server.max_body_bytes
        self.cors = Cors(server.cors_origins)
        self.client_address = ClientAddress(server.trusted_proxies)
        self.country_header = self.config.consent.country_header
        for source in self.config.sources:
            state = SourceState.of(source)
            self.by_id[source.id] = state
            for key in source.write_keys:
                self.by_key[key] = state

    def carry_buckets(self, previous: Intake) -> None:
        """Keep rate-limit state across a reload for sources whose limit did not change."""
        for source_id, state in self.by_id.items():
            old = previous.by_id.get(source_id)
            if (
                old
                and old.bucket
                and state.bucket
                and old.config.rate_limit == state.config.rate_limit
            ):
                state.bucket = old.bucket

    def authenticate(self, key: str | None) -> SourceState:
        if not key:
            raise Refusal(401, "unauthorized", "missing write key (Basic auth user or writeKey)")
        state = self.by_key.get(key)
        if state is None:
            raise Refusal(401, "unauthorized", "unknown write key")
        return state

    def webhook_source(self, request: web.Request, kind: str, label: str) -> SourceState:
        """The ``type: kind`` source named by the ``{source_id}`` of a webhook route, or 404."""
        source_id = request.match_info["source_id"]
        state = self.by_id.get(source_id)
        if state is None or state.config.type != kind:
            raise Refusal(404, "not_found", f"no {label} source with id {source_id!r}")
        return state

    def check_rate(self, state: SourceState) -> None:
        if state.bucket is None:
            return
        wait = state.bucket.try_take()
        if wait > 0:
            self.metrics.events_rejected.labels(state.config.id, "rate_limited").inc()
            raise Refusal(
                429,
                "rate_limited",
                f"source {state.config.id!r} is over its rate_limit; retry later",
                retry_after(wait),
            )

    def country(self, request: web.Request) -> str:
        if not self.country_header:
            return ""
        value = request.headers.get(self.country_header, "").strip().upper()
        return value[:2] if len(value) >= 2 and value.isalpha() else ""

    async def store(
        self,
        state: SourceState,
        events: list[Event],
        client_ids: list[bool],
        rejected: list[Rejection],
        total: int,
    ) -> web.Response:
        """Count, filter, hand the events over, and answer only once they are durable."""
        source = state.config.id
        metrics = self.metrics
        for rejection in rejected:
            metrics.events_rejected.labels(source, rejection.code).inc()
        if not events and rejected:
            first = rejected[0]
            if total == 1:
                raise Refusal(400, first.code, first.message)
            raise BatchRefusal(rejected)
        if state.allow is not None:
            kept = [i for i, event in enumerate(events) if event.source_name in state.allow]
            filtered = len(events) - len(kept)
            if filtered:
                metrics.events_filtered.labels(source).inc(filtered)
                events = [events[i] for i in kept]
                client_ids = [client_ids[i] for i in kept]
        if events:
            try:
                await self.admit(source, events, client_ids)
            except StoreUnavailable:
                raise Refusal(
                    503,
                    "unavailable",
                    "events could not be stored; retry later",
                    {"Retry-After": "1"},
                ) from None
        metrics.events_received.labels(source).inc(total - len(rejected))
        return success(total - len(rejected), rejected)


class BatchRefusal(Refusal):
    """Every message of a batch was invalid: 400, still listing each rejected index."""

    def __init__(self, rejected: list[Rejection]) -> None:
        first = rejected[0]
        super().__init__(400, first.code, f"no valid message in the batch; first: {first.message}")
        self.rejected = rejected

    def response(self) -> web.Response:
        body = msgspec.json.encode(
            {
                "success": False,
                "code": self.code,
                "message": self.message,
                "rejected": self.rejected,
            }
        )
        return web.Response(status=400, body=body, content_type="application/json")


class WebhookSource:
    """``POST /webhooks/<kind>/{source_id}``: a platform pushing its own payloads to one
    configured source. Subclasses set ``kind`` and answer in ``_handle``; a ``Refusal``
    becomes its JSON error."""

    kind: ClassVar[str]

    def __init__(self, intake: Callable[[], Intake]) -> None:
        self.intake = intake  # the current (reloadable) state

    def add_routes(self, app: web.Application) -> None:
        path = f"/webhooks/{self.kind}/{{source_id}}"
        for variant in (path, path + "/"):
            app.router.add_post(variant, self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        intake = self.intake()
        try:
            return await self._handle(intake, request)
        except Refusal as refusal:
            return refusal.response()

    async def _handle(self, intake: Intake, request: web.Request) -> web.Response:
        raise NotImplementedError
