"""The shop's own web server in browser tests: pages on one loopback port that load the
SDK (or analytics.js) from the daemon on another, so every call is cross-origin, as from
``shop.example.com`` to ``t.shop.example.com``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from aiohttp import web

HERE = Path(__file__).parent
PAGES = HERE / "pages"
ANALYTICS_NEXT = HERE / "node_modules" / "@segment" / "analytics-next" / "dist" / "umd"


def analytics_next_bundle() -> Path:
    """analytics-next's standalone (snippet) bundle from npm; skipped without it on a
    developer machine, a failure in CI (``.ci/run`` runs ``npm ci`` here)."""
    bundle = ANALYTICS_NEXT / "standalone.js"
    if bundle.is_file():
        return bundle
    reason = "@segment/analytics-next is not installed (cd tests/browser && npm ci)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason + "; .ci/run should have installed it")
    pytest.skip(reason)


class ShopServer:
    """``{{daemon}}`` and ``{{write_key}}`` in a page become the current values, so a test
    can restart the daemon elsewhere and the next page load follows it."""

    def __init__(self) -> None:
        self.daemon = ""
        self.write_key = ""
        self.origin = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> ShopServer:
        app = web.Application()
        app.router.add_get("/ajs/{name}", self._analytics_next)
        app.router.add_get("/{page}", self._page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.origin = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _page(self, request: web.Request) -> web.Response:
        path = PAGES / request.match_info["page"]
        if path.suffix != ".html" or not path.is_file():
            raise web.HTTPNotFound()
        html = path.read_text()
        html = html.replace("{{daemon}}", self.daemon).replace("{{write_key}}", self.write_key)
        return web.Response(
            text=html, content_type="text/html", headers={"Cache-Control": "no-store"}
        )

    async def _analytics_next(self, request: web.Request) -> web.StreamResponse:
        path = ANALYTICS_NEXT / request.match_info["name"]
        if path.parent != ANALYTICS_NEXT or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)
