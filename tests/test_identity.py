"""The identity graph end to end: what a browser showed earlier enriches a server event."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

from tests.harness import base_config, start_app, webhook


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def page(anonymous_id: str, url: str, when: float | None = None, **context) -> dict:
    message = {
        "type": "page",
        "anonymousId": anonymous_id,
        "messageId": f"page-{anonymous_id}-{url[-6:]}",
        "properties": {"url": url},
        "context": {
            "page": {"url": url},
            "ip": "203.0.113.7",
            "userAgent": "Mozilla/5.0 (Test)",
            **context,
        },
    }
    if when is not None:
        message["timestamp"] = iso(when)
    return message


def identify(anonymous_id: str, user_id: str, **traits) -> dict:
    return {
        "type": "identify",
        "anonymousId": anonymous_id,
        "userId": user_id,
        "messageId": f"identify-{user_id}",
        "traits": traits,
    }


def order(user_id: str, order_id: str, **extra) -> dict:
    message = {
        "type": "track",
        "userId": user_id,
        "event": "Order Completed",
        "messageId": f"order-{order_id}",
        "properties": {"order_id": order_id, "revenue": 99.0, "currency": "USD"},
    }
    message.update(extra)
    return message


async def purchase_for(app, hook, messages: list[dict], count: int) -> dict:
    for message in messages:
        status, body, _ = await app.post("/v1/batch", {"batch": [message]})
        assert status == 200, body
    events = await hook.wait_for(count)
    return next(e for e in events if e["name"] == "purchase")


async def test_server_purchase_gets_browser_click_and_identify_traits(tmp_path, hook):
    app = await start_app(base_config(tmp_path, destinations=[webhook(hook.url)]))
    try:
        clicked_at = time.time() - 3600
        purchase = await purchase_for(
            app,
            hook,
            [
                page(
                    "anon-1", "https://shop.example.com/p?fbclid=IwAR0Ab_Cd-E&gclid=Gx1", clicked_at
                ),
                identify("anon-1", "user-1", email="Ada@Example.com", phone="(415) 555-0100"),
                order("user-1", "o-1"),  # server-side: only the user id
            ],
            3,
        )
        user = purchase["user"]
        assert user["email"] == sha("ada@example.com")
        assert user["phone"] == sha("14155550100")  # Meta: digits with country code
        assert user["external_id"] == sha("user-1")
        # fbc from the click, with the click's own time, the fbclid's case kept
        assert user["fbc"] == f"fb.1.{int(clicked_at * 1000)}.IwAR0Ab_Cd-E"
        assert user["click_ids"]["gclid"] == "Gx1"
        assert user["ip"] == "203.0.113.7"
        assert user["user_agent"] == "Mozilla/5.0 (Test)"
    finally:
        await app.stop()


async def test_expired_click_is_not_attached_and_own_values_win(tmp_path, hook):
    app = await start_app(base_config(tmp_path, destinations=[webhook(hook.url)]))
    try:
        eight_days_ago = time.time() - 8 * 86400
        purchase = await purchase_for(
            app,
            hook,
            [
                page(
                    "anon-2",
                    "https://shop.example.com/?fbclid=OLDclick&gclid=Gstill",
                    eight_days_ago,
                ),
                identify("anon-2", "user-2", email="graph@example.com"),
                order("user-2", "o-2", context={"traits": {"email": "own@example.com"}}),
            ],
            3,
        )
        user = purchase["user"]
        assert "fbc" not in user or user["fbc"] == ""  # fbclid: 7-day window, expired
        assert user["click_ids"].get("fbclid") is None
        assert user["click_ids"]["gclid"] == "Gstill"  # gclid: 90 days, still valid
        assert user["email"] == sha("own@example.com")  # the event's own email wins
    finally:
        await app.stop()


async def test_profiles_survive_a_restart(tmp_path, hook):
    config = base_config(tmp_path, destinations=[webhook(hook.url)])
    app = await start_app(config)
    await app.post("/v1/batch", {"batch": [identify("anon-3", "user-3", email="kept@example.com")]})
    await hook.wait_for(1)
    await app.stop()

    app = await start_app(config)
    try:
        purchase = await purchase_for(app, hook, [order("user-3", "o-3")], 2)
        assert purchase["user"]["email"] == sha("kept@example.com")
    finally:
        await app.stop()


async def test_two_visitors_with_one_email_are_merged(tmp_path, hook):
    app = await start_app(base_config(tmp_path, destinations=[webhook(hook.url)]))
    try:
        purchase = await purchase_for(
            app,
            hook,
            [
                page("laptop", "https://shop.example.com/?ttclid=TT-1"),
                identify("laptop", "", email="same@example.com") | {"userId": None},
                identify("phone", "user-4", email="same@example.com"),
                order("user-4", "o-4"),
            ],
            4,
        )
        assert purchase["user"]["click_ids"]["ttclid"] == "TT-1"
        merged = app.app.graph.profile_for(["u:user-4"])
        assert {"a:laptop", "a:phone", "u:user-4"} <= set(merged.keys)
    finally:
        await app.stop()


async def test_without_ads_consent_click_ids_are_neither_kept_nor_attached(tmp_path, hook):
    consent = {"purposes": {"ads": ["Advertising"]}, "default": "grant"}
    app = await start_app(base_config(tmp_path, consent=consent, destinations=[webhook(hook.url)]))
    try:
        declined = {"consent": {"categoryPreferences": {"Advertising": False}}}
        purchase = await purchase_for(
            app,
            hook,
            [
                page("anon-5", "https://shop.example.com/?gclid=Gno", **declined),
                identify("anon-5", "user-5", email="no-ads@example.com"),
                order("user-5", "o-5"),
            ],
            3,
        )
        assert purchase["user"].get("click_ids", {}) == {}
        assert purchase["consent"] == {"ads": False}  # the stated choice outlives the page
        profile = app.app.graph.profile_for(["u:user-5"])
        assert profile.click_ids == {}
    finally:
        await app.stop()


async def test_identity_writes_ride_in_the_event_transaction(tmp_path, hook):
    app = await start_app(base_config(tmp_path, destinations=[webhook(hook.url)]))
    try:
        await app.post(
            "/v1/batch", {"batch": [identify("anon-6", "user-6", email="x@example.com")]}
        )
        async with app.app.reader.execute("SELECT key FROM identity_keys ORDER BY key") as cursor:
            keys = [row[0] for row in await cursor.fetchall()]
        assert keys == sorted(["a:anon-6", "u:user-6", "e:" + sha("x@example.com")])
    finally:
        await app.stop()
