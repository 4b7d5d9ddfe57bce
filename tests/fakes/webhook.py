"""A fake webhook receiver that checks what TrackLayer's webhook destination promises.

It verifies the ``X-TrackLayer-Signature`` of every request, checks each event's required
fields, records what arrived, and answers from a script (503s, 429 with Retry-After, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field

from aiohttp import web

REQUIRED_EVENT_FIELDS = {
    "event_id": str,
    "name": str,
    "source_name": str,
    "source": str,
    "message_id": str,
    "type": str,
    "timestamp": str,
    "properties": dict,
    "user": dict,
    "consent": dict,
}


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"ok":true}'
    delay: float = 0.0


@dataclass
class Received:
    at: float
    path: str
    headers: dict[str, str]
    events: list[dict]
    answered: int


class FakeWebhook:
    """``await FakeWebhook(secret).start()``; ``url`` then accepts deliveries."""

    def __init__(self, secret: str = "", client_max_size: int = 64 * 1024**2) -> None:
        self.secret = secret
        self.client_max_size = client_max_size
        self.script: list[Answer] = []  # answers to give first, in order; then 200
        self.requests: list[Received] = []
        self.problems: list[str] = []  # contract violations seen (tests assert it stays empty)
        self.arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> FakeWebhook:
        return await self.start_on(0)

    async def start_on(self, port: int) -> FakeWebhook:
        """Listen on ``port`` (0: any free port)."""
        app = web.Application(client_max_size=self.client_max_size)
        app.router.add_post("/{tail:.*}", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/in"
        return self

    @property
    def endpoint(self) -> str:
        """The base URL (platform fakes take any path below it)."""
        return self.url.removesuffix("/in")

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        answer = self.script.pop(0) if self.script else Answer()
        return await self._answer(request, self._check(request, body), answer)

    async def _answer(self, request: web.Request, events: list, answer: Answer) -> web.Response:
        """Record the request, wake whoever waits for it, and answer (after any delay)."""
        self.requests.append(
            Received(time.monotonic(), request.path, dict(request.headers), events, answer.status)
        )
        async with self.arrived:
            self.arrived.notify_all()
        if answer.delay:
            await asyncio.sleep(answer.delay)
        return web.Response(status=answer.status, headers=answer.headers, body=answer.body)

    def _check(self, request: web.Request, body: bytes) -> list[dict]:
        if self.secret:
            expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            if request.headers.get("X-TrackLayer-Signature") != expected:
                self.problems.append("bad or missing X-TrackLayer-Signature")
        if request.headers.get("Content-Type", "").split(";")[0] != "application/json":
            self.problems.append("Content-Type is not application/json")
        try:
            document = json.loads(body)
        except ValueError:
            self.problems.append("body is not JSON")
            return []
        events = document.get("events") if isinstance(document, dict) else None
        if not isinstance(events, list) or not events:
            self.problems.append('body has no "events" list')
            return []
        for event in events:
            for name, kind in REQUIRED_EVENT_FIELDS.items():
                if not isinstance(event.get(name), kind):
                    self.problems.append(f"event field {name!r} missing or not {kind.__name__}")
            if not str(event.get("timestamp", "")).endswith("Z"):
                self.problems.append("timestamp is not ISO 8601 UTC")
        return events

    # views --------------------------------------------------------------------------------

    @property
    def accepted_events(self) -> list[dict]:
        """Events of requests answered 2xx (what the receiver kept)."""
        return [e for r in self.requests if 200 <= r.answered < 300 for e in r.events]

    @property
    def all_events(self) -> list[dict]:
        return [e for r in self.requests for e in r.events]

    async def wait_for_ids(self, message_ids: set[str], timeout: float = 10.0) -> None:
        """Wait until every message id in ``message_ids`` has been accepted."""
        deadline = time.monotonic() + timeout
        while True:
            missing = message_ids - {e.get("message_id") for e in self.accepted_events}
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(missing)} acknowledged events never arrived")
            await asyncio.sleep(0.05)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        """Wait until ``count`` events have been accepted; returns them."""
        deadline = time.monotonic() + timeout
        async with self.arrived:
            while len(self.accepted_events) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} accepted events, got {len(self.accepted_events)}"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.arrived.wait(), remaining)
        return self.accepted_events
