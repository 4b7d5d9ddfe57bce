"""The native endpoint, ``POST /v1/events``: canonical events, one object or
``{"batch": [...]}`` (CONTRACT.md), authenticated by a source's write key (Basic auth,
``X-TrackLayer-Key``, or ``writeKey`` in the body)."""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec
from aiohttp import web

from tracklayer.model import Event, NativeEvent, Rejection
from tracklayer.pipeline.canonical import Arrival, InvalidEvent
from tracklayer.sources.browser import remember_visitor
from tracklayer.sources.decoding import decode_item, decode_or_refuse
from tracklayer.sources.http import Refusal, basic_auth_key, read_body
from tracklayer.sources.intake import Intake


class NativeSource:
    def __init__(self, intake: Callable[[], Intake]) -> None:
        self.intake = intake

    def add_routes(self, app: web.Application) -> None:
        for path in ("/v1/events", "/v1/events/"):
            app.router.add_post(path, self.handle)
            app.router.add_route("OPTIONS", path, self.preflight)

    async def preflight(self, request: web.Request) -> web.Response:
        return self.intake().cors.preflight(request)

    async def handle(self, request: web.Request) -> web.Response:
        intake = self.intake()
        try:
            response = await self._handle(intake, request)
        except Refusal as refusal:
            response = refusal.response()
        response.headers.update(intake.cors.headers(request))
        return response

    async def _handle(self, intake: Intake, request: web.Request) -> web.Response:
        header_key = basic_auth_key(request) or request.headers.get("X-TrackLayer-Key") or None
        state = intake.authenticate(header_key) if header_key else None
        if state is not None:
            intake.check_rate(state)
        body = await read_body(request, intake.max_body)
        received_at = time.time()

        top = decode_or_refuse(body, dict[str, msgspec.Raw])
        if "batch" in top:
            items = decode_or_refuse(top["batch"], list[msgspec.Raw], prefix="batch")
        else:
            items = [msgspec.Raw(body)]
        if state is None:
            key = top.get("writeKey")
            state = intake.authenticate(
                decode_or_refuse(key, str, prefix="writeKey") if key is not None else None
            )
            intake.check_rate(state)

        arrival = Arrival(
            source=state.config.id,
            received_at=received_at,
            client_ip=intake.client_address.of(request),
            client_side=state.config.type == "sdk" or "Origin" in request.headers,
            country=intake.country(request),
        )
        events: list[Event] = []
        client_ids: list[bool] = []
        rejected: list[Rejection] = []
        for index, raw in enumerate(items):
            item = decode_item(raw, NativeEvent, index)
            if isinstance(item, Rejection):
                rejected.append(item)
                continue
            try:
                events.append(intake.canonicaliser.from_native(item, arrival))
            except InvalidEvent as invalid:
                rejected.append(Rejection(index, "invalid_event", str(invalid)))
                continue
            client_ids.append(bool(item.message_id or item.event_id))
        response = await intake.store(state, events, client_ids, rejected, len(items))
        remember_visitor(request, response, events, intake)
        return response
