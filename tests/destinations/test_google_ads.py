"""Google Ads through a real daemon against the fake Google: the OAuth refresh-token flow, the
Data Manager API (default) and UploadClickConversions (partial failures), identity hashed by
Google's rules, batch limits, age limits, permanent and throttling errors, observe mode."""

from __future__ import annotations

import json
import time

import pytest

from tests.destinations import (
    FAST_BATCH,
    FAST_RETRY,
    USER,
    config,
    dead_letters,
    delivered,
    purchase,
    send,
    sha256,
    wait_for,
    wait_for_dead,
)
from tests.fakes.google_ads import FakeGoogleAds, google_error, partial_failure
from tests.fakes.webhook import Answer
from tests.harness import start_app
from tracklayer.config import ConfigError, parse
from tracklayer.destinations.base import Request, Response
from tracklayer.destinations.google_ads import GoogleAdsConfig, GoogleAdsDestination


@pytest.fixture
async def google():
    fake = await FakeGoogleAds().start()
    yield fake
    await fake.stop()


def destination(fake: FakeGoogleAds, **keys) -> dict:
    config = {
        "id": "gads",
        "type": "google_ads",
        "endpoint": fake.endpoint,
        "customer_id": "123-456-7890",
        "conversion_action_id": "987654",
        "oauth": {
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
            "refresh_token": fake.refresh_token,
            "token_url": fake.token_url,
        },
        "batch": FAST_BATCH,
        "retry": FAST_RETRY,
    }
    config.update(keys)
    return config


async def test_purchase_with_full_identity_through_data_manager(tmp_path, google):
    app = await start_app(config(tmp_path, destination(google)))
    try:
        await send(app, [purchase(1)])
        await google.wait_for(1)
        assert google.problems == []
    finally:
        await app.stop()
    assert google.token_requests == 1
    [call] = google.api_requests
    assert call.path == "/v1/events:ingest"
    assert call.headers["Authorization"] == "Bearer ya29.fake-1"
    assert "developer-token" not in call.headers
    body = google.bodies[0]
    assert body["destinations"] == [
        {
            "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "1234567890"},
            "productDestinationId": "987654",
        }
    ]
    assert body["encoding"] == "HEX" and body["validateOnly"] is False
    [event] = body["events"]
    assert event["transactionId"] == "o-1"
    assert event["eventSource"] == "WEB"
    assert event["eventTimestamp"].endswith("Z")
    assert event["conversionValue"] == 42.5 and event["currency"] == "USD"
    assert event["adIdentifiers"] == {
        "gclid": USER["click_ids"]["gclid"],
        "landingPageDeviceInfo": {"userAgent": USER["user_agent"], "ipAddress": USER["ip"]},
    }
    # Google's rules: Gmail dots and +suffix dropped, E.164 with "+", names lowercase.
    assert event["userData"]["userIdentifiers"] == [
        {"emailAddress": sha256("johnsmith@gmail.com")},
        {"phoneNumber": sha256("+16505551212")},
        {
            "address": {
                "givenName": sha256("mary"),
                "familyName": sha256("valéry"),
                "regionCode": "US",
                "postalCode": "94025",
            }
        },
    ]
    assert event["consent"] == {
        "adUserData": "CONSENT_GRANTED",
        "adPersonalization": "CONSENT_GRANTED",
    }
    assert event["cartData"]["items"][0] == {
        "merchantProductId": "sku-1",
        "quantity": 2,
        "unitPrice": 8.5,
    }


async def test_a_batch_over_2000_is_split(tmp_path, google):
    batch = {"max_events": 2500, "max_wait": "10s"}
    app = await start_app(config(tmp_path, destination(google, batch=batch)))
    try:
        await send(app, [purchase(i) for i in range(2500)])
        await google.wait_for(2500, timeout=20)
        assert google.problems == []
        assert sorted(len(r.events) for r in google.api_requests) == [500, 2000]
        assert google.token_requests == 1  # one token serves both requests
    finally:
        await app.stop()


async def test_a_too_old_conversion_is_rejected_alone(tmp_path, google):
    app = await start_app(config(tmp_path, destination(google)))
    try:
        await send(app, [purchase(1), purchase(2, age=91 * 86400), purchase(3)])
        await google.wait_for(2)
        [(outcome, code, _)] = await wait_for_dead(app, 1)
        assert (outcome, code) == ("rejected", "too_old")
        assert sorted(e["transactionId"] for e in google.kept) == ["o-1", "o-3"]
    finally:
        await app.stop()


async def test_a_permanent_error_is_dead_lettered_and_not_retried(tmp_path, google):
    google.script = [google_error(403, "PERMISSION_DENIED", "The caller does not have permission")]
    app = await start_app(config(tmp_path, destination(google)))
    try:
        await send(app, [purchase(1)])
        [(outcome, code, reason)] = await wait_for_dead(app, 1)
        assert (outcome, code) == ("rejected", "PERMISSION_DENIED")
        assert "does not have permission" in reason
        await wait_for(lambda: delivered(app, "gads", "rejected") == 1)
        assert len(google.api_requests) == 1
    finally:
        await app.stop()


async def test_fast_fail_rejects_the_named_event_and_resends_the_others(tmp_path, google):
    violation = {
        "field": "events[1].conversion_value",
        "description": "bad",
        "reason": "INVALID_CONVERSION_VALUE",
    }
    google.script = [google_error(400, "INVALID_ARGUMENT", "There was a problem", [violation])]
    app = await start_app(config(tmp_path, destination(google)))
    try:
        await send(app, [purchase(1), purchase(2), purchase(3)])
        await google.wait_for(2)
        [(outcome, code, reason)] = await wait_for_dead(app, 1)
        assert (outcome, code) == ("rejected", "INVALID_CONVERSION_VALUE")
        assert "events[1].conversion_value" in reason
        assert sorted(e["transactionId"] for e in google.kept) == ["o-1", "o-3"]
    finally:
        await app.stop()


async def test_quota_exhaustion_is_retried_and_lowers_the_rate(tmp_path, google):
    google.script = [
        google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded", headers={"Retry-After": "0"})
    ]
    app = await start_app(config(tmp_path, destination(google)))
    try:
        await send(app, [purchase(1)])
        await google.wait_for(1)
        worker = app.app.workers["gads"]
        assert worker.rate.rate < worker.limit.rps
        assert delivered(app, "gads", "retried") == 1
    finally:
        await app.stop()


async def test_an_expired_token_is_refreshed(tmp_path, google):
    google.script = [
        google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
    ]
    app = await start_app(config(tmp_path, destination(google)))
    try:
        await send(app, [purchase(1)])
        await google.wait_for(1)
        assert google.token_requests == 2
        assert google.api_requests[-1].headers["Authorization"] == "Bearer ya29.fake-2"
    finally:
        await app.stop()


async def test_a_revoked_refresh_token_rejects_the_batch(tmp_path, google):
    bad = destination(google)
    bad["oauth"] = {**bad["oauth"], "refresh_token": "revoked"}
    app = await start_app(config(tmp_path, bad))
    try:
        await send(app, [purchase(1), purchase(2)])
        dead = await wait_for_dead(app, 2)
        assert {(outcome, code) for outcome, code, _ in dead} == {
            ("rejected", "oauth_invalid_grant")
        }
        assert google.api_requests == []
    finally:
        await app.stop()


async def test_click_conversions_api_with_a_partial_failure(tmp_path, google):
    google.script = [
        partial_failure(2, {1: ("conversionUploadError", "EXPIRED_EVENT", "The click is too old")})
    ]
    keys = {
        "api": "click_conversions",
        "developer_token": google.developer_token,
        "login_customer_id": "111-222-3333",
    }
    app = await start_app(config(tmp_path, destination(google, **keys)))
    try:
        await send(app, [purchase(1), purchase(2)])
        [(outcome, code, reason)] = await wait_for_dead(app, 1)
        assert (outcome, code) == ("rejected", "conversionUploadError:EXPIRED_EVENT")
        assert "too old" in reason
        await wait_for(lambda: delivered(app, "gads", "accepted") == 1)
        assert google.problems == []
    finally:
        await app.stop()
    [call] = google.api_requests
    assert call.path == "/v26/customers/1234567890:uploadClickConversions"
    assert call.headers["developer-token"] == "dev-token"
    assert call.headers["login-customer-id"] == "1112223333"
    conversion = google.bodies[0]["conversions"][0]
    assert google.bodies[0]["partialFailure"] is True
    assert conversion["conversionAction"] == "customers/1234567890/conversionActions/987654"
    assert conversion["gclid"] == USER["click_ids"]["gclid"]
    assert conversion["orderId"] == "o-1"
    assert conversion["consent"] == {"adUserData": "GRANTED"}
    assert {"hashedEmail": sha256("johnsmith@gmail.com")} in conversion["userIdentifiers"]


async def test_observe_mode_sends_nothing_not_even_for_a_token(tmp_path, google):
    observe = {"id": "gads", "type": "google_ads", "mode": "observe", "batch": FAST_BATCH}
    app = await start_app(config(tmp_path, observe))
    try:
        await send(app, [purchase(i) for i in range(3)])
        await wait_for(lambda: delivered(app, "gads", "observed") == 3)
        assert google.requests == []
    finally:
        await app.stop()


async def test_only_purchases_are_conversions_unless_events_says_more(tmp_path, google):
    app = await start_app(config(tmp_path, destination(google)))
    try:
        cart = {**purchase(9), "name": "add_to_cart", "message_id": "cart-9"}
        await send(app, [cart, purchase(1)])
        await google.wait_for(1)
        filtered = app.app.metrics.events_suppressed.labels("gads", "filter")
        await wait_for(lambda: filtered._value.get() == 1)
        assert [e["transactionId"] for e in google.kept] == ["o-1"]
        assert await dead_letters(app) == []
    finally:
        await app.stop()


# The plugin alone ---------------------------------------------------------------------------


def test_live_mode_names_the_missing_oauth_key():
    config = {
        "destinations": [
            {"id": "g", "type": "google_ads", "customer_id": "1", "conversion_action_id": "2"}
        ]
    }
    with pytest.raises(ConfigError) as error:
        parse(config, "t.yaml")
    assert str(error.value) == "t.yaml: destinations[0].oauth: client_id is required in live mode"


def test_consent_purposes_map_to_googles_signals():
    from tracklayer.destinations.google_ads import google_consent
    from tracklayer.model import Event

    def consent(**purposes):
        now = time.time()
        return google_consent(
            Event(
                event_id="e",
                name="purchase",
                source_name="p",
                source="s",
                message_id="m",
                timestamp=now,
                received_at=now,
                consent=purposes,
            )
        )

    assert consent(ads=True) == {"ad_user_data": True, "ad_personalization": True}
    assert consent(ads=True, ad_personalization=False) == {
        "ad_user_data": True,
        "ad_personalization": False,
    }
    assert consent(analytics=True) == {}


def test_token_answers():
    plugin = GoogleAdsDestination(GoogleAdsConfig(id="g", mode="observe"))
    now = time.time()
    assert plugin.token_request(now) is not None
    ok = Response(200, {}, json.dumps({"access_token": "t", "expires_in": 3599}).encode())
    assert plugin.token_response(ok, now) is None
    assert plugin.token_request(now + 10) is None  # cached
    assert plugin.token_request(now + 3599) is not None  # refreshed before expiry
    down = plugin.token_response(Response(503, {}, b"unavailable"), now)
    assert down is not None and down.kind == "retry"
    request = Request("POST", "u", {}, b"{}", [0])
    answer: Answer = google_error(503, "UNAVAILABLE", "try later")
    assert plugin.classify(request, Response(answer.status, {}, answer.body))[0].kind == "retry"
