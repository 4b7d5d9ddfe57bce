"""The live tail through a real daemon: Server-Sent Events of an event and its outcome,
filters, the admin token (header, query, cookie), a slow viewer that misses records while
ingest keeps its latency, keep-alives, and a stop that never waits for viewers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import statistics
import time
import uuid
from typing import Any

import aiohttp
import pytest

from tests.harness import ADMIN_TOKEN, base_config, start_app, track, webhook
from tracklayer.diagnostics import live as live_module
from tracklayer.diagnostics.live import LiveTail, Viewer

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Stream:
    """An SSE client reading in the background: ``records`` (parsed ``data:`` lines) and
    ``comments`` (keep-alives)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, **params: str) -> None:
        self.url, self.headers, self.params = url, headers or {}, params
        self.records: list[dict[str, Any]] = []
        self.comments = 0
        self.status = 0
        self.content_type = ""

    async def __aenter__(self) -> Stream:
        self._session = aiohttp.ClientSession()
        self._response = await self._session.get(
            self.url + "/v1/admin/live", headers=self.headers, params=self.params
        )
        self.status = self._response.status
        self.content_type = self._response.headers.get("Content-Type", "")
        if self.status == 200:
            self._task = asyncio.create_task(self._read())
            await self.wait(lambda: any(r.get("type") == "hello" for r in self.records))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.status == 200:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._response.close()
        await self._session.close()

    async def _read(self) -> None:
        async for raw in self._response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                self.records.append(json.loads(line[6:]))
            elif line.startswith(":"):
                self.comments += 1

    def of(self, event_id: str, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("event_id") == event_id and r["type"] == kind]

    async def wait(self, predicate, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"not seen in time; records: {self.records[-5:]}")
            await asyncio.sleep(0.02)


async def send_purchase(app, hook, event_id: str | None = None) -> dict[str, Any]:
    """Post a purchase through the real ingest; returns it as the webhook received it."""
    event_id = event_id or f"live-{uuid.uuid4().hex[:10]}"
    message_id = f"m-{event_id}"
    body = track(
        messageId=message_id,
        properties={
            "order_id": f"o-{event_id}",
            "value": 42.5,
            "currency": "EUR",
            "event_id": event_id,
        },
    )
    status, _, _ = await app.post("/v1/track", body)
    assert status == 200
    await hook.wait_for_ids({message_id})
    return next(e for e in hook.accepted_events if e["message_id"] == message_id)


def stand_in(app, delivered: dict[str, Any], stream: Stream, destination: str = "hooks"):
    """Publish the event and outcome records ingest and delivery will publish, for what
    they have not published themselves (so these tests hold before and after that lands)."""
    event_id = delivered["event_id"]
    if not stream.of(event_id, "event"):
        app.app.live.publish(
            {
                "type": "event",
                "at": _iso(),
                "source": delivered["source"],
                "source_name": delivered["source_name"],
                "name": delivered["name"],
                "event_id": event_id,
                "message_id": delivered["message_id"],
                "dedup": "new",
                "duplicate_for": [],
                "consent": delivered.get("consent", {}),
                "queued": [destination],
                "filtered": [],
            }
        )
    if not [r for r in stream.of(event_id, "outcome") if r.get("destination") == destination]:
        app.app.live.publish(
            {
                "type": "outcome",
                "at": _iso(),
                "event_id": event_id,
                "name": delivered["name"],
                "source": delivered["source"],
                "destination": destination,
                "mode": "live",
                "outcome": "accepted",
                "code": "",
                "message": "",
                "score": None,
                "payload": delivered,
            }
        )


async def settle_records(app, hook, stream: Stream, delivered: dict[str, Any]) -> None:
    """Wait briefly for the pipeline's own records, then stand in for missing ones."""
    event_id = delivered["event_id"]
    with contextlib.suppress(AssertionError):
        await stream.wait(
            lambda: stream.of(event_id, "event") and stream.of(event_id, "outcome"), 0.5
        )
    stand_in(app, delivered, stream)
    await stream.wait(lambda: stream.of(event_id, "event") and stream.of(event_id, "outcome"))


@pytest.fixture
async def daemon(tmp_path, hook):
    app = await start_app(base_config(tmp_path, destinations=[webhook(hook.url)]))
    yield app
    await app.stop()


async def test_stream_carries_an_event_and_its_outcome(daemon, hook):
    async with Stream(daemon.url, AUTH) as stream:
        assert stream.content_type.startswith("text/event-stream")
        delivered = await send_purchase(daemon, hook)
        await settle_records(daemon, hook, stream, delivered)
        event_id = delivered["event_id"]
        event = stream.of(event_id, "event")[0]
        assert event["name"] == "purchase" and event["source"] == "segment"
        assert event["source_name"] == "Order Completed"
        assert "hooks" in event["queued"]
        outcome = next(r for r in stream.of(event_id, "outcome") if r["destination"] == "hooks")
        assert outcome["outcome"] == "accepted"
        assert outcome["payload"] is None or isinstance(outcome["payload"], dict)


async def test_filters_by_source_event_and_destination():
    tail = LiveTail()
    record = {"type": "outcome", "source": "web", "name": "purchase", "destination": "meta"}
    event = {
        "type": "event",
        "source": "web",
        "name": "purchase",
        "source_name": "Order Completed",
        "queued": ["meta"],
        "filtered": ["ga4"],
        "duplicate_for": [],
    }
    assert Viewer().wants(record)
    assert Viewer(sources=frozenset({"web"})).wants(record)
    assert not Viewer(sources=frozenset({"segment"})).wants(record)
    assert Viewer(events=frozenset({"purchase"})).wants(record)
    assert Viewer(events=frozenset({"Order Completed"})).wants(event)
    assert not Viewer(events=frozenset({"lead"})).wants(event)
    assert Viewer(destinations=frozenset({"meta"})).wants(record)
    assert not Viewer(destinations=frozenset({"ga4"})).wants(record)
    assert Viewer(destinations=frozenset({"ga4"})).wants(event)  # filtered out for ga4
    assert not Viewer(destinations=frozenset({"tiktok"})).wants(event)
    tail.publish(record)  # nobody watches: nothing to do


async def test_filtered_stream_through_the_daemon(daemon):
    async with (
        Stream(daemon.url, AUTH, destination="meta,tiktok") as wanted,
        Stream(daemon.url, AUTH, destination="ga4") as other,
    ):
        hello = next(r for r in wanted.records if r["type"] == "hello")
        assert hello["filters"]["destination"] == ["meta", "tiktok"]
        for destination in ("hooks", "tiktok"):
            daemon.app.live.publish(
                {
                    "type": "outcome",
                    "event_id": destination,
                    "destination": destination,
                    "outcome": "observed",
                    "mode": "observe",
                    "name": "lead",
                    "source": "web",
                }
            )
        await wanted.wait(lambda: wanted.of("tiktok", "outcome"))
        await asyncio.sleep(0.1)
        assert not wanted.of("hooks", "outcome")
        assert [r["type"] for r in other.records] == ["hello"]


async def test_admin_token_by_header_query_or_cookie(daemon):
    async with Stream(daemon.url) as refused:
        assert refused.status == 401
    async with Stream(daemon.url, {"Authorization": "Bearer wrong"}) as wrong:
        assert wrong.status == 401
    async with Stream(daemon.url, token=ADMIN_TOKEN) as by_query:
        assert by_query.status == 200
    async with Stream(daemon.url, {"Cookie": f"tl_admin={ADMIN_TOKEN}"}) as by_cookie:
        assert by_cookie.status == 200
    async with aiohttp.ClientSession() as session:
        async with session.get(daemon.url + "/v1/admin/anomalies") as response:
            assert response.status == 401
            assert (await response.json())["code"] == "unauthorized"
        async with session.get(daemon.url + "/v1/admin/anomalies", headers=AUTH) as response:
            assert response.status == 200
            assert await response.json() == {"active": [], "recent": []}
        async with session.get(daemon.url + "/debugger") as response:
            assert response.status == 401
        async with session.get(daemon.url + "/debugger", params={"token": ADMIN_TOKEN}) as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            cookie = response.headers["Set-Cookie"]
            assert f"tl_admin={ADMIN_TOKEN}" in cookie
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
            policy = response.headers["Content-Security-Policy"]
            assert "connect-src 'self'" in policy and "'sha256-" in policy
            assert "EventSource" in await response.text()


def test_a_full_queue_marks_where_records_were_missed():
    viewer = Viewer(limit=3)
    for i in range(6):
        viewer.put(b"data: %d\n\n" % i)
    assert viewer.missed == 3
    first = viewer.take(2)
    viewer.put(b"data: 6\n\n")  # room again: newer than the missed ones, so after the notice
    rest = viewer.take(10)
    assert first == b"data: 0\n\ndata: 1\n\n"
    assert rest == b'data: 2\n\ndata: {"type":"missed","count":3}\n\ndata: 6\n\n'


async def _post_latencies(app, count: int, prefix: str) -> list[float]:
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        status, _, _ = await app.post(
            "/v1/track", track(event="Lead Created", messageId=f"{prefix}{i}")
        )
        latencies.append(time.perf_counter() - started)
        assert status == 200
    return latencies


async def test_a_slow_viewer_misses_records_and_ingest_keeps_its_latency(daemon):
    daemon.app.live.buffer = 32
    baseline = await _post_latencies(daemon, 20, "before-")
    host, port = daemon.app.addresses["public"].split(":")
    loop = asyncio.get_running_loop()
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and then it stops reading
    slow.setblocking(False)
    await loop.sock_connect(slow, (host, int(port)))
    await loop.sock_sendall(
        slow,
        f"GET /v1/admin/live HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ADMIN_TOKEN}"
        "\r\n\r\n".encode(),
    )
    try:
        tail = daemon.app.live
        deadline = time.monotonic() + 5
        while not tail.viewers:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        (viewer,) = tail.viewers
        padding = "x" * 16_000
        published = 0
        while viewer.missed == 0:  # until the socket is full and the queue overflows
            for _ in range(20):
                tail.publish({"type": "outcome", "event_id": f"p{published}", "pad": padding})
                published += 1
            await asyncio.sleep(0)
            assert published < 20_000, "the viewer never fell behind"
        started = time.perf_counter()
        for _ in range(1000):
            tail.publish({"type": "outcome", "event_id": "hot", "pad": padding})
        per_publish = (time.perf_counter() - started) / 1000
        assert per_publish < 0.0005, (
            f"publish took {per_publish * 1e6:.0f} µs with a stalled viewer"
        )
        during = await _post_latencies(daemon, 20, "during-")
        print(
            f"\ningest p50 before {statistics.median(baseline) * 1000:.1f} ms,"
            f" with a stalled viewer {statistics.median(during) * 1000:.1f} ms;"
            f" publish {per_publish * 1e6:.1f} µs; missed {viewer.missed}"
        )
        assert statistics.median(during) <= statistics.median(baseline) * 3 + 0.02
        assert max(during) < 1.0
        assert len(viewer.queue) <= tail.buffer + 1  # bounded, whatever the viewer does
        # the viewer reads again: it is told how many it missed
        received = bytearray()
        deadline = time.monotonic() + 10
        while b'"type":"missed"' not in received:
            assert time.monotonic() < deadline, "no missed record"
            chunk = await asyncio.wait_for(loop.sock_recv(slow, 1 << 20), 5)
            assert chunk, "stream closed"
            received += chunk
        notice = received[received.index(b'{"type":"missed"') :]
        missed = json.loads(notice[: notice.index(b"}") + 1])
        assert missed["count"] > 0
    finally:
        slow.close()


async def test_keepalive_comments(daemon):
    daemon.app.live.keepalive = 0.1
    async with Stream(daemon.url, AUTH) as stream:
        await stream.wait(lambda: stream.comments >= 2, timeout=3)


async def test_stop_does_not_wait_for_viewers(tmp_path, hook):
    assert live_module.KEEPALIVE_SECONDS > 3  # the stream would not end on its own
    app = await start_app(base_config(tmp_path, destinations=[webhook(hook.url)]))
    async with Stream(app.url, AUTH) as stream:
        started = time.perf_counter()
        await app.stop()
        assert time.perf_counter() - started < 3.0
        assert stream.status == 200
