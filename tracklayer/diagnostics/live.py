"""The live tail: records of events and their outcomes, streamed to viewers as Server-Sent
Events (``GET /v1/admin/live``).

``publish()`` is called on the hot path and never waits: each record is encoded once (only
when a viewer wants it) and appended to each viewer's bounded queue. A viewer that reads
slower than records arrive misses the newest ones and is told how many, in order, with a
``{"type": "missed", "count": n}`` record; ingest never waits for a socket.

Filters come from the query: ``source``, ``event`` (canonical or source name) and
``destination``, each a comma-separated list; an event record matches a destination it was
queued, filtered or deduplicated for.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import logging
import re
from collections import deque
from importlib import resources
from typing import Any

import msgspec
from aiohttp import web

log = logging.getLogger("tracklayer.diagnostics.live")

_encode = msgspec.json.Encoder().encode

BUFFER = 256  # records a viewer may fall behind before it misses some
MAX_VIEWERS = 16
KEEPALIVE_SECONDS = 15.0  # a comment line keeps proxies and browsers from timing out
WRITE_BATCH = 64  # records joined into one socket write


class _Missed:
    """A place in a viewer's queue where ``count`` records were dropped."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 1


def _names(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split(",") if part.strip())


class Viewer:
    """One connected stream: its filters and its bounded queue."""

    __slots__ = (
        "destinations",
        "events",
        "limit",
        "missed",
        "queue",
        "sources",
        "task",
        "wake",
        "writing",
    )

    def __init__(
        self,
        sources: frozenset[str] = frozenset(),
        events: frozenset[str] = frozenset(),
        destinations: frozenset[str] = frozenset(),
        limit: int = BUFFER,
    ) -> None:
        self.sources, self.events, self.destinations = sources, events, destinations
        self.limit = limit
        self.queue: deque[bytes | _Missed] = deque()
        self.wake = asyncio.Event()
        self.missed = 0  # records dropped for this viewer, in all
        self.task: asyncio.Task | None = None
        self.writing = False

    def wants(self, record: dict[str, Any]) -> bool:
        if self.sources and record.get("source") not in self.sources:
            return False
        if self.events and not (
            record.get("name") in self.events or record.get("source_name") in self.events
        ):
            return False
        if self.destinations:
            if record.get("type") == "outcome":
                return record.get("destination") in self.destinations
            return any(
                destination in self.destinations
                for field in ("queued", "filtered", "duplicate_for")
                for destination in record.get(field) or ()
            )
        return True

    def put(self, data: bytes) -> None:
        queue = self.queue
        if len(queue) < self.limit:
            queue.append(data)
        else:
            self.missed += 1
            last = queue[-1] if queue else None
            if isinstance(last, _Missed):
                last.count += 1
            else:
                queue.append(_Missed())  # one slot past the limit, to keep the order
        self.wake.set()

    def take(self, most: int) -> bytes:
        """Up to ``most`` queued records as one SSE chunk."""
        parts: list[bytes] = []
        while self.queue and len(parts) < most:
            item = self.queue.popleft()
            if isinstance(item, _Missed):
                item_bytes = b'data: {"type":"missed","count":%d}\n\n' % item.count
                parts.append(item_bytes)
            else:
                parts.append(item)
        return b"".join(parts)


class LiveTail:
    """Fans records out to the connected viewers."""

    def __init__(
        self,
        buffer: int = BUFFER,
        max_viewers: int = MAX_VIEWERS,
        keepalive: float = KEEPALIVE_SECONDS,
    ) -> None:
        self.buffer = buffer
        self.max_viewers = max_viewers
        self.keepalive = keepalive
        self.viewers: set[Viewer] = set()
        self._closing = False

    def publish(self, record: dict[str, Any]) -> None:
        """Hand a record to every viewer that wants it; never waits, never raises for a
        viewer's sake. Costs nothing while nobody watches."""
        if not self.viewers:
            return
        data: bytes | None = None
        for viewer in self.viewers:
            if viewer.wants(record):
                if data is None:
                    try:
                        data = b"data: " + _encode(record) + b"\n\n"
                    except (TypeError, ValueError) as problem:  # a record must not break ingest
                        log.warning(
                            "live record not encodable", extra={"fields": {"error": str(problem)}}
                        )
                        return
                viewer.put(data)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/admin/live`` (the caller has checked the admin token)."""
        if self._closing:
            raise web.HTTPServiceUnavailable(reason="stopping")
        if len(self.viewers) >= self.max_viewers:
            raise web.HTTPServiceUnavailable(
                reason=f"too many live viewers (at most {self.max_viewers})"
            )
        query = request.query
        viewer = Viewer(
            _names(query.get("source", "")),
            _names(query.get("event", "")),
            _names(query.get("destination", "")),
            self.buffer,
        )
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache, no-store",
                "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
            }
        )
        await response.prepare(request)
        viewer.task = asyncio.current_task()
        self.viewers.add(viewer)
        hello = {
            "type": "hello",
            "filters": {
                "source": sorted(viewer.sources),
                "event": sorted(viewer.events),
                "destination": sorted(viewer.destinations),
            },
            "buffer": self.buffer,
        }
        try:
            await response.write(b"retry: 3000\n\ndata: " + _encode(hello) + b"\n\n")
            while not self._closing:
                if not viewer.queue:
                    viewer.wake.clear()
                    try:
                        await asyncio.wait_for(viewer.wake.wait(), self.keepalive)
                    except TimeoutError:
                        await response.write(b": keep-alive\n\n")
                    continue
                viewer.writing = True
                await response.write(viewer.take(WRITE_BATCH))
                viewer.writing = False
        except ConnectionError:
            pass  # the viewer went away
        finally:
            self.viewers.discard(viewer)
        return response

    async def close(self, app: web.Application | None = None) -> None:
        """End every stream (an ``on_shutdown`` hook), so stopping does not wait for
        viewers; one stuck writing to a full socket is cancelled."""
        self._closing = True
        for viewer in list(self.viewers):
            viewer.wake.set()
            if viewer.writing and viewer.task is not None:
                viewer.task.cancel()


class DebuggerPage:
    """``GET /debugger``: the static page, read once from the package, served with a
    Content-Security-Policy that allows its own inline script and style (by hash) and
    connections to this origin only."""

    def __init__(self) -> None:
        self.body = resources.files("tracklayer.diagnostics").joinpath("debugger.html").read_bytes()
        text = self.body.decode()

        def hashes(tag: str) -> str:
            found = re.findall(rf"<{tag}>(.*?)</{tag}>", text, re.S)
            return " ".join(
                "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
                for s in found
            )

        self.policy = (
            f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')};"
            " connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none';"
            " frame-ancestors 'none'"
        )

    def response(self, request: web.Request, token: str = "") -> web.Response:
        """The page; ``token`` (from ``?token=``) becomes the ``tl_admin`` cookie so the
        page's own requests (the EventSource) carry it and the URL need not."""
        response = web.Response(
            body=self.body,
            content_type="text/html",
            charset="utf-8",
            headers={
                "Content-Security-Policy": self.policy,
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",  # the URL may still hold the token
                "X-Content-Type-Options": "nosniff",
            },
        )
        if token:
            response.set_cookie(
                "tl_admin",
                token,
                path="/",
                httponly=True,
                samesite="Strict",
                secure=request.secure,
            )
        return response


@functools.cache
def debugger_page() -> DebuggerPage:
    """The page, read from the package on first use."""
    return DebuggerPage()
