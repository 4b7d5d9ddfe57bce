"""The optional ``alerts.webhook``: a Slack-compatible message (``text`` plus ``blocks``) when
an anomaly opens and when it closes.

``send()`` never waits: messages go into a bounded queue that one task drains, each POST
with a timeout. A full queue drops the newest message (counted); a failing webhook is
logged once, and once more when it works again, never per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
import msgspec

from tracklayer.diagnostics.anomaly import Transition

log = logging.getLogger("tracklayer.diagnostics.alerts")

_encode = msgspec.json.Encoder().encode

TITLES = {
    "volume_drop": "Volume drop",
    "duplicate_spike": "Duplicate spike",
    "missing_identifier": "Missing identifier",
    "missing_consent": "Missing consent",
    "new_rejection_code": "New rejection code",
    "rejection_rate": "Rejection rate up",
}
HEADER_LIMIT = 150  # Slack: a header block's plain_text is at most 150 characters
SECTION_LIMIT = 3000  # and a section's text at most 3000


def _escape(text: str) -> str:
    """Slack reads ``&``, ``<`` and ``>`` as markup (``<!channel>`` would ping everyone)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def message(transition: Transition) -> dict[str, Any]:
    """The Slack incoming-webhook body for one transition; ``text`` is the notification
    fallback, ``blocks`` what the channel shows."""
    anomaly = transition.anomaly
    title = TITLES.get(anomaly.kind, anomaly.kind)
    subject = f" ({anomaly.subject})" if anomaly.subject else ""
    where = f"{anomaly.event} → {anomaly.destination}"
    if transition.change == "opened":
        header = f"🔴 {title}{subject}: {where}"
        body = anomaly.detail
    else:
        header = f"✅ Resolved: {title}{subject}: {where}"
        body = anomaly.close_detail or anomaly.detail
    opened = anomaly.to_json()["opened_at"]
    context = f"TrackLayer · {anomaly.kind} · destination {anomaly.destination} · event" + (
        f" {anomaly.event} · opened {opened}"
    )
    return {
        "text": _cut(f"{header}. {body}", SECTION_LIMIT),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _cut(header, HEADER_LIMIT)}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _cut(_escape(body), SECTION_LIMIT)},
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(context)}]},
        ],
    }


class AlertSender:
    """``async with AlertSender(url):`` runs the sender task; ``send()`` queues a message."""

    def __init__(self, url: str, timeout: float = 10.0, queue_size: int = 100) -> None:
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(queue_size)
        self.dropped = 0
        self.sent = 0
        self._failing = False
        self._task: asyncio.Task | None = None

    def send(self, transition: Transition) -> None:
        """Queue the message for ``transition``; never blocks the caller."""
        try:
            self.queue.put_nowait(_encode(message(transition)))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1:
                log.warning(
                    "alert queue full; dropping alerts until the webhook catches up",
                    extra={"fields": {"queued": self.queue.qsize()}},
                )

    async def __aenter__(self) -> AlertSender:
        self._task = asyncio.create_task(self._run(), name="alerts")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, drain_seconds: float = 2.0) -> None:
        """Give queued messages a moment to go out, then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), drain_seconds)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        headers = {"Content-Type": "application/json"}
        async with aiohttp.ClientSession(timeout=self.timeout) as session:
            while True:
                body = await self.queue.get()
                try:
                    await self._post(session, body, headers)
                finally:
                    self.queue.task_done()

    async def _post(self, session: aiohttp.ClientSession, body: bytes, headers: dict) -> None:
        try:
            async with session.post(self.url, data=body, headers=headers) as response:
                text = (await response.text(errors="replace"))[:200]
                problem = f"HTTP {response.status}: {text}" if response.status >= 300 else ""
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            problem = f"{type(error).__name__}: {error}".rstrip(": ")
        if problem:
            if not self._failing:
                self._failing = True
                log.warning(
                    "alert webhook failed; further failures are not logged until it works",
                    extra={"fields": {"error": problem}},
                )
            return
        self.sent += 1
        if self._failing:
            self._failing = False
            log.info("alert webhook works again")
