"""Headless Chromium for tests, driven over the DevTools protocol with aiohttp's WebSocket
client (already a dependency), so the browser tests need no Node driver and no new Python
package: Debian's ``chromium`` is the only extra.

Flags: those this machine needs (no sandbox as root; background networking, component
updates and sync off, since the closed network refuses their connections), plus a fresh
profile per browser, so cookies and localStorage start empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import tempfile
import time
from typing import Any

import aiohttp
import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-default-browser-check",
    "--remote-debugging-port=0",
)
_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")


def chromium_path() -> str:
    """The Chromium binary. A developer machine without it skips the browser tests; CI
    (``CI=true``) fails instead, since .ci/run installs it."""
    path = (
        os.environ.get("TRACKLAYER_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if path:
        return path
    reason = "Chromium is not installed (apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason + "; .ci/run should have installed it")
    pytest.skip(reason)


class BrowserError(AssertionError):
    """A page threw, or the protocol answered with an error."""


class Page:
    """One tab: navigate, evaluate JavaScript, read what the page logged."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session
        self.console: list[str] = []
        self.errors: list[str] = []
        self._loaded = asyncio.Event()

    async def call(self, method: str, **params: Any) -> dict:
        return await self.browser.call(method, session=self.session, **params)

    def on_event(self, method: str, params: dict) -> None:
        if method == "Page.loadEventFired":
            self._loaded.set()
        elif method == "Runtime.consoleAPICalled":
            args = params.get("args", [])
            self.console.append(" ".join(str(a.get("value", a.get("description"))) for a in args))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(
                details.get("exception", {}).get("description") or details.get("text", "")
            )

    async def goto(self, url: str, timeout: float = 10.0) -> None:
        self._loaded.clear()
        answer = await self.call("Page.navigate", url=url)
        if answer.get("errorText"):
            raise BrowserError(f"navigating to {url}: {answer['errorText']}")
        await asyncio.wait_for(self._loaded.wait(), timeout)

    async def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` (promises awaited), as JSON-compatible data."""
        answer = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression[:80]!r} threw: {text}")
        return answer.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        """Poll until ``expression`` is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(
                    f"{expression!r} stayed falsy; console: {self.console}; errors: {self.errors}"
                )
            await asyncio.sleep(0.05)


class Chromium:
    """``async with Chromium() as browser: page = await browser.new_page()``."""

    def __init__(self) -> None:
        self.binary = chromium_path()
        self.profile = tempfile.mkdtemp(prefix="tracklayer-chromium-")
        self.process: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self._socket: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None
        self._drainer: asyncio.Task | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._pages: dict[str, Page] = {}

    async def __aenter__(self) -> Chromium:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self, timeout: float = 20.0) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.binary,
            *FLAGS,
            f"--user-data-dir={self.profile}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        url = await asyncio.wait_for(self._devtools_url(), timeout)
        self._session = aiohttp.ClientSession()
        self._socket = await self._session.ws_connect(url, max_msg_size=0)
        self._reader = asyncio.create_task(self._read(), name="chromium-cdp")

    async def _devtools_url(self) -> str:
        assert self.process and self.process.stderr
        seen = b""
        while True:
            line = await self.process.stderr.readline()
            if not line:
                raise BrowserError(f"chromium exited before listening: {seen[-2000:]!r}")
            seen += line
            match = _LISTENING.search(line)
            if match:
                # keep draining stderr so a chatty browser never blocks on a full pipe
                self._drainer = asyncio.create_task(self._drain(), name="chromium-stderr")
                return match.group(1).decode()

    async def _drain(self) -> None:
        assert self.process and self.process.stderr
        with contextlib.suppress(Exception):
            while await self.process.stderr.read(65536):
                pass

    async def _read(self) -> None:
        assert self._socket
        async for message in self._socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if "id" in data:
                future = self._waiting.pop(data["id"], None)
                if future and not future.done():
                    future.set_result(data)
            elif data.get("sessionId") in self._pages:
                self._pages[data["sessionId"]].on_event(data["method"], data.get("params", {}))
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(BrowserError("the DevTools connection closed"))

    async def call(self, method: str, session: str | None = None, **params: Any) -> dict:
        assert self._socket
        message_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._waiting[message_id] = future
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        await self._socket.send_str(json.dumps(message))
        answer = await asyncio.wait_for(future, 30)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    async def new_page(self) -> Page:
        target = await self.call("Target.createTarget", url="about:blank")
        attached = await self.call(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        page = Page(self, attached["sessionId"])
        self._pages[page.session] = page
        await page.call("Page.enable")
        await page.call("Runtime.enable")
        return page

    async def close(self) -> None:
        if self._socket and not self._socket.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.call("Browser.close"), 5)
            await self._socket.close()
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        if self._session:
            await self._session.close()
        if self.process and self.process.returncode is None:
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._drainer:
            self._drainer.cancel()
            with contextlib.suppress(BaseException):
                await self._drainer
        shutil.rmtree(self.profile, ignore_errors=True)
