"""The alert webhook against a local receiver: Slack-compatible messages on open and close,
failures logged once, and a sender that never blocks the monitor."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time

from aiohttp import web

from tests.harness import wait_until
from tracklayer.diagnostics.alerts import AlertSender, message
from tracklayer.diagnostics.anomaly import Anomaly, Transition


class Receiver:
    """A Slack-like incoming webhook on loopback: records bodies, answers ``status``."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.content_types: list[str] = []
        self.status = 200
        self.delay = 0.0
        self.url = ""

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/services/T0/B0/secret", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/services/T0/B0/secret"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.content_types.append(request.headers.get("Content-Type", ""))
        self.bodies.append(json.loads(await request.read()))
        return web.Response(status=self.status, text="ok" if self.status == 200 else "no_service")


def transition(change: str = "opened", detail: str = "") -> Transition:
    anomaly = Anomaly(
        kind="new_rejection_code",
        destination="meta",
        event="purchase",
        subject="2635",
        opened_at=1_790_000_000.0,
        detail=detail or "New rejection code: purchase → meta: 4 rejections with code 2635.",
    )
    if change == "closed":
        anomaly.closed_at = anomaly.opened_at + 600
        anomaly.close_detail = "Cleared: new rejection code (2635) for purchase → meta."
    return Transition(change, anomaly)  # type: ignore[arg-type]


def test_message_is_slack_block_kit():
    body = message(transition(detail="<!channel> & friends: 4 rejections"))
    assert body["text"].startswith("🔴 New rejection code (2635): purchase → meta")
    header, section, context = body["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "🔴 New rejection code (2635): purchase → meta"},
    }
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert section["text"]["text"] == "&lt;!channel&gt; &amp; friends: 4 rejections"
    assert context["type"] == "context" and "2026-" in context["elements"][0]["text"]
    long = message(transition(detail="x" * 5000))
    assert len(long["blocks"][1]["text"]["text"]) <= 3000
    assert len(long["blocks"][0]["text"]["text"]) <= 150
    closed = message(transition("closed"))
    assert closed["text"].startswith("✅ Resolved: New rejection code")
    assert closed["blocks"][1]["text"]["text"].startswith("Cleared:")


async def test_open_and_close_reach_the_webhook():
    async with Receiver() as receiver, AlertSender(receiver.url) as sender:
        sender.send(transition("opened"))
        sender.send(transition("closed"))
        await wait_until(lambda: len(receiver.bodies) == 2)
    assert [b["blocks"][0]["text"]["text"][:1] for b in receiver.bodies] == ["🔴", "✅"]
    assert all(t.startswith("application/json") for t in receiver.content_types)
    assert sender.sent == 2


async def test_failures_are_logged_once_and_recovery_once(caplog):
    caplog.set_level(logging.INFO, logger="tracklayer.diagnostics.alerts")
    async with Receiver() as receiver, AlertSender(receiver.url) as sender:
        receiver.status = 500
        for _ in range(3):
            sender.send(transition())
        await wait_until(lambda: len(receiver.bodies) == 3)
        await sender.queue.join()
        receiver.status = 200
        sender.send(transition("closed"))
        sender.send(transition("closed"))
        await wait_until(lambda: sender.sent == 2)
    messages = [r.getMessage() for r in caplog.records]
    failed = [m for m in messages if m.startswith("alert webhook failed")]
    assert len(failed) == 1
    assert "HTTP 500" in caplog.records[messages.index(failed[0])].fields["error"]  # type: ignore[attr-defined]
    assert messages.count("alert webhook works again") == 1
    assert not any("secret" in m for m in messages), "the webhook URL (a secret) is not logged"


async def test_unreachable_webhook_is_logged_once(caplog):
    caplog.set_level(logging.INFO, logger="tracklayer.diagnostics.alerts")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with AlertSender(f"http://127.0.0.1:{port}/hook") as sender:
        for _ in range(3):
            sender.send(transition())
        await asyncio.wait_for(sender.queue.join(), 5)
    assert [r.getMessage() for r in caplog.records].count(
        "alert webhook failed; further failures are not logged until it works"
    ) == 1


async def test_a_slow_webhook_never_blocks_the_sender(caplog):
    async with Receiver() as receiver:
        receiver.delay = 0.6
        sender = AlertSender(receiver.url, timeout=0.2, queue_size=3)
        async with sender:
            started = time.perf_counter()
            for _ in range(50):
                sender.send(transition())
            assert time.perf_counter() - started < 0.05  # send() only queues
            assert sender.dropped >= 46 and sender.queue.qsize() <= 3
            await wait_until(lambda: sender.queue.qsize() == 0, timeout=5)
        assert sender.sent == 0  # every POST hit the 0.2 s timeout
    assert any(r.getMessage().startswith("alert webhook failed") for r in caplog.records)
    assert any(r.getMessage().startswith("alert queue full") for r in caplog.records)
