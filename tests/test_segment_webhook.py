"""Segment's webhook destinations posting into ``/webhooks/segment/{source_id}``: the
classic destination's single messages and the Actions destination's batched arrays,
signed with ``X-Signature`` (hex HMAC-SHA1 of Segment's ``JSON.stringify`` output)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import pytest

from tests.harness import base_config, post, start_app, webhook

SECRET = "segment-shared-secret"


def stringify(value: object) -> bytes:
    """What JavaScript's ``JSON.stringify`` prints: no spaces."""
    return json.dumps(value, separators=(",", ":")).encode()


def signature(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def message(event: str = "Order Completed", message_id: str = "ajs-next-1", **fields) -> dict:
    """A track call as Segment forwards it: its own receivedAt, and a timestamp it already
    corrected for the device's clock (the device ran an hour fast here)."""
    happened = time.time() - 120
    document = {
        "anonymousId": "anon-1",
        "userId": "u-1",
        "channel": "client",
        "context": {
            "ip": "198.51.100.7",
            "library": {"name": "analytics.js", "version": "next-1.84.3"},
            "page": {"url": "https://shop.example.com/thanks?gclid=Cj0KCQ-Seg"},
            "traits": {"email": "Ada@Example.com"},
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
        },
        "event": event,
        "integrations": {},
        "messageId": message_id,
        "originalTimestamp": iso(happened + 3600),
        "properties": {"order_id": "o-seg-1", "revenue": 19.99, "currency": "USD"},
        "receivedAt": iso(happened + 1),
        "sentAt": iso(happened + 3600),
        "timestamp": iso(happened),
        "type": "track",
        "version": 2,
    }
    document.update(fields)
    return document


def config(tmp_path, hook, **segment):
    document = base_config(tmp_path, destinations=[webhook(hook.url)])
    document["sources"][0].update({"shared_secret": SECRET, **segment})
    document["sources"].append({"id": "open", "type": "segment"})  # no secret
    return document


async def deliver(app, body: bytes, sig: str | None, source: str = "segment"):
    headers = {"Content-Type": "application/json", "User-Agent": "Segment (Actions)"}
    if sig is not None:
        headers["X-Signature"] = sig
    return await post(
        f"{app.url}/webhooks/segment/{source}", None, key=None, headers=headers, raw=body
    )


@pytest.fixture
async def app(tmp_path, hook):
    running = await start_app(config(tmp_path, hook))
    yield running
    await running.stop()


async def test_signed_message_is_accepted_with_segments_own_timestamp(app, hook):
    original = message()
    body = stringify(original)
    status, answer, _ = await deliver(app, body, signature(body))
    assert (status, answer) == (200, {"success": True})
    # Segment retries a delivery it timed out on: same messageId, dropped
    status, _, _ = await deliver(app, body, signature(body))
    assert status == 200
    events = await hook.wait_for(1)
    await asyncio.sleep(0.3)
    assert len(hook.accepted_events) == 1
    event = events[0]
    assert event["name"] == "purchase"
    assert event["event_id"] == "purchase:o-seg-1"
    assert event["message_id"] == "ajs-next-1"
    assert event["source"] == "segment"
    # Segment's corrected timestamp as is: not shifted by the clock skew a second time
    assert event["timestamp"] == original["timestamp"]
    assert event["user"]["ip"] == "198.51.100.7"  # context.ip, not Segment's server
    assert event["user"]["email"] == hashlib.sha256(b"ada@example.com").hexdigest()
    assert event["user"]["click_ids"]["gclid"] == "Cj0KCQ-Seg"


async def test_unsigned_and_wrongly_signed_requests_are_refused(app, hook):
    body = stringify(message())
    for sig in (None, "", signature(body, "other-secret"), signature(body + b" "), "zz"):
        status, answer, _ = await deliver(app, body, sig)
        assert (status, answer["code"]) == (401, "unauthorized"), sig
    # a source without a shared_secret takes unsigned deliveries
    status, _, _ = await deliver(app, body, None, source="open")
    assert status == 200
    events = await hook.wait_for(1)
    assert events[0]["source"] == "open"
    status, answer, _ = await deliver(app, body, signature(body), source="nope")
    assert (status, answer["code"]) == (404, "not_found")


async def test_array_bodies_signed_whole_or_by_their_first_event(app, hook):
    first = message("Order Completed", "m-1", properties={"order_id": "o-a", "revenue": 5})
    second = message("Product Viewed", "m-2", properties={"product_id": "p-9"})
    third = message("Signed Up", "m-3")
    body = stringify([first, second])
    status, answer, _ = await deliver(app, body, signature(body))
    assert (status, answer) == (200, {"success": True})
    # Webhooks (Actions) with batching signs the first event, not the whole array
    body = b"[" + stringify(third) + b"," + stringify(message(message_id="m-4")) + b"]"
    status, _, _ = await deliver(app, body, signature(stringify(third)))
    assert status == 200
    # ... and an array signed for a different first event is refused
    status, _, _ = await deliver(app, stringify([second, third]), signature(stringify(third)))
    assert status == 401
    events = await hook.wait_for(4)
    await asyncio.sleep(0.3)
    assert sorted(e["message_id"] for e in hook.accepted_events) == ["m-1", "m-2", "m-3", "m-4"]
    assert {e["name"] for e in events} == {"purchase", "view_item", "sign_up"}


async def test_allow_events_bad_messages_and_deletion_notices(tmp_path, hook):
    app = await start_app(config(tmp_path, hook, allow_events=["Order Completed"]))
    try:
        bad = message(message_id="m-bad")
        del bad["userId"], bad["anonymousId"]
        deletion = {"type": "delete", "userId": "u-1", "messageId": "del-1"}
        batch = [
            message("Order Completed", "m-1"),
            message("Product Viewed", "m-2"),  # not allowed: acknowledged, not delivered
            bad,
            deletion,
        ]
        body = stringify(batch)
        status, answer, _ = await deliver(app, body, signature(body))
        assert status == 200
        assert answer["accepted"] == 2
        assert [r["index"] for r in answer["rejected"]] == [2]
        assert "userId" in answer["rejected"][0]["message"]
        events = await hook.wait_for(1)
        await asyncio.sleep(0.3)
        assert [e["message_id"] for e in hook.accepted_events] == ["m-1"]
        assert events[0]["name"] == "purchase"
        # one malformed message alone is a 400, which Segment does not retry
        body = stringify(bad)
        status, answer, _ = await deliver(app, body, signature(body))
        assert (status, answer["code"]) == (400, "invalid_event")
        body = b"{not json"
        status, answer, _ = await deliver(app, body, signature(body))
        assert (status, answer["code"]) == (400, "invalid_json")
    finally:
        await app.stop()
