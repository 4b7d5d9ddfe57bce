"""The unmodified ``@segment/analytics-next`` (its standalone bundle from npm) runs
first-party against the daemon: it loads its settings from ``/v1/projects/{key}/settings``,
and that document points every event back here. Plus the settings document and
``/v1/m`` over plain HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import re

import aiohttp
import pytest

from tests.browser.chromium import Chromium, chromium_path
from tests.browser.shop import ShopServer, analytics_next_bundle
from tests.harness import SDK_KEY, WRITE_KEY, base_config, start_app, webhook


@pytest.fixture
async def shop():
    chromium_path()  # skip (or fail in CI) before any daemon starts
    analytics_next_bundle()
    server = await ShopServer().start()
    server.write_key = WRITE_KEY
    yield server
    await server.stop()


async def test_analytics_next_order_completed_is_delivered(tmp_path, hook, shop):
    config = base_config(
        tmp_path,
        server={"listen": "127.0.0.1:0", "cors_origins": [shop.origin]},
        destinations=[webhook(hook.url)],
    )
    app = await start_app(config)
    shop.daemon = app.url
    try:
        async with Chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"{shop.origin}/analytics-next.html?fbclid=AjsClick_42")
            events = await hook.wait_for(3)  # page, identify, Order Completed
            version = await page.evaluate("window.analytics.VERSION")
        await asyncio.sleep(0.3)
        assert hook.problems == []
        by_name = {event["name"]: event for event in events}
        assert set(by_name) == {"page_view", "identify", "purchase"}, by_name.keys()
        purchase = by_name["purchase"]
        assert purchase["source"] == "segment"
        assert purchase["source_name"] == "Order Completed"
        assert purchase["event_id"] == "purchase:o-ajs-1"
        assert purchase["properties"]["revenue"] == 25.5
        assert purchase["context"]["library"] == "analytics.js"
        assert re.fullmatch(r"fb\.1\.\d{13}\.AjsClick_42", purchase["user"]["fbc"])
        assert purchase["user"]["ip"] == "127.0.0.1"
        assert purchase["user"]["user_id"] == "user-ajs-1"
        identify = by_name["identify"]
        assert identify["user"]["email"] == hashlib.sha256(b"grace@example.com").hexdigest()
        assert version.startswith("1.")  # the npm package ran, not a stand-in
    finally:
        await app.stop()


# the settings document and /v1/m ------------------------------------------------------


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, await response.json(content_type=None), dict(response.headers)


async def test_settings_point_analytics_js_back_at_this_host(tmp_path):
    app = await start_app(base_config(tmp_path))
    try:
        host = app.url.removeprefix("http://")
        origin = {"Origin": "https://shop.example.com"}
        status, document, headers = await get(f"{app.url}/v1/projects/{WRITE_KEY}/settings", origin)
        assert status == 200
        segment = document["integrations"]["Segment.io"]
        assert segment["apiKey"] == WRITE_KEY
        assert segment["apiHost"] == f"{host}/v1"
        assert segment["protocol"] == "http"
        assert list(document["integrations"]) == ["Segment.io"]  # no bundles to load
        assert headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
        assert "max-age=" in headers["Cache-Control"]

        # the SDK source's key works too; behind a trusted proxy, the public name is used
        forwarded = {"X-Forwarded-Host": "t.shop.example.com", "X-Forwarded-Proto": "https"}
        status, document, _ = await get(f"{app.url}/v1/projects/{SDK_KEY}/settings", forwarded)
        assert status == 200
        segment = document["integrations"]["Segment.io"]
        assert (segment["apiHost"], segment["protocol"]) == ("t.shop.example.com/v1", "https")

        status, body, _ = await get(f"{app.url}/v1/projects/nope/settings")
        assert status == 404
        assert body["code"] == "not_found"
    finally:
        await app.stop()


async def test_forwarded_host_is_ignored_from_an_untrusted_peer(tmp_path):
    config = base_config(tmp_path)
    config["server"]["trusted_proxies"] = ["10.0.0.0/8"]  # not the test's 127.0.0.1
    app = await start_app(config)
    try:
        forwarded = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
        _, document, _ = await get(f"{app.url}/v1/projects/{WRITE_KEY}/settings", forwarded)
        segment = document["integrations"]["Segment.io"]
        assert segment["apiHost"] == app.url.removeprefix("http://") + "/v1"
        assert segment["protocol"] == "http"
    finally:
        await app.stop()


async def test_remote_metrics_are_accepted_and_preflights_name_the_headers(tmp_path):
    app = await start_app(base_config(tmp_path))
    try:
        origin = {"Origin": "https://shop.example.com", "Content-Type": "text/plain"}
        metrics = {"series": [{"type": "Counter", "metric": "analytics_js.invoke", "value": 1}]}
        status, body, headers = await app.post("/v1/m", metrics, key=None, headers=origin)
        assert (status, body) == (200, {"success": True})
        assert headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
        async with aiohttp.ClientSession() as session:
            for path in ("/v1/m", "/v1/t", "/v1/events", f"/v1/projects/{WRITE_KEY}/settings"):
                preflight = {
                    "Origin": "https://shop.example.com",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization,content-type,x-retry-count",
                }
                async with session.options(app.url + path, headers=preflight) as response:
                    assert response.status == 204, path
                    allowed = response.headers["Access-Control-Allow-Headers"]
                    for name in ("Content-Type", "Authorization", "X-Retry-Count"):
                        assert name in allowed, (path, allowed)
    finally:
        await app.stop()
