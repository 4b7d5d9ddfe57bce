"""Shopify order webhooks in, canonical purchases and refunds out: signed, deduplicated
against replays, against the other order topic and against the browser's own purchase."""

from __future__ import annotations

import asyncio
import hashlib
import re

import pytest

from tests.fakes import shopify_payloads as shopify
from tests.harness import SDK_KEY, base_config, post, start_app, webhook
from tracklayer.sources.shopify import order_event

SECRET = "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"
PATH = "/webhooks/shopify/shop"


def config(tmp_path, hook, **source):
    document = base_config(tmp_path, destinations=[webhook(hook.url)])
    document["sources"].append({"id": "shop", "type": "shopify", "secret": SECRET, **source})
    return document


async def deliver(app, topic: str, payload: dict, webhook_id: str | None = None, **changes):
    body = shopify.body_of(payload)
    headers = shopify.headers(topic, body, SECRET, webhook_id)
    headers.update(changes)
    return await post(app.url + PATH, None, key=None, headers=headers, raw=body)


def counter(app, name: str, *labels: str) -> float:
    return getattr(app.app.metrics, name).labels(*labels)._value.get()


@pytest.fixture
async def app(tmp_path, hook):
    running = await start_app(config(tmp_path, hook))
    yield running
    await running.stop()


async def test_order_becomes_one_purchase_through_replays_paid_and_the_browser(app, hook):
    order = shopify.order()
    status, body, _ = await deliver(app, "orders/create", order, webhook_id="wh-1")
    assert (status, body) == (200, {"success": True})
    # Shopify retries the same delivery (same webhook id): a message-scope duplicate
    status, _, _ = await deliver(app, "orders/create", order, webhook_id="wh-1")
    assert status == 200
    # then the order is paid: another topic, same order, same business action
    status, _, _ = await deliver(app, "orders/paid", order, webhook_id="wh-2")
    assert status == 200
    # and the thank-you page reports it too, with Shopify's order id
    browser = {
        "name": "Order Completed",
        "user": {"anonymous_id": "browser-1"},
        "properties": {"order_id": str(shopify.ORDER_ID), "value": 123.45},
    }
    status, _, _ = await app.post("/v1/events", browser, key=SDK_KEY)
    assert status == 200

    events = await hook.wait_for(1)
    await asyncio.sleep(0.4)  # nothing more may arrive
    assert hook.problems == []
    assert len(hook.accepted_events) == 1
    assert counter(app, "events_duplicate", "message") == 1
    assert counter(app, "events_duplicate", "business") == 2

    purchase = events[0]
    assert purchase["name"] == "purchase"
    assert purchase["event_id"] == f"purchase:{shopify.ORDER_ID}"
    assert purchase["message_id"] == "wh-1"
    assert purchase["source"] == "shop"
    assert purchase["source_name"] == "orders/create"
    assert purchase["timestamp"] == "2026-12-02T09:12:09.000Z"  # created_at, in UTC
    properties = purchase["properties"]
    assert properties["order_id"] == str(shopify.ORDER_ID)
    assert (properties["value"], properties["currency"]) == (123.45, "USD")
    assert (properties["subtotal"], properties["tax"], properties["shipping"]) == (109, 8.5, 5.95)
    assert properties["discount"] == 10 and properties["coupon"] == "WELCOME10"
    assert properties["order_name"] == "#1042"
    assert properties["items"] == [
        {
            "id": "LS-M-SAND",
            "name": "Linen Shirt",
            "quantity": 2,
            "price": 45.0,
            "sku": "LS-M-SAND",
            "variant_id": "44128331874342",
            "product_id": "8012356329510",
            "brand": "Harbor & Pine",
        },
        {
            "id": "44128331907110",  # no SKU: the variant id
            "name": "Canvas Tote",
            "quantity": 1,
            "price": 29.0,
            "variant_id": "44128331907110",
            "product_id": "8012356362278",
            "brand": "Harbor & Pine",
        },
    ]
    user = purchase["user"]
    assert user["email"] == hashlib.sha256(b"jane.doe@example.com").hexdigest()
    assert user["phone"] == hashlib.sha256(b"16135550142").hexdigest()
    assert user["first_name"] == hashlib.sha256(b"jane").hexdigest()
    assert user["zip"] == hashlib.sha256(b"k1a0b1").hexdigest()
    assert user["user_id"] == str(shopify.CUSTOMER_ID)
    assert user["ip"] == "203.0.113.24"
    assert user["user_agent"] == shopify.USER_AGENT
    assert re.fullmatch(rf"fb\.1\.\d{{13}}\.{shopify.FBCLID}", user["fbc"])
    assert purchase["context"]["page_url"] == (
        f"https://shop.example.com/products/linen-shirt?utm_source=facebook&fbclid={shopify.FBCLID}"
    )
    assert "Jane.Doe" not in str(events)


async def test_bad_or_missing_hmac_is_refused(app, hook):
    body = shopify.body_of(shopify.order())
    headers = shopify.headers("orders/create", body, "not-the-secret")
    status, answer, _ = await post(app.url + PATH, None, key=None, headers=headers, raw=body)
    assert (status, answer["code"]) == (401, "unauthorized")
    # a valid signature of another body
    headers = shopify.headers("orders/create", body + b" ", SECRET)
    status, _, _ = await post(app.url + PATH, None, key=None, headers=headers, raw=body)
    assert status == 401
    del headers["X-Shopify-Hmac-Sha256"]
    status, _, _ = await post(app.url + PATH, None, key=None, headers=headers, raw=body)
    assert status == 401
    headers["X-Shopify-Hmac-Sha256"] = "%%% not base64 %%%"
    status, _, _ = await post(app.url + PATH, None, key=None, headers=headers, raw=body)
    assert status == 401
    await asyncio.sleep(0.2)
    assert hook.requests == []
    assert counter(app, "events_rejected", "shop", "unauthorized") == 4


async def test_unknown_source_is_404_and_other_topics_are_acknowledged(app, hook):
    body = shopify.body_of(shopify.order())
    headers = shopify.headers("orders/create", body, SECRET)
    for path in ("/webhooks/shopify/nope", "/webhooks/shopify/segment"):
        status, answer, _ = await post(app.url + path, None, key=None, headers=headers, raw=body)
        assert (status, answer["code"]) == (404, "not_found")
    # a topic we do not turn into events, and Shopify's "Send test notification"
    status, body_, _ = await deliver(app, "customers/create", {"id": 1, "email": "x@y.co"})
    assert (status, body_) == (200, {"success": True})
    status, _, _ = await deliver(
        app, "orders/create", shopify.order(), **{"X-Shopify-Test": "true"}
    )
    assert status == 200
    await asyncio.sleep(0.3)
    assert hook.requests == []
    assert counter(app, "events_filtered", "shop") == 2


async def test_refund_is_delivered_as_refund_of_the_order(app, hook):
    status, _, _ = await deliver(app, "orders/create", shopify.order())
    assert status == 200
    status, _, _ = await deliver(app, "refunds/create", shopify.refund(), webhook_id="wh-r1")
    assert status == 200
    events = await hook.wait_for(2)
    refund = next(e for e in events if e["name"] == "refund")
    # partial refunds of one order stay apart: the refund id is part of the key
    refund_id = shopify.refund()["id"]
    assert refund["event_id"] == f"refund:{shopify.ORDER_ID}:{refund_id}"
    assert refund["properties"]["refund_id"] == str(refund_id)
    assert refund["source_name"] == "refunds/create"
    assert refund["properties"]["order_id"] == str(shopify.ORDER_ID)
    assert (refund["properties"]["value"], refund["properties"]["currency"]) == (46.58, "USD")
    assert refund["properties"]["items"][0]["id"] == "LS-M-SAND"
    assert refund["properties"]["items"][0]["quantity"] == 1
    assert refund["timestamp"] == "2026-12-03T01:02:44.000Z"


async def test_allow_events_picks_the_topics(tmp_path, hook):
    app = await start_app(config(tmp_path, hook, allow_events=["orders/paid"]))
    try:
        status, _, _ = await deliver(app, "orders/create", shopify.order())
        assert status == 200
        status, _, _ = await deliver(app, "orders/paid", shopify.order(financial_status="paid"))
        assert status == 200
        events = await hook.wait_for(1)
        await asyncio.sleep(0.3)
        assert [e["source_name"] for e in hook.accepted_events] == ["orders/paid"]
        assert events[0]["event_id"] == f"purchase:{shopify.ORDER_ID}"
    finally:
        await app.stop()


async def test_a_source_without_a_secret_refuses_everything(tmp_path, hook):
    app = await start_app(config(tmp_path, hook, secret=""))
    try:
        status, answer, _ = await deliver(app, "orders/create", shopify.order())
        assert (status, answer["code"]) == (401, "unauthorized")
        assert "secret" in answer["message"]
    finally:
        await app.stop()


def test_guest_order_in_another_presentment_currency_with_the_browser_id():
    order = shopify.order(
        customer=None,
        email=None,
        contact_email="guest@example.com",
        currency="CAD",
        note_attributes=[
            {"name": "_tracklayer_anonymous_id", "value": "3f1c2b9e-browser"},
            {"name": "_fbp", "value": "fb.1.1764600000000.987654321"},
        ],
        landing_site="https://shop.example.com/?gclid=Cj0-guest",
    )
    order["total_price_set"]["presentment_money"] = {"amount": "91.20", "currency_code": "USD"}
    native = order_event(order, "wh-9", "https://shop.example.com")
    assert native.user.user_id is None  # no customer record: the browser's id links it
    assert native.user.anonymous_id == "3f1c2b9e-browser"
    assert native.user.email == "guest@example.com"
    assert native.user.first_name == "Jane"  # from the billing address
    assert native.user.fbp == "fb.1.1764600000000.987654321"
    assert native.context.page_url == "https://shop.example.com/?gclid=Cj0-guest"
    assert native.context.country == "CA"  # consent.regions apply by the buyer's country
    props = native.properties
    assert (props["value"], props["currency"]) == (123.45, "CAD")
    assert (props["presentment_value"], props["presentment_currency"]) == (91.2, "USD")
