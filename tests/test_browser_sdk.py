"""The browser SDK, in headless Chromium against a real daemon: a shop page on one loopback
origin loads ``/sdk.js`` from the daemon on another, so CORS, the first-party cookie and
unload-safe delivery are exercised as a browser does them. Also ``/sdk.js``'s own HTTP
behaviour (caching, CORS) and the SDK's size."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import re
from pathlib import Path

import aiohttp
import pytest

from tests.browser.chromium import Chromium, chromium_path
from tests.browser.shop import ShopServer
from tests.harness import SDK_KEY, base_config, start_app, webhook

SDK = Path(__file__).parent.parent / "tracklayer" / "sources" / "sdk.js"
FBCLID = "IwAR2xY_Zq-AbC9dEf"  # mixed case: Meta wants it exactly as clicked


@pytest.fixture
async def shop():
    chromium_path()  # skip (or fail in CI) before any daemon starts
    server = await ShopServer().start()
    server.write_key = SDK_KEY
    yield server
    await server.stop()


def config_for(tmp_path, shop, hook, **sections):
    return base_config(
        tmp_path,
        server={"listen": "127.0.0.1:0", "cors_origins": [shop.origin]},
        destinations=[webhook(hook.url)],
        **sections,
    )


def named(events: list[dict], name: str) -> list[dict]:
    return [event for event in events if event["name"] == name]


async def test_page_purchase_is_delivered_once_with_fbc_and_the_id_the_page_got(
    tmp_path, hook, shop
):
    app = await start_app(config_for(tmp_path, shop, hook))
    shop.daemon = app.url
    try:
        async with Chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"{shop.origin}/shop.html?utm_source=fb&fbclid={FBCLID}")
            purchase_id = await page.wait_for("window.purchaseId")
            assert purchase_id == "purchase:o-web-1"
            await hook.wait_for(2)  # the queued page view and the purchase
            first_id = await page.evaluate("tracklayer.anonymousId()")

            # The thank-you page loaded again: the same order fires again, and the
            # visitor is the same one, from localStorage ...
            await page.goto(f"{shop.origin}/shop.html")
            await page.wait_for("window.purchaseId")
            assert await page.evaluate("tracklayer.anonymousId()") == first_id
            # ... and from the host's own cookie once script storage is wiped (what
            # Safari's ITP does after 7 days), the cookie the host set on its answers.
            assert f"tl_aid={first_id}" in await page.evaluate("document.cookie")
            await page.evaluate("localStorage.clear()")
            await page.goto(f"{shop.origin}/blank.html")
            await page.wait_for("window.tracklayer.loaded")
            assert await page.evaluate("tracklayer.anonymousId()") == first_id
            assert page.errors == []

        await hook.wait_for(3)  # two page views and one purchase
        await asyncio.sleep(0.4)  # nothing more may arrive
        assert hook.problems == []
        purchases = named(hook.accepted_events, "purchase")
        assert len(purchases) == 1, "the repeated purchase of o-web-1 must not be delivered"
        purchase = purchases[0]
        assert purchase["event_id"] == purchase_id
        assert purchase["source"] == "web"
        assert purchase["properties"]["value"] == 42
        assert re.fullmatch(rf"fb\.1\.\d{{13}}\.{FBCLID}", purchase["user"]["fbc"])
        assert purchase["user"]["anonymous_id"] == first_id
        assert purchase["user"]["ip"] == "127.0.0.1"  # the browser's connection
        assert purchase["user"]["user_agent"].startswith("Mozilla/5.0")
        assert purchase["context"]["page_url"].endswith(f"fbclid={FBCLID}")
        page_views = named(hook.accepted_events, "page_view")
        assert {e["user"]["anonymous_id"] for e in page_views} == {first_id}
        assert page_views[0]["properties"]["title"] == "Thank you for your order"
    finally:
        await app.stop()


async def test_a_failed_send_is_retried_on_the_next_page_load(tmp_path, hook, shop):
    config = config_for(tmp_path, shop, hook)
    app = await start_app(config)
    shop.daemon = app.url
    try:
        async with Chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"{shop.origin}/blank.html")
            await page.wait_for("window.tracklayer.loaded")
            await app.stop()  # the tracking host is down when the order happens

            event_id = await page.evaluate(
                "tracklayer.track('Order Completed', {order_id: 'o-retry', value: 9.5,"
                " currency: 'EUR'})"
            )
            assert event_id == "purchase:o-retry"
            # the send fails; the event stays kept for the next page
            await asyncio.sleep(0.3)
            kept = await page.evaluate("JSON.parse(localStorage.tl_pending)")
            assert [e["event_id"] for e in kept] == ["purchase:o-retry"]
            await asyncio.sleep(0.2)
            assert hook.requests == []

            app = await start_app(config)  # back, on another port: the page follows it
            shop.daemon = app.url
            await page.goto(f"{shop.origin}/blank.html")
            events = await hook.wait_for(1)
            await page.wait_for("JSON.parse(localStorage.tl_pending).length === 0")
        assert [e["event_id"] for e in events] == ["purchase:o-retry"]
        assert events[0]["source_name"] == "Order Completed"
        assert events[0]["properties"]["currency"] == "EUR"
        assert hook.problems == []
    finally:
        await app.stop()


async def test_identify_consent_and_platform_cookies_travel_with_events(tmp_path, hook, shop):
    consent = {"purposes": {"ads": ["Advertising"], "analytics": ["Analytics"]}}
    app = await start_app(config_for(tmp_path, shop, hook, consent=consent))
    shop.daemon = app.url
    try:
        async with Chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"{shop.origin}/blank.html")
            await page.wait_for("window.tracklayer.loaded")
            await page.evaluate(
                "document.cookie = '_fbp=fb.1.1700000000000.1234567890';"
                "document.cookie = '_ttp=ttp-cookie-1'; document.cookie = '_ga=GA1.1.42.1700000000'"
            )
            await page.evaluate(
                "tracklayer.identify('cust-7', {email: 'Ada@Example.com', firstName: 'Ada'})"
            )
            await page.evaluate("tracklayer.consent({ads: true, analytics: false})")
            own_id = await page.evaluate(
                "tracklayer.track('Newsletter Joined', {list: 'weekly'}, {event_id: 'nl-1'})"
            )
            unknown_order = await page.evaluate(
                "tracklayer.track('Gift Card Bought', {order_id: 'g-1'})"
            )
            assert own_id == "nl-1"
            # a name the SDK cannot map gets an id of its own, sent explicitly
            assert re.fullmatch(r"[0-9a-f-]{36}", unknown_order)
            events = await hook.wait_for(3)  # consent_updated is stored, delivered nowhere
        await asyncio.sleep(0.3)
        by_name = {e["name"]: e for e in events}
        assert set(by_name) == {"identify", "newsletter_joined", "gift_card_bought"}
        identify = by_name["identify"]
        assert identify["user"]["user_id"] == "cust-7"
        # hashed (pii: hashed), never the address itself
        assert identify["user"]["email"] == hashlib.sha256(b"ada@example.com").hexdigest()
        assert identify["user"]["first_name"] == hashlib.sha256(b"ada").hexdigest()
        newsletter = by_name["newsletter_joined"]
        assert newsletter["event_id"] == "nl-1"
        assert newsletter["user"]["user_id"] == "cust-7"
        # stated consent travels (and ads granted keeps the ad platforms' ids on the event)
        assert newsletter["consent"] == {"ads": True, "analytics": False}
        assert newsletter["user"]["fbp"] == "fb.1.1700000000000.1234567890"
        assert newsletter["user"]["click_ids"]["ttp"] == "ttp-cookie-1"
        assert newsletter["user"]["click_ids"]["ga"] == "GA1.1.42.1700000000"
        assert by_name["gift_card_bought"]["event_id"] == unknown_order
    finally:
        await app.stop()


# /sdk.js over plain HTTP --------------------------------------------------------------


async def test_sdk_js_is_cacheable_and_cors_is_per_origin(tmp_path):
    app = await start_app(base_config(tmp_path))
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            headers = {"Origin": "https://shop.example.com", "Accept-Encoding": "gzip, br"}
            async with session.get(app.url + "/sdk.js", headers=headers) as response:
                assert response.status == 200
                body = await response.read()
                assert response.headers["Content-Type"].startswith("application/javascript")
                assert response.headers["Content-Encoding"] == "gzip"
                assert gzip.decompress(body) == SDK.read_bytes()
                assert "max-age=" in response.headers["Cache-Control"]
                etag = response.headers["ETag"]
                allowed = response.headers["Access-Control-Allow-Origin"]
                assert allowed == "https://shop.example.com"
                assert "Accept-Encoding" in response.headers["Vary"]
            async with session.get(
                app.url + "/sdk.js", headers={"If-None-Match": etag}
            ) as response:
                assert response.status == 304
                assert await response.read() == b""
            headers = {"Origin": "https://evil.example", "Accept-Encoding": "identity"}
            async with session.get(app.url + "/sdk.js", headers=headers) as response:
                assert response.status == 200
                assert "Access-Control-Allow-Origin" not in response.headers
                assert "Content-Encoding" not in response.headers
                assert await response.read() == SDK.read_bytes()
    finally:
        await app.stop()


async def test_native_answers_set_the_visitor_cookie_for_the_shop_domain(tmp_path):
    app = await start_app(base_config(tmp_path))
    try:
        event = {"name": "page_view", "user": {"anonymous_id": "a-123"}}
        status, _, headers = await app.post(
            "/v1/events",
            {"writeKey": SDK_KEY, "batch": [event]},
            key=None,
            headers={
                "Origin": "https://www.shop.example.com",
                "X-Forwarded-Host": "t.shop.example.com",
                "X-Forwarded-Proto": "https",
                "Content-Type": "text/plain",
            },
        )
        assert status == 200
        cookie = headers["Set-Cookie"]
        assert cookie.startswith("tl_aid=a-123;")
        assert "Domain=shop.example.com" in cookie
        assert "Max-Age=34560000" in cookie
        assert "Secure" in cookie and "SameSite=Lax" in cookie and "HttpOnly" not in cookie
        # a server calling the native endpoint (no Origin) gets no cookie
        status, _, headers = await app.post("/v1/events", event, key=SDK_KEY)
        assert status == 200 and "Set-Cookie" not in headers
    finally:
        await app.stop()


def test_sdk_is_small():
    size = len(gzip.compress(SDK.read_bytes(), 9))
    assert size < 5 * 1024, f"sdk.js is {size} bytes gzipped"
