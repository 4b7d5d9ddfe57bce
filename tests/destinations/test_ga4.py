"""GA4 Measurement Protocol through a real daemon against the fake collector: identity and
client id, the 25-event limit, the 72-hour limit, errors the daemon must not retry,
throttling, the validation server's messages, observe mode."""

from __future__ import annotations

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
from tests.fakes.ga4 import FakeGA4, validation
from tests.fakes.webhook import Answer
from tests.harness import start_app
from tracklayer.config import ConfigError, parse
from tracklayer.destinations.ga4 import GA4Config, GA4Destination


@pytest.fixture
async def ga4():
    fake = await FakeGA4().start()
    yield fake
    await fake.stop()


def destination(fake: FakeGA4, **keys) -> dict:
    config = {
        "id": "ga4",
        "type": "ga4",
        "endpoint": fake.endpoint,
        "measurement_id": fake.measurement_id,
        "api_secret": fake.api_secret,
        "batch": FAST_BATCH,
        "retry": FAST_RETRY,
    }
    config.update(keys)
    return config


async def test_purchase_with_full_identity(tmp_path, ga4):
    app = await start_app(config(tmp_path, destination(ga4)))
    try:
        await send(app, [purchase(1, _ga="GA1.1.1234567890.1700000000")])
        await ga4.wait_for(1)
        assert ga4.problems == []
    finally:
        await app.stop()
    [call] = ga4.requests
    assert call.path == "/mp/collect"
    body = ga4.bodies[0]
    assert body["client_id"] == "1234567890.1700000000"  # from the _ga cookie value
    assert body["user_id"] == "u-42"
    assert body["consent"] == {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"}
    user_data = body["user_data"]
    assert user_data["sha256_email_address"] == [sha256("johnsmith@gmail.com")]
    assert user_data["sha256_phone_number"] == [sha256("+16505551212")]
    [address] = user_data["address"]
    assert address["sha256_first_name"] == sha256("mary")
    assert address["sha256_last_name"] == sha256("valéry")
    assert (address["region"], address["postal_code"], address["country"]) == ("ca", "94025", "US")
    [event] = body["events"]
    assert event["name"] == "purchase"
    assert abs(event["timestamp_micros"] / 1e6 - (time.time() - 60)) < 5
    params = event["params"]
    assert params["transaction_id"] == "o-1"
    assert (params["value"], params["currency"]) == (42.5, "USD")
    assert params["items"][0] == {
        "item_id": "sku-1",
        "quantity": 2,
        "item_name": "Socks",
        "price": 8.5,
        "item_category": "Apparel",
    }
    assert body["ip_override"] == USER["ip"] and body["user_agent"] == USER["user_agent"]


async def test_batches_are_cut_at_25_and_grouped_by_user(tmp_path, ga4):
    batch = {"max_events": 100, "max_wait": "10s"}
    other = {**USER, "user_id": "u-7", "anonymous_id": "anon-7"}
    events = [purchase(i) for i in range(60)] + [purchase(f"x{i}", user=other) for i in range(40)]
    app = await start_app(config(tmp_path, destination(ga4, batch=batch)))
    try:
        await send(app, events)
        await ga4.wait_for(100)
        assert ga4.problems == []
        assert sorted(len(r.events) for r in ga4.requests) == [10, 15, 25, 25, 25]
        for body in ga4.bodies:
            orders = {e["params"]["transaction_id"] for e in body["events"]}
            assert all(o.startswith("o-x") for o in orders) == (body["user_id"] == "u-7")
    finally:
        await app.stop()


async def test_an_event_older_than_72_hours_is_rejected_alone(tmp_path, ga4):
    app = await start_app(config(tmp_path, destination(ga4)))
    try:
        await send(app, [purchase(1), purchase(2, age=73 * 3600), purchase(3)])
        await ga4.wait_for(2)
        [(outcome, code, _)] = await wait_for_dead(app, 1)
        assert (outcome, code) == ("rejected", "too_old")
        assert ga4.problems == []
    finally:
        await app.stop()


async def test_a_refused_request_is_not_retried(tmp_path, ga4):
    ga4.script = [Answer(400, {}, b"Bad Request")]
    app = await start_app(config(tmp_path, destination(ga4)))
    try:
        await send(app, [purchase(1)])
        [(outcome, code, _)] = await wait_for_dead(app, 1)
        assert (outcome, code) == ("rejected", "400")
        await wait_for(lambda: delivered(app, "ga4", "rejected") == 1)
        assert len(ga4.requests) == 1
    finally:
        await app.stop()


async def test_validation_messages_reject_the_event_they_name(tmp_path, ga4):
    ga4.script = [
        validation([("events", "Event at index: [1] has invalid params.", "VALUE_INVALID")])
    ]
    app = await start_app(config(tmp_path, destination(ga4, debug=True)))
    try:
        await send(app, [purchase(1), purchase(2)])
        [(outcome, code, reason)] = await wait_for_dead(app, 1)
        assert (outcome, code) == ("rejected", "VALUE_INVALID")
        assert "index: [1]" in reason
        await wait_for(lambda: delivered(app, "ga4", "accepted") == 1)
        assert ga4.requests[0].path == "/debug/mp/collect"
    finally:
        await app.stop()


async def test_throttling_is_retried_and_lowers_the_rate(tmp_path, ga4):
    ga4.script = [Answer(429, {"Retry-After": "0"}, b""), Answer(503, {}, b"")]
    app = await start_app(config(tmp_path, destination(ga4)))
    try:
        await send(app, [purchase(1)])
        await ga4.wait_for(1)
        worker = app.app.workers["ga4"]
        assert worker.rate.rate < worker.limit.rps
        assert delivered(app, "ga4", "retried") == 2
        assert await dead_letters(app) == []
    finally:
        await app.stop()


async def test_observe_mode_sends_nothing(tmp_path, ga4):
    observe = {"id": "ga4", "type": "ga4", "mode": "observe", "batch": FAST_BATCH}
    app = await start_app(config(tmp_path, observe))
    try:
        await send(app, [purchase(i) for i in range(3)])
        await wait_for(lambda: delivered(app, "ga4", "observed") == 3)
        assert ga4.requests == []
    finally:
        await app.stop()


# The plugin alone ---------------------------------------------------------------------------


def test_live_mode_names_the_missing_secret():
    config = {"destinations": [{"id": "g", "type": "ga4", "measurement_id": "G-1"}]}
    with pytest.raises(ConfigError) as error:
        parse(config, "t.yaml")
    assert str(error.value) == "t.yaml: destinations[0].api_secret: required in live mode"


def test_eu_region_and_debug_endpoints():
    eu = GA4Destination(GA4Config(id="g", measurement_id="G-1", api_secret="s", region="eu"))
    assert (
        eu.url()
        == "https://region1.google-analytics.com/mp/collect?measurement_id=G-1&api_secret=s"
    )
    observe = GA4Destination(GA4Config(id="g", mode="observe", measurement_id="G-1"))
    assert observe.url().startswith("https://www.google-analytics.com/debug/mp/collect?")
    app = GA4Destination(GA4Config(id="g", firebase_app_id="1:2:ios:3", api_secret="s"))
    assert "firebase_app_id=1%3A2%3Aios%3A3" in app.url()


def test_client_id_rule():
    from tracklayer.model import Event, User

    plugin = GA4Destination(GA4Config(id="g", measurement_id="G-1", api_secret="s"))

    def client(user: User, **properties) -> str:
        now = time.time()
        return plugin.client(
            Event(event_id="e", name="purchase", source_name="p", source="s", message_id="m",
                  timestamp=now, received_at=now, user=user, properties=properties)
        )  # fmt: skip

    cookie = User(anonymous_id="a", click_ids={"ga": "GA1.2.333.444"})
    assert client(cookie) == "333.444"
    assert client(cookie, ga_client_id="555.666") == "555.666"
    assert client(User(anonymous_id="a"), _ga="GA1.1.7.8") == "7.8"
    assert client(User(anonymous_id="a")) == "a"
    assert client(User(user_id="u")) == "u"
