"""Meta Conversions API through a real daemon against the fake Graph API: full identity,
hashing (also against Meta's own facebook-business normaliser), batch limits, age limits,
permanent and throttling errors, observe mode; and the plugin's rules on their own."""

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
from tests.fakes.meta import FakeMeta, buc_header, meta_error
from tests.harness import start_app
from tracklayer.config import ConfigError, parse
from tracklayer.destinations.base import Request, Response
from tracklayer.destinations.meta import MetaConfig, MetaDestination
from tracklayer.model import Context, Event, User


@pytest.fixture
async def meta():
    fake = await FakeMeta().start()
    yield fake
    await fake.stop()


def destination(fake: FakeMeta, **keys) -> dict:
    config = {
        "id": "meta",
        "type": "meta",
        "endpoint": fake.endpoint,
        "pixel_id": fake.pixel_id,
        "access_token": fake.access_token,
        "batch": FAST_BATCH,
        "retry": FAST_RETRY,
    }
    config.update(keys)
    return config


# Meta's normalisation of USER (Customer Information Parameters), before SHA-256.
NORMALISED = {
    "em": "john.smith+promo@gmail.com",
    "ph": "16505551212",
    "fn": "mary",
    "ln": "valéry",
    "ct": "menlopark",
    "st": "ca",
    "zp": "94025",
    "country": "us",
    "db": "19970216",
    "ge": "f",
    "external_id": "crm-0042",
}
RAW_FIELD = {
    "em": "email",
    "ph": "phone",
    "fn": "first_name",
    "ln": "last_name",
    "ct": "city",
    "st": "state",
    "zp": "zip",
    "country": "country",
    "db": "date_of_birth",
    "ge": "gender",
}


async def deliver_one(tmp_path, meta: FakeMeta, **keys) -> dict:
    app = await start_app(config(tmp_path, destination(meta, **keys)))
    try:
        await send(app, [purchase(1)])
        await meta.wait_for(1)
        assert meta.problems == []
        return meta.kept[0]
    finally:
        await app.stop()


async def test_purchase_with_full_identity(tmp_path, meta):
    event = await deliver_one(tmp_path, meta, test_event_code="TEST123")
    assert meta.requests[0].path == f"/v26.0/{meta.pixel_id}/events"
    assert meta.bodies[0]["test_event_code"] == "TEST123"
    assert event["event_name"] == "Purchase"
    assert event["event_id"] == "purchase:o-1"  # the order-based dedup key the pixel shares
    assert (
        isinstance(event["event_time"], int) and abs(event["event_time"] - (time.time() - 60)) < 5
    )
    assert event["action_source"] == "website"
    assert event["event_source_url"] == "https://shop.example.com/checkout/thanks"
    assert event["data_processing_options"] == []
    user = event["user_data"]
    for key, normal in NORMALISED.items():
        assert user[key] == [sha256(normal)], key
    assert user["client_ip_address"] == "203.0.113.7"
    assert user["client_user_agent"] == USER["user_agent"]
    assert user["fbc"] == USER["fbc"] and user["fbp"] == USER["fbp"]
    custom = event["custom_data"]
    assert custom["value"] == 42.5 and custom["currency"] == "USD"
    assert custom["order_id"] == "o-1"
    assert custom["content_ids"] == ["sku-1", "sku-2"]
    assert custom["contents"][0] == {"id": "sku-1", "quantity": 2, "item_price": 8.5}


async def test_hashes_equal_the_official_sdk_normaliser(tmp_path, meta):
    normalize = pytest.importorskip("facebook_business.adobjects.serverside.normalize")
    event = await deliver_one(tmp_path, meta)
    for key, field in RAW_FIELD.items():
        expected = normalize.Normalize.normalize_field(key, USER[field])
        assert event["user_data"][key] == [expected], key


async def test_a_batch_over_1000_is_split(tmp_path, meta):
    batch = {"max_events": 1500, "max_wait": "10s"}
    app = await start_app(config(tmp_path, destination(meta, batch=batch)))
    try:
        await send(app, [purchase(i) for i in range(1500)])
        await meta.wait_for(1500, timeout=20)
        assert meta.problems == []
        assert sorted(len(r.events) for r in meta.requests) == [500, 1000]
        assert len({e["event_id"] for e in meta.kept}) == 1500
    finally:
        await app.stop()


async def test_a_too_old_event_is_rejected_alone(tmp_path, meta):
    app = await start_app(config(tmp_path, destination(meta)))
    try:
        await send(app, [purchase(1), purchase(2, age=8 * 86400), purchase(3)])
        await meta.wait_for(2)
        [(outcome, code, reason)] = await wait_for_dead(app, 1)
        assert (outcome, code) == ("rejected", "too_old")
        assert "7 days" in reason
        assert sorted(e["custom_data"]["order_id"] for e in meta.kept) == ["o-1", "o-3"]
        assert meta.problems == []
    finally:
        await app.stop()


async def test_a_permanent_error_is_dead_lettered_with_metas_code(tmp_path, meta):
    meta.script = [meta_error(190, 463, "Error validating access token: Session has expired")]
    app = await start_app(config(tmp_path, destination(meta)))
    try:
        await send(app, [purchase(1)])
        [(outcome, code, reason)] = await wait_for_dead(app, 1)
        assert (outcome, code) == ("rejected", "190/463")
        assert "Session has expired" in reason and "fbtrace_id" in reason
        await wait_for(lambda: delivered(app, "meta", "rejected") == 1)
        assert len(meta.requests) == 1  # never retried
    finally:
        await app.stop()


async def test_throttling_is_retried_and_lowers_the_rate(tmp_path, meta):
    meta.script = [
        meta_error(17, 2446079, "User request limit reached", headers=buc_header(0)),
        meta_error(80004, None, "There have been too many calls to this ad-account."),
    ]
    app = await start_app(config(tmp_path, destination(meta)))
    try:
        await send(app, [purchase(1)])
        await meta.wait_for(1, timeout=10)
        assert [r.answered for r in meta.requests] == [400, 400, 200]
        worker = app.app.workers["meta"]
        assert worker.rate.rate < worker.limit.rps
        assert delivered(app, "meta", "retried") == 2
        assert await dead_letters(app) == []
    finally:
        await app.stop()


async def test_a_batch_refused_for_one_event_is_resent_event_by_event(tmp_path, meta):
    meta.script = [meta_error(100, None, "(#100) Invalid parameter")]
    app = await start_app(config(tmp_path, destination(meta)))
    try:
        await send(app, [purchase(1), purchase(2), purchase(3)])
        await meta.wait_for(3, timeout=10)
        assert [len(r.events) for r in meta.requests] == [3, 1, 1, 1]
        assert await dead_letters(app) == []
    finally:
        await app.stop()


async def test_observe_mode_sends_nothing_and_needs_no_credentials(tmp_path, meta):
    observe = {
        "id": "meta",
        "type": "meta",
        "mode": "observe",
        "endpoint": meta.endpoint,
        "batch": FAST_BATCH,
    }
    app = await start_app(config(tmp_path, observe))
    try:
        await send(app, [purchase(i) for i in range(3)])
        await wait_for(lambda: delivered(app, "meta", "observed") == 3)
        assert meta.requests == []
    finally:
        await app.stop()


# The plugin alone ---------------------------------------------------------------------------


def test_live_mode_names_the_missing_credential():
    config = {"destinations": [{"id": "meta", "type": "meta", "pixel_id": "123"}]}
    with pytest.raises(ConfigError) as error:
        parse(config, "t.yaml")
    assert str(error.value) == "t.yaml: destinations[0].access_token: required in live mode"


def plugin(**keys) -> MetaDestination:
    return MetaDestination(MetaConfig(id="meta", pixel_id="1", access_token="t", **keys))


def event(**fields) -> Event:
    now = time.time()
    base = {
        "event_id": "e1",
        "name": "purchase",
        "source_name": "Order Completed",
        "source": "segment",
        "message_id": "m1",
        "timestamp": now - 10,
        "received_at": now,
        "properties": {"value": 10, "currency": "EUR"},
        "user": User(user_id="u1", ip="2001:db8::1"),
    }
    base.update(fields)
    return Event(**base)


def test_limited_data_use_in_california_and_elsewhere():
    meta = plugin()
    [request] = meta.build(
        [
            event(ldu=True, context=Context(region="US-CA")),
            event(ldu=True),
            event(),
        ]
    )
    data = json.loads(request.body)["data"]
    assert data[0]["data_processing_options"] == ["LDU"]
    assert (
        data[0]["data_processing_options_country"],
        data[0]["data_processing_options_state"],
    ) == (1, 1000)
    assert (
        data[1]["data_processing_options_country"],
        data[1]["data_processing_options_state"],
    ) == (0, 0)
    assert data[2]["data_processing_options"] == []
    assert "data_processing_options_country" not in data[2]


def test_action_source_rule_and_rename():
    meta = plugin(rename={"purchase": "OrderPlaced"})
    [request] = meta.build(
        [
            event(),
            event(
                context=Context(page_url="https://x.example/"),
                user=User(user_agent="UA", user_id="u"),
            ),
            event(properties={"value": 1, "currency": "USD", "action_source": "physical_store"}),
        ]
    )
    data = json.loads(request.body)["data"]
    assert [d["action_source"] for d in data] == ["other", "website", "physical_store"]
    assert {d["event_name"] for d in data} == {"OrderPlaced"}
    # without an external_id the user id is hashed the same way (lowercase, no spaces)
    assert data[0]["user_data"]["external_id"] == [sha256("u1")]


def test_validation_rules():
    meta = plugin()
    assert meta.validate(event()) is None
    assert meta.validate(event(timestamp=time.time() + 60)).code == "future_time"
    assert meta.validate(event(properties={"value": 5})).code == "missing_currency"
    only_broad = event(
        user=User(), hashed={"meta.gender": sha256("f"), "meta.first_name": sha256("a")}
    )
    assert meta.validate(only_broad).code == "too_broad_identifiers"
    assert meta.validate(event(type="identify", name="identify")).kind == "suppressed"


def test_business_use_case_wait_is_honoured_in_seconds():
    meta = plugin()
    request = Request("POST", "u", {}, b"{}", [0, 1])
    answer = meta_error(80004, None, "too many calls", headers=buc_header(2))
    [first, second] = meta.classify(request, Response(answer.status, answer.headers, answer.body))
    assert first.kind == "retry" and first.throttled and first.retry_after == 120.0
    assert second == first


def test_answers_that_are_not_plain_success():
    meta = plugin()
    request = Request("POST", "u", {}, b"{}", [0])
    warned = meta.classify(request, Response(200, {}, b'{"events_received":1,"messages":["m"]}'))
    assert warned[0].kind == "warning" and warned[0].message == "m"
    assert meta.classify(request, Response(502, {}, b"<html>bad gateway"))[0].kind == "retry"
    transient = meta.classify(request, Response(500, {}, b'{"error":{"code":2,"message":"x"}}'))
    assert transient[0].kind == "retry" and not transient[0].throttled
    assert (
        meta.classify(request, Response(403, {}, b'{"error":{"code":200}}'))[0].kind == "rejected"
    )
