"""Consent end to end: resolution, per-destination gates, the latest choice winning, and the
report's account of every suppression."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakes.webhook import FakeWebhook
from tests.harness import ADMIN_TOKEN, SDK_KEY, base_config, request_json, start_app, webhook
from tracklayer.config import parse
from tracklayer.model import SegmentMessage
from tracklayer.pipeline import consent as rules
from tracklayer.pipeline.canonical import Arrival, Canonicaliser

CONSENT = {
    "purposes": {
        "ads": ["Advertising", "advertising", "C0004", "marketing"],
        "analytics": ["Analytics", "C0002"],
    },
    "default": "grant",
    "regions": {"EEA": "deny", "GB": "deny"},
    "ldu_regions": ["US-CA"],
}


@pytest.fixture
async def ads_hook():
    fake = await FakeWebhook(secret="s3cret").start()
    yield fake
    await fake.stop()


def two_destinations(open_url: str, ads_url: str) -> list[dict]:
    return [
        webhook(open_url, id="warehouse"),
        webhook(ads_url, id="ads", requires_consent=["ads"]),
    ]


def purchase(message_id: str, order_id: str, **context) -> dict:
    return {
        "type": "track",
        "userId": f"user-{message_id}",
        "event": "Order Completed",
        "messageId": message_id,
        "properties": {"order_id": order_id, "revenue": 10},
        "context": context,
    }


async def settle(app) -> None:
    await asyncio.sleep(0.4)
    await app.app.flush_stats()


async def test_declined_advertising_is_suppressed_only_where_required(tmp_path, hook, ads_hook):
    config = base_config(
        tmp_path, consent=CONSENT, destinations=two_destinations(hook.url, ads_hook.url)
    )
    app = await start_app(config)
    try:
        declined = {"consent": {"categoryPreferences": {"Advertising": False, "Analytics": True}}}
        status, _, _ = await app.post("/v1/track", purchase("m1", "o1", **declined))
        assert status == 200
        delivered = await hook.wait_for(1)
        assert delivered[0]["consent"] == {"ads": False, "analytics": True}
        await settle(app)
        assert ads_hook.requests == []
        metric = app.app.metrics.events_suppressed.labels("ads", "consent")._value.get()
        assert metric == 1
        status, report, _ = await report_of(app)
        entry = report["destinations"]["ads"]["events"]["purchase"]
        assert entry["suppressed"] == {"consent": 1}
        assert entry["consent_suppressed"] == {"purpose": {"ads": 1}, "region": {"unknown": 1}}
    finally:
        await app.stop()


async def test_unstated_consent_follows_the_region(tmp_path, hook, ads_hook):
    config = base_config(
        tmp_path, consent=CONSENT, destinations=two_destinations(hook.url, ads_hook.url)
    )
    app = await start_app(config)
    try:
        await app.post("/v1/track", purchase("de", "o-de", location={"country": "Germany"}))
        await app.post("/v1/track", purchase("us", "o-us", location={"country": "US"}))
        await hook.wait_for(2)
        delivered = await ads_hook.wait_for(1)
        await settle(app)
        assert [e["message_id"] for e in ads_hook.accepted_events] == ["us"]
        assert delivered[0]["consent"] == {"ads": True, "analytics": True}
        _, report, _ = await report_of(app)
        by = report["destinations"]["ads"]["events"]["purchase"]["consent_suppressed"]
        assert by == {"purpose": {"ads": 1}, "region": {"DE": 1}}
    finally:
        await app.stop()


async def test_country_header_decides_when_the_event_does_not(tmp_path, hook, ads_hook):
    consent = CONSENT | {"country_header": "CF-IPCountry"}
    config = base_config(
        tmp_path, consent=consent, destinations=two_destinations(hook.url, ads_hook.url)
    )
    app = await start_app(config)
    try:
        await app.post("/v1/track", purchase("fr", "o-fr"), headers={"CF-IPCountry": "FR"})
        await app.post("/v1/track", purchase("ca", "o-ca"), headers={"CF-IPCountry": "CA"})
        await hook.wait_for(2)
        await ads_hook.wait_for(1)
        await settle(app)
        assert [e["message_id"] for e in ads_hook.accepted_events] == ["ca"]
    finally:
        await app.stop()


async def test_a_consent_update_changes_the_next_purchase(tmp_path, hook, ads_hook):
    config = base_config(
        tmp_path, consent=CONSENT, destinations=two_destinations(hook.url, ads_hook.url)
    )
    app = await start_app(config)
    try:
        update = {
            "type": "track",
            "anonymousId": "visitor-1",
            "userId": "u-77",
            "event": "Segment Consent Preference Updated",
            "messageId": "consent-1",
            "context": {"consent": {"categoryPreferences": {"Advertising": False}}},
        }
        assert (await app.post("/v1/track", update))[0] == 200
        later = purchase("after", "o-after")
        later["userId"] = "u-77"  # states nothing itself
        assert (await app.post("/v1/track", later))[0] == 200
        delivered = await hook.wait_for(1)
        await settle(app)
        assert [e["name"] for e in delivered] == ["purchase"]  # the update is not delivered
        assert delivered[0]["consent"]["ads"] is False
        assert ads_hook.requests == []

        regrant = dict(update, messageId="consent-2", timestamp=None)
        regrant["context"] = {"consent": {"categoryPreferences": {"Advertising": True}}}
        assert (await app.post("/v1/track", regrant))[0] == 200
        again = purchase("again", "o-again")
        again["userId"] = "u-77"
        assert (await app.post("/v1/track", again))[0] == 200
        granted = await ads_hook.wait_for(1)
        assert granted[0]["message_id"] == "again"
    finally:
        await app.stop()


async def test_native_consent_and_onetrust_categories(tmp_path, hook, ads_hook):
    config = base_config(
        tmp_path, consent=CONSENT, destinations=two_destinations(hook.url, ads_hook.url)
    )
    app = await start_app(config)
    try:
        native = {
            "name": "purchase",
            "user": {"user_id": "n1"},
            "properties": {"order_id": "n-1"},
            "consent": {"ads": False},
        }
        assert (await app.post("/v1/events", native, key=SDK_KEY))[0] == 200
        onetrust = purchase("ot", "o-ot", consent={"categoryPreferences": {"C0004": True}})
        assert (await app.post("/v1/track", onetrust))[0] == 200
        await hook.wait_for(2)
        delivered = await ads_hook.wait_for(1)
        await settle(app)
        assert [e["message_id"] for e in ads_hook.accepted_events] == ["ot"]
        assert delivered[0]["consent"] == {"ads": True, "analytics": False}
    finally:
        await app.stop()


def canonicaliser() -> Canonicaliser:
    config = {"sources": [{"id": "s", "type": "segment", "write_keys": ["k"]}], "consent": CONSENT}
    return Canonicaliser(parse(config, "t.yaml"))


def resolve(context: dict) -> tuple[dict, bool, str]:
    message = SegmentMessage(type="track", user_id="u", event="Order Completed", context=context)
    event = canonicaliser().from_segment(message, None, Arrival(source="s", received_at=1e9))
    return event.consent, event.ldu, event.context.region


def test_google_consent_mode_signals():
    assert resolve({"gcs": "G100"})[0] == {"ads": False, "analytics": False}
    assert resolve({"gcs": "G110"})[0] == {"ads": True, "analytics": False}
    consent, _, _ = resolve({"consent": {"ad_storage": "granted", "ad_user_data": "denied"}})
    assert consent["ads"] is False  # every ad signal must grant
    assert resolve({"gcs": "garbage", "location": {"country": "DE"}})[0]["ads"] is False


def test_limited_data_use_regions():
    _, ldu, region = resolve({"location": {"country": "United States", "region": "California"}})
    assert (ldu, region) == (True, "US-CA")
    assert resolve({"location": {"country": "US", "region": "NY"}})[1] is False
    assert rules.region_rule({"US-CA": "deny", "US": "grant"}, "US", "US-CA") == "deny"


async def report_of(app):
    return await request_json("GET", app.url + "/v1/admin/report?since=1h", ADMIN_TOKEN)
