"""Segment and native messages → canonical events: names, ids, time, context, consent."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from tracklayer.config import parse
from tracklayer.destinations.webhook import WebhookDestination
from tracklayer.model import NativeEvent, NativeUser, SegmentMessage
from tracklayer.pipeline.canonical import Arrival, Canonicaliser, InvalidEvent
from tracklayer.pipeline.names import NameMap, snake_case
from tracklayer.pipeline.timestamps import event_time, parse_iso

RECEIVED = parse_iso("2026-12-03T10:00:00Z")


def canonicaliser(**sections) -> Canonicaliser:
    config = {"sources": [{"id": "segment", "type": "segment", "write_keys": ["k"]}]}
    config.update(sections)
    return Canonicaliser(parse(config, "t.yaml"), WebhookDestination.identifiers)


def arrival(**fields) -> Arrival:
    return Arrival(**({"source": "segment", "received_at": RECEIVED} | fields))


def segment(**fields) -> SegmentMessage:
    return SegmentMessage(
        **({"type": "track", "user_id": "u1", "event": "Order Completed"} | fields)
    )


@pytest.mark.parametrize(
    ("source_name", "canonical"),
    [
        ("Order Completed", "purchase"),
        ("Order Refunded", "refund"),
        ("Product Added", "add_to_cart"),
        ("Checkout Started", "begin_checkout"),
        ("Products Searched", "search"),
        ("Product Added to Wishlist", "add_to_wishlist"),
        ("Lead Created", "lead"),
        ("Lead Generated", "lead"),
        ("Subscription Started", "subscribe"),
        ("order completed", "purchase"),  # case-insensitive
        ("Video Played", "video_played"),
        ("videoPlayed", "video_played"),
        ("  Weird--Name!! ", "weird_name"),
    ],
)
def test_default_names(source_name, canonical):
    assert NameMap({}).canonical(source_name) == canonical


def test_aliases_extend_and_override_the_table():
    names = NameMap({"Purchase Completed": "purchase", "Order Completed": "order_done"})
    assert names.canonical("Purchase Completed") == "purchase"
    assert names.canonical("Order Completed") == "order_done"
    assert snake_case("") == ""


def test_unmapped_name_keeps_source_name():
    event = canonicaliser().from_segment(segment(event="Video Played"), None, arrival())
    assert (event.name, event.source_name) == ("video_played", "Video Played")


def test_call_types_get_fixed_names():
    c = canonicaliser()
    assert c.from_segment(segment(type="page"), None, arrival()).name == "page_view"
    assert c.from_segment(segment(type="screen"), None, arrival()).name == "screen_view"
    assert c.from_segment(segment(type=None), "identify", arrival()).name == "identify"


def test_event_id_rule():
    c = canonicaliser()
    explicit = segment(message_id="m1", properties={"order_id": "o1", "event_id": "px-9"})
    assert c.from_segment(explicit, None, arrival()).event_id == "px-9"
    in_context = segment(message_id="m1", context={"event_id": "ctx-1"})
    assert c.from_segment(in_context, None, arrival()).event_id == "ctx-1"
    order = segment(message_id="m1", properties={"order_id": 1234})
    assert c.from_segment(order, None, arrival()).event_id == "purchase:1234"
    plain = segment(message_id="m1", event="Signed Up")
    assert c.from_segment(plain, None, arrival()).event_id == "m1"


def test_message_id_generated_when_absent():
    event = canonicaliser().from_segment(segment(), None, arrival())
    assert uuid.UUID(event.message_id)


def test_clock_skew_is_corrected_like_segment():
    # The client's clock runs 1 h fast: it says the event happened at 10:59:50 and was sent
    # at 11:00:00. Received at 10:00:00 → the event happened at 09:59:50.
    message = segment(timestamp="2026-12-03T10:59:50Z", sent_at="2026-12-03T11:00:00Z")
    event = canonicaliser().from_segment(message, None, arrival())
    assert event.timestamp == RECEIVED - 10


def test_batch_sent_at_applies_when_the_message_has_none():
    message = segment(timestamp="2026-12-03T10:59:00.000+00:00")
    sent = parse_iso("2026-12-03T11:00:00Z")
    event = canonicaliser().from_segment(message, None, arrival(sent_at=sent))
    assert event.timestamp == RECEIVED - 60


def test_event_time_rules():
    assert event_time(None, None, 100.0) == 100.0  # no time: receipt time
    assert event_time(40.0, None, 100.0) == 40.0  # no sentAt: taken as is
    assert event_time(140.0, None, 100.0) == 100.0  # never in the future
    assert event_time(90.0, 95.0, 100.0) == 95.0


def test_bad_timestamp_names_the_field():
    with pytest.raises(InvalidEvent, match="timestamp"):
        canonicaliser().from_segment(segment(timestamp="yesterday"), None, arrival())


def test_batch_context_and_integrations_apply_to_each_message():
    message = segment(context={"locale": "de-DE"}, integrations={"Meta": False})
    batch = arrival(
        context={"locale": "en-US", "page": {"url": "https://s.example/p?a=1"}},
        integrations={"All": True},
    )
    event = canonicaliser().from_segment(message, None, batch)
    assert event.context.locale == "de-DE"  # the message's own value wins
    assert event.context.page_url == "https://s.example/p?a=1"
    assert event.integrations == {"All": True, "Meta": False}


def test_ids_null_means_absent_and_numbers_are_stringified():
    c = canonicaliser()
    event = c.from_segment(segment(user_id=None, anonymous_id=42), None, arrival())
    assert (event.user.user_id, event.user.anonymous_id) == ("", "42")
    with pytest.raises(InvalidEvent, match="userId"):
        c.from_segment(segment(user_id=None, anonymous_id=""), None, arrival())
    with pytest.raises(InvalidEvent, match="event"):
        c.from_segment(segment(event=" "), None, arrival())


def test_connection_ip_only_for_client_side_events():
    c = canonicaliser()
    server = c.from_segment(segment(), None, arrival(client_ip="203.0.113.9"))
    assert server.user.ip == ""
    browser = c.from_segment(segment(), None, arrival(client_ip="203.0.113.9", client_side=True))
    assert browser.user.ip == "203.0.113.9"
    direct = c.from_segment(segment(context={"direct": True}), None, arrival(client_ip="1.2.3.4"))
    assert direct.user.ip == "1.2.3.4"
    stated = c.from_segment(segment(context={"ip": "5.6.7.8"}), None, arrival(client_ip="1.2.3.4"))
    assert stated.user.ip == "5.6.7.8"


def test_personal_data_is_hashed_at_rest_by_default():
    message = segment(
        context={"traits": {"email": " Ada@Example.COM ", "phone": "+1 415 555 0100"}}
    )
    event = canonicaliser().from_segment(message, None, arrival())
    assert event.user.email == "" and event.user.phone == ""
    assert event.hashed["meta.email"] == hashlib.sha256(b"ada@example.com").hexdigest()
    # Meta's rule: digits with the country code, no "+"
    assert event.hashed["meta.phone"] == hashlib.sha256(b"14155550100").hexdigest()

    raw = canonicaliser(identity={"pii": "raw"}).from_segment(message, None, arrival())
    assert raw.user.email == "Ada@Example.COM"


def test_invalid_identifier_is_dropped_not_hashed():
    c = canonicaliser()
    event = c.from_segment(segment(traits={"email": "not-an-email"}), None, arrival())
    assert "meta.email" not in event.hashed
    assert sum(n for key, n in c.identity.dropped.items() if key.startswith("email:")) == 1


CONSENT = {
    "purposes": {"ads": ["Advertising", "C0004"], "analytics": ["Analytics"]},
    "default": "grant",
    "regions": {"EEA": "deny"},
}


def test_category_preferences_map_to_purposes():
    c = canonicaliser(consent=CONSENT)
    prefs = {"consent": {"categoryPreferences": {"Advertising": False, "Analytics": True}}}
    event = c.from_segment(segment(context=prefs), None, arrival())
    assert event.consent == {"ads": False, "analytics": True}
    onetrust = {"consent": {"categoryPreferences": {"C0004": True}}}
    event = c.from_segment(segment(context=onetrust), None, arrival())
    assert event.consent == {"ads": True, "analytics": False}  # absent category: false


def test_unstated_consent_falls_back_to_region_then_default():
    c = canonicaliser(consent=CONSENT)
    german = segment(context={"location": {"country": "DE"}})
    assert c.from_segment(german, None, arrival()).consent == {"ads": False, "analytics": False}
    american = segment(context={"location": {"country": "US"}})
    assert c.from_segment(american, None, arrival()).consent == {"ads": True, "analytics": True}
    by_header = c.from_segment(segment(), None, arrival(country="FR"))
    assert by_header.consent["ads"] is False


def test_native_event():
    c = canonicaliser(consent=CONSENT)
    native = NativeEvent(
        name="Order Completed",
        event_id="evt-1",
        timestamp="2026-12-03T09:00:00Z",
        user=NativeUser(anonymous_id="a1", email="a@b.co", click_ids={"gclid": "G", "x": ""}),
        properties={"order_id": "o1", "value": 42.0},
        consent={"ads": True},
    )
    event = c.from_native(native, arrival(source="web"))
    assert (event.name, event.source_name, event.event_id) == (
        "purchase",
        "Order Completed",
        "evt-1",
    )
    assert event.message_id == "evt-1"  # an explicit id makes client retries dedup
    assert event.timestamp == parse_iso("2026-12-03T09:00:00Z")
    assert event.user.click_ids == {"gclid": "G"}
    assert event.consent == {"ads": True, "analytics": True}
    with pytest.raises(InvalidEvent, match=r"user\.user_id"):
        c.from_native(NativeEvent(name="purchase"), arrival())
