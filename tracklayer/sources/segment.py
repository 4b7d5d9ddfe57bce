"""The Segment HTTP Tracking API, unchanged, so Segment's own libraries can point here.

Routes, request and response shapes follow Segment's documentation and its own fake
Tracking API server (``../shared/research/segment.md`` §1): the server routes, ``/v1/import``
as an alias of ``/v1/batch``, the browser short forms, Basic auth with or without the
trailing colon or ``writeKey`` in the body, JSON whatever the Content-Type, gzip bodies, and
exactly ``200 {"success": true}`` (older Python clients treat any other 2xx as a failure).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from tracklayer.model import Event, Rejection, SegmentBatch, SegmentMessage
from tracklayer.pipeline.canonical import Arrival, InvalidEvent
from tracklayer.sources.decoding import decode_item, decode_or_refuse
from tracklayer.sources.http import Refusal, basic_auth_key, read_body
from tracklayer.sources.intake import Intake

SINGLE_ROUTES = {
    "track": "track",
    "identify": "identify",
    "page": "page",
    "screen": "screen",
    "group": "group",
    "alias": "alias",
}
SHORT_ROUTES = {
    "t": "track",
    "i": "identify",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
}
BATCH_ROUTES = ("batch", "import")


class SegmentSource:
    """Request handlers; ``intake()`` returns the current (reloadable) state."""

    def __init__(self, intake: Callable[[], Intake]) -> None:
        self.intake = intake

    def add_routes(self, app: web.Application) -> None:
        def route(path: str, handler) -> None:
            for variant in (path, path + "/"):
                app.router.add_route("POST", variant, handler)
                app.router.add_route("PUT", variant, handler)
                app.router.add_route("OPTIONS", variant, self.preflight)

        for path, kind in SINGLE_ROUTES.items():
            route(f"/v1/{path}", self._handler(kind, batch=False, browser=False))
        for path, kind in SHORT_ROUTES.items():
            route(f"/v1/{path}", self._handler(kind, batch=False, browser=True))
        for path in BATCH_ROUTES:
            route(f"/v1/{path}", self._handler(None, batch=True, browser=False))
        route("/v1/b", self._handler(None, batch=True, browser=True))

    async def preflight(self, request: web.Request) -> web.Response:
        return self.intake().cors.preflight(request)

    def _handler(self, kind: str | None, batch: bool, browser: bool):
        async def handle(request: web.Request) -> web.Response:
            intake = self.intake()
            try:
                response = await self._handle(intake, request, kind, batch, browser)
            except Refusal as refusal:
                response = refusal.response()
            response.headers.update(intake.cors.headers(request))
            return response

        return handle

    async def _handle(
        self, intake: Intake, request: web.Request, kind: str | None, batch: bool, browser: bool
    ) -> web.Response:
        header_key = basic_auth_key(request)
        state = intake.authenticate(header_key) if header_key is not None else None
        if state is not None:
            intake.check_rate(state)
        body = await read_body(request, intake.max_body)
        received_at = time.time()

        rejected: list[Rejection] = []
        messages: list[tuple[int, SegmentMessage]] = []
        if batch:
            envelope = decode_or_refuse(body, SegmentBatch)
            for index, raw in enumerate(envelope.batch):
                item = decode_item(raw, SegmentMessage, index)
                if isinstance(item, Rejection):
                    rejected.append(item)
                else:
                    messages.append((index, item))
            body_key = envelope.write_key or next(
                (m.write_key for _, m in messages if m.write_key), None
            )
            total = len(envelope.batch)
            arrival_extra = (envelope.sent_at, envelope.context, envelope.integrations)
        else:
            message = decode_or_refuse(body, SegmentMessage)
            messages.append((0, message))
            body_key, total, arrival_extra = message.write_key, 1, (None, None, None)
        if state is None:
            state = intake.authenticate(body_key)
            intake.check_rate(state)
        if total == 0:
            return await intake.store(state, [], [], [], 0)

        batch_sent_at, batch_context, batch_integrations = arrival_extra
        try:
            sent_at = intake.canonicaliser.parse_time(batch_sent_at, "sentAt")
        except InvalidEvent as invalid:
            raise Refusal(400, "invalid_event", str(invalid)) from None
        arrival = Arrival(
            source=state.config.id,
            received_at=received_at,
            client_ip=intake.client_address.of(request),
            client_side=browser,
            country=intake.country(request),
            sent_at=sent_at,
            context=batch_context,
            integrations=batch_integrations,
        )
        events: list[Event] = []
        client_ids: list[bool] = []
        canonicaliser = intake.canonicaliser
        for index, message in messages:
            try:
                events.append(canonicaliser.from_segment(message, kind, arrival))
            except InvalidEvent as invalid:
                rejected.append(Rejection(index, "invalid_event", str(invalid)))
                continue
            client_ids.append(message.message_id not in (None, ""))
        rejected.sort(key=lambda r: r.index)
        return await intake.store(state, events, client_ids, rejected, total)
