"""The live debugger page in headless Chromium, driven over the DevTools protocol.

Why DevTools rather than ``--dump-dom`` with a virtual-time budget: the page holds an open
EventSource, and the test must send its event only once the page is connected, then read the
DOM once the outcome has arrived. With DevTools the test waits on the page's own state
(``body[data-state=live]``), acts, and polls the DOM: no guessed budget, no race. aiohttp's
WebSocket client speaks the protocol, so nothing new is installed.

Skipped when Debian's ``chromium`` is absent on a developer machine; under CI=true a missing
browser fails the run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.harness import ADMIN_TOKEN, base_config, start_app, webhook
from tests.test_live import AUTH, Stream, send_purchase, settle_records

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--window-size=1280,900",
]

if CHROMIUM is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("chromium is required under CI (apt-get install chromium)")
    pytest.skip("chromium not installed (apt-get install chromium)", allow_module_level=True)


class Page:
    """One browser tab over the DevTools protocol."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future] = {}
        self.console: list[str] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.socket:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self.waiting:
                self.waiting.pop(data["id"]).set_result(data)
            elif data.get("method") == "Runtime.exceptionThrown":
                self.console.append(json.dumps(data["params"]["exceptionDetails"])[:500])
            elif data.get("method") == "Runtime.consoleAPICalled":
                args = data["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", "")) for a in args))

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.waiting[number] = future
        await self.socket.send_str(json.dumps({"id": number, "method": method, "params": params}))
        answer = await asyncio.wait_for(future, 15)
        if "error" in answer:
            raise AssertionError(f"{method}: {answer['error']}")
        return answer["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page error: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                html = await self.evaluate("document.body.innerText")
                raise AssertionError(f"{expression!r} never held; page: {html[:1500]}")
            await asyncio.sleep(0.05)


@pytest.fixture
async def browser(tmp_path):
    profile = tmp_path / "chromium-profile"
    process = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    session = aiohttp.ClientSession()
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text().strip()):
            assert process.poll() is None, "chromium exited at start"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        async with session.get(f"http://127.0.0.1:{port}/json/list") as answer:
            targets = await answer.json()
        target = next(t for t in targets if t["type"] == "page")
        socket = await session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(socket)
        await page.send("Runtime.enable")
        yield page
        page.reader.cancel()
        await socket.close()
    finally:
        await session.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


CARD = "document.querySelector('[data-event-id=\"{id}\"]')"


async def test_the_page_shows_an_event_and_its_destination_outcome(tmp_path, hook, browser):
    app = await start_app(base_config(tmp_path, destinations=[webhook(hook.url)]))
    page = browser
    try:
        await page.send("Page.navigate", url=f"{app.url}/debugger?token={ADMIN_TOKEN}")
        await page.wait_for("document.body && document.body.dataset.state === 'live'")
        # the token went into the HttpOnly cookie and out of the address bar
        assert "token" not in await page.evaluate("location.href")
        assert "tl_admin" not in await page.evaluate("document.cookie")

        async with Stream(app.url, AUTH) as stream:
            delivered = await send_purchase(app, hook)
            await settle_records(app, hook, stream, delivered)
        event_id = delivered["event_id"]
        card = CARD.format(id=event_id)
        row = f"{card}.querySelector('tr[data-destination=\"hooks\"]')"
        await page.wait_for(f"{row} && {row}.dataset.outcome === 'accepted'")
        names = await page.evaluate(f"{card}.querySelector('.names').textContent")
        assert names == "Order Completed → purchase"
        assert await page.evaluate(f"{card}.querySelector('.source').textContent") == "segment"
        assert "new" in await page.evaluate(f"{card}.querySelector('.dedup').textContent")
        assert "queued for hooks" in await page.evaluate(
            f"{card}.querySelector('.routing').textContent"
        )
        assert await page.evaluate(f"{row}.querySelector('.outcome').textContent") == "accepted"

        # an observe-mode outcome with the platform's message, a score and the payload
        app.app.live.publish(
            {
                "type": "outcome",
                "at": "2026-12-03T09:00:00Z",
                "event_id": event_id,
                "name": "purchase",
                "source": "segment",
                "destination": "meta",
                "mode": "observe",
                "outcome": "observed",
                "code": "",
                "message": "validated; not sent (observe mode)",
                "score": 6.2,
                "payload": {"data": [{"event_name": "Purchase", "user_data": {"em": ["ab12"]}}]},
            }
        )
        meta = f"{card}.querySelector('tr[data-destination=\"meta\"]')"
        await page.wait_for(f"{meta} && {meta}.dataset.outcome === 'observed'")
        assert await page.evaluate(f"{meta}.dataset.mode") == "observe"
        assert await page.evaluate(f"{meta}.querySelector('.score').textContent") == "6.2 / 10"
        assert "not sent" in await page.evaluate(f"{meta}.querySelector('.message').textContent")
        payload = await page.evaluate(f"{meta}.querySelector('.payload pre').textContent")
        assert json.loads(payload)["data"][0]["user_data"]["em"] == ["ab12"]

        # filter by event: the card hides, and shows again when the filter is cleared
        await page.evaluate(
            "document.getElementById('f-event').value = 'lead';"
            "document.getElementById('apply').click()"
        )
        assert await page.evaluate(f"{card}.hidden") is True
        await page.wait_for("document.body.dataset.state === 'live'")
        await page.evaluate(
            "document.getElementById('f-event').value = '';document.getElementById('apply').click()"
        )
        assert await page.evaluate(f"{card}.hidden") is False
        await page.wait_for("document.body.dataset.state === 'live'")

        # pause holds records back; resume shows them, with a missed-records notice
        await page.evaluate("document.getElementById('pause').click()")
        assert await page.evaluate("document.body.dataset.state") == "paused"
        app.app.live.publish(
            {
                "type": "outcome",
                "event_id": "while-paused",
                "name": "lead",
                "source": "web",
                "destination": "hooks",
                "mode": "live",
                "outcome": "rejected",
                "code": "400",
                "message": "field x is bad",
                "score": None,
                "payload": None,
            }
        )
        app.app.live.publish({"type": "missed", "count": 7})
        await asyncio.sleep(0.3)
        assert await page.evaluate(CARD.format(id="while-paused")) is None
        await page.evaluate("document.getElementById('pause').click()")
        paused_card = CARD.format(id="while-paused")
        await page.wait_for(f"{paused_card} !== null")
        assert "field x is bad" in await page.evaluate(f"{paused_card}.innerText")
        notice = await page.wait_for("document.querySelector('.notice.missed')?.textContent")
        assert notice.startswith("Missed 7 records")
        assert page.console == [], page.console

        shot = await page.send("Page.captureScreenshot", format="png")
        Path(tmp_path / "debugger.png").write_bytes(base64.b64decode(shot["data"]))
    finally:
        with contextlib.suppress(Exception):
            await page.send("Page.navigate", url="about:blank")
        await app.stop()
