"""TikTok Events API 2.0 through a real daemon against the fake TikTok: identity hashed by
TikTok's rules, the 1,000-event limit, the age limit, codes inside HTTP 200 (permanent and
40100 throttling), observe mode."""

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
from tests.fakes.tiktok import FakeTikTok, throttle, tiktok_answer
from tests.harness import start_app
from tracklayer.config import ConfigError, parse
from tracklayer.destinations.base import Request, Response
from tracklayer.destinations.tiktok import TikTokConfig, TikTokDestination
from tracklayer.model import Event, User


@pytest.fixture
async def tiktok():
    fake = await FakeTikTok().start()
    yield fake
    await fake.stop()


def destination(fake: FakeTikTok, **keys) -> dict:
    config = {
        "id": "tiktok",
        "type": "tiktok",
        "endpoint": fake.endpoint,
        "pixel_code": fake.pixel_code,
        "access_token": fake.access_token,
        "batch": FAST_BATCH,
        "retry": FAST_RETRY,
    }
    config.update(keys)
    return config


async def test_purchase_with_full_identity(tmp_path, tiktok):
    app = await start_app(config(tmp_path, destination(tiktok, test_event_code="TEST42")))
    try:
        await send(app, [purchase(1, _ttp="2F7h37YkS1j57AYSKTI7IHhJPYH")])
        await tiktok.wait_for(1)
        assert tiktok.problems == []
    finally:
        await app.stop()
    body = tiktok.bodies[0]
    assert tiktok.requests[0].headers["Access-Token"] == "tt-token"
    assert (body["event_source"], body["event_source_id"]) == ("web", "CTEST123PIXEL")
    assert body["test_event_code"] == "TEST42"
    [event] = body["data"]
    assert event["event"] == "CompletePayment"
    assert event["event_id"] == "purchase:o-1"
    assert abs(event["event_time"] - (time.time() - 60)) < 5
    assert event["limited_data_use"] is False
    user = event["user"]
    assert user["email"] == sha256("john.smith+promo@gmail.com")
    assert user["phone"] == sha256("+16505551212")
    assert user["external_id"] == sha256("crm-0042")
    assert user["ttclid"] == USER["click_ids"]["ttclid"]
    assert user["ttp"] == "2F7h37YkS1j57AYSKTI7IHhJPYH"
    assert (user["ip"], user["user_agent"], user["locale"]) == (
        USER["ip"],
        USER["user_agent"],
        "en-US",
    )
    properties = event["properties"]
    assert (properties["value"], properties["currency"], properties["order_id"]) == (
        42.5,
        "USD",
        "o-1",
    )
    assert properties["contents"][0] == {
        "content_id": "sku-1",
        "quantity": 2,
        "price": 8.5,
        "content_name": "Socks",
        "content_category": "Apparel",
    }
    assert event["page"] == {
        "url": "https://shop.example.com/checkout/thanks",
        "referrer": "https://shop.example.com/cart",
    }


async def test_a_batch_over_1000_is_split(tmp_path, tiktok):
    batch = {"max_events": 1200, "max_wait": "10s"}
    app = await start_app(config(tmp_path, destination(tiktok, batch=batch)))
    try:
        await send(app, [purchase(i) for i in range(1200)])
        await tiktok.wait_for(1200, timeout=20)
        assert tiktok.problems == []
        assert sorted(len(r.events) for r in tiktok.requests) == [200, 1000]
    finally:
        await app.stop()


async def test_a_too_old_event_is_rejected_alone(tmp_path, tiktok):
    app = await start_app(config(tmp_path, destination(tiktok)))
    try:
        await send(app, [purchase(1), purchase(2, age=8 * 86400), purchase(3)])
        await tiktok.wait_for(2)
        [(outcome, code, _)] = await wait_for_dead(app, 1)
        assert (outcome, code) == ("rejected", "too_old")
    finally:
        await app.stop()


async def test_a_code_inside_http_200_is_a_permanent_rejection(tmp_path, tiktok):
    tiktok.script = [tiktok_answer(40002, "content_id: Not a valid string.")]
    app = await start_app(config(tmp_path, destination(tiktok)))
    try:
        await send(app, [purchase(1)])
        [(outcome, code, reason)] = await wait_for_dead(app, 1)
        assert (outcome, code) == ("rejected", "40002")
        assert "content_id" in reason and "request_id" in reason
        await wait_for(lambda: delivered(app, "tiktok", "rejected") == 1)
        assert len(tiktok.requests) == 1
    finally:
        await app.stop()


async def test_40100_is_retried_as_throttling(tmp_path, tiktok):
    tiktok.script = [throttle(), tiktok_answer(50002, "Internal service timed out.")]
    app = await start_app(config(tmp_path, destination(tiktok)))
    try:
        await send(app, [purchase(1)])
        await tiktok.wait_for(1)
        worker = app.app.workers["tiktok"]
        assert worker.rate.rate < worker.limit.rps
        assert delivered(app, "tiktok", "retried") == 2
        assert await dead_letters(app) == []
    finally:
        await app.stop()


async def test_observe_mode_sends_nothing(tmp_path, tiktok):
    observe = {"id": "tiktok", "type": "tiktok", "mode": "observe", "batch": FAST_BATCH}
    app = await start_app(config(tmp_path, observe))
    try:
        await send(app, [purchase(i) for i in range(3)])
        await wait_for(lambda: delivered(app, "tiktok", "observed") == 3)
        assert tiktok.requests == []
    finally:
        await app.stop()


# The plugin alone ---------------------------------------------------------------------------


def test_live_mode_names_the_missing_pixel():
    config = {"destinations": [{"id": "t", "type": "tiktok", "access_token": "x"}]}
    with pytest.raises(ConfigError) as error:
        parse(config, "t.yaml")
    assert str(error.value) == "t.yaml: destinations[0].pixel_code: required in live mode"


def test_limited_data_use_and_a_2xx_without_a_code():
    plugin = TikTokDestination(TikTokConfig(id="t", pixel_code="P", access_token="x"))
    now = time.time()
    event = Event(
        event_id="e", name="lead", source_name="Lead Generated", source="s", message_id="m",
        timestamp=now, received_at=now, ldu=True, user=User(user_id="u"),
    )  # fmt: skip
    [request] = plugin.build([event])
    [data] = json.loads(request.body)["data"]
    assert data["limited_data_use"] is True and data["event"] == "Lead"
    odd = plugin.classify(request, Response(200, {}, b"<html>ok</html>"))
    assert odd[0].kind == "warning"
    assert plugin.classify(request, Response(504, {}, b""))[0].kind == "retry"
    assert (
        plugin.classify(Request("POST", "u", {}, b"", [0]), Response(200, {}, b'{"code":0}'))[
            0
        ].kind
        == "accepted"
    )


def test_ttp_comes_from_the_captured_cookie():
    plugin = TikTokDestination(TikTokConfig(id="t", pixel_code="P", access_token="x"))
    now = time.time()
    event = Event(
        event_id="e", name="purchase", source_name="p", source="s", message_id="m",
        timestamp=now, received_at=now, user=User(anonymous_id="a", click_ids={"ttp": "T1"}),
    )  # fmt: skip
    assert plugin.user(event)["ttp"] == "T1"
    assert plugin.match_keys(event) == {"ttp"}
