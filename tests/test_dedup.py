"""Dedup at both scopes, end to end, and the registry's bloom + SQLite mechanics."""

from __future__ import annotations

import asyncio

import aiosqlite

from tests.harness import SDK_KEY, base_config, start_app, track, wait_until, webhook
from tracklayer.store.bloom import TimeSlicedBloom, digest
from tracklayer.store.database import in_thread, open_database
from tracklayer.store.dedup import DedupRegistry, as_blob


async def test_same_message_id_three_times_is_delivered_once(tmp_path, hook):
    app = await start_app(base_config(tmp_path, destinations=[webhook(hook.url)]))
    try:
        message = track(messageId="msg-1", properties={"order_id": "o-1", "revenue": 10})
        for _ in range(3):
            status, body, _ = await app.post("/v1/track", message)
            assert (status, body) == (200, {"success": True})  # retries are acknowledged
        # the same messageId inside one batch is dropped too
        status, _, _ = await app.post("/v1/batch", {"batch": [message, message]})
        assert status == 200
        await hook.wait_for(1)
        await asyncio.sleep(0.3)
        assert len(hook.accepted_events) == 1
        metrics = app.app.metrics.events_duplicate.labels("message")._value.get()
        assert metrics == 4
    finally:
        await app.stop()


async def test_order_via_segment_and_native_is_delivered_once(tmp_path, hook):
    app = await start_app(base_config(tmp_path, destinations=[webhook(hook.url)]))
    try:
        status, _, _ = await app.post(
            "/v1/track",
            track(messageId="seg-1", properties={"order_id": "o-77", "revenue": 30}),
        )
        assert status == 200
        native = {
            "name": "purchase",
            "user": {"user_id": "u1"},
            "properties": {"order_id": "o-77", "value": 30.0, "currency": "USD"},
        }
        status, _, _ = await app.post("/v1/events", native, key=SDK_KEY)
        assert status == 200
        # a refund of the same order is a different action and is delivered
        refund = dict(native, name="refund")
        status, _, _ = await app.post("/v1/events", refund, key=SDK_KEY)
        assert status == 200
        events = await hook.wait_for(2)
        await asyncio.sleep(0.3)
        assert sorted(e["name"] for e in hook.accepted_events) == ["purchase", "refund"]
        purchase = next(e for e in events if e["name"] == "purchase")
        assert purchase["event_id"] == "purchase:o-77"
        assert app.app.metrics.events_duplicate.labels("business")._value.get() == 1
    finally:
        await app.stop()


async def test_business_dedup_is_per_destination(tmp_path, hook):
    """A destination that filtered the first copy still gets the action once."""
    second = webhook(hook.url.replace("/in", "/second"), id="second", events=["purchase"])
    first = webhook(hook.url, events=["refund"])
    app = await start_app(base_config(tmp_path, destinations=[first, second]))
    try:
        for message_id in ("a", "b"):
            await app.post("/v1/track", track(messageId=message_id, properties={"order_id": "o-5"}))
        await hook.wait_for(1)
        await asyncio.sleep(0.3)
        assert [r.path for r in hook.requests] == ["/second"]
        assert len(hook.accepted_events) == 1
    finally:
        await app.stop()


async def test_dedup_survives_restart(tmp_path, hook):
    config = base_config(tmp_path, destinations=[webhook(hook.url)])
    app = await start_app(config)
    await app.post("/v1/track", track(messageId="persisted"))
    await hook.wait_for(1)
    await app.stop()

    app = await start_app(config)  # the bloom is rebuilt from SQLite, in the background
    try:
        await app.post("/v1/track", track(messageId="persisted"))  # caught while rebuilding
        await wait_until(lambda: app.app.dedup.complete)
        assert app.app.dedup.bloom.keys >= 1
        await app.post("/v1/track", track(messageId="persisted"))
        await app.post("/v1/track", track(messageId="fresh"))
        await hook.wait_for(2)
        await asyncio.sleep(0.3)
        assert sorted(e["message_id"] for e in hook.accepted_events) == ["fresh", "persisted"]
    finally:
        await app.stop()


def test_bloom_keys_expire_with_the_window():
    bloom = TimeSlicedBloom(window=3600, expected_keys=1000, false_positive_rate=0.01)
    key = digest("m:segment:abc")
    bloom.add(key, 10_000.0)
    assert bloom.maybe_contains(key, 10_000.0)
    assert bloom.maybe_contains(key, 10_000.0 + 3600)  # at least the full window
    assert not bloom.maybe_contains(key, 10_000.0 + 3600 * 1.2)  # gone after it
    assert not bloom.maybe_contains(digest("m:segment:other"), 10_000.0)


def test_bloom_false_positive_rate_holds_under_a_spike():
    """All keys landing in one slice (a burst) must not saturate it."""
    bloom = TimeSlicedBloom(window=3600, expected_keys=20_000, false_positive_rate=0.01)
    for i in range(20_000):
        bloom.add(digest(f"k{i}"), 5_000.0)
    false_positives = sum(bloom.maybe_contains(digest(f"x{i}"), 5_000.0) for i in range(20_000))
    assert false_positives / 20_000 < 0.02


async def test_a_bloom_false_positive_never_drops_an_event(tmp_path):
    """Force the bloom to answer "maybe" for everything: SQLite must still say "new"."""
    connection = await open_database(str(tmp_path))
    try:
        registry = DedupRegistry(window=3600, expected_keys=10, false_positive_rate=0.5)
        registry.complete = True
        registry.bloom.maybe_contains = lambda key, now: True  # a saturated filter
        now = 1_000_000.0
        seen_key, new_key = digest("m:s:seen"), digest("m:s:new")
        await connection.execute(
            "INSERT INTO dedup (key, seen_at) VALUES (?, ?)", (as_blob(seen_key), now)
        )
        found = await in_thread(
            connection,
            lambda c: registry.confirm(c, registry.screen([seen_key, new_key], now), now),
        )
        assert found == {seen_key}
        assert registry.false_positives == 1
        # a key seen before the window is not a duplicate any more
        later = await in_thread(
            connection,
            lambda c: registry.confirm(c, registry.screen([seen_key], now + 7200), now + 7200),
        )
        assert later == set()
    finally:
        await connection.close()


async def test_concurrent_duplicates_are_caught(tmp_path, hook):
    """Many copies of one message in flight at once: exactly one is stored."""
    app = await start_app(base_config(tmp_path, destinations=[webhook(hook.url)]))
    try:
        message = track(messageId="racing")
        results = await asyncio.gather(*(app.post("/v1/track", message) for _ in range(20)))
        assert all(status == 200 for status, _, _ in results)
        await hook.wait_for(1)
        await asyncio.sleep(0.3)
        assert len(hook.accepted_events) == 1
        async with (
            aiosqlite.connect(tmp_path / "data" / "tracklayer.db") as db,
            db.execute("SELECT COUNT(*) FROM events") as cursor,
        ):
            assert (await cursor.fetchone())[0] == 1
    finally:
        await app.stop()


async def test_partial_refunds_stay_apart_and_each_is_delivered_once(tmp_path, hook):
    app = await start_app(base_config(tmp_path, destinations=[webhook(hook.url)]))
    try:
        for message_id, refund_id in (("r1", "rf-1"), ("r2", "rf-2"), ("r1-again", "rf-1")):
            properties = {"order_id": "o-9", "refund_id": refund_id, "revenue": 5}
            await app.post(
                "/v1/track", track("Order Refunded", messageId=message_id, properties=properties)
            )
        events = await hook.wait_for(2)
        await asyncio.sleep(0.3)
        assert len(hook.accepted_events) == 2
        assert sorted(e["event_id"] for e in events) == ["refund:o-9:rf-1", "refund:o-9:rf-2"]
    finally:
        await app.stop()


async def test_the_filter_is_rebuilt_in_steps_and_answers_correctly_meanwhile(tmp_path):
    """Start-up does not wait for the filter: until it holds the whole window, every key is
    confirmed in SQLite, so a duplicate is caught even before its key is loaded."""
    connection = await open_database(str(tmp_path))
    try:
        now = 1_000_000.0
        keys = [digest(f"m:s:{i}") for i in range(25)]
        await connection.executemany(
            "INSERT INTO dedup (key, seen_at) VALUES (?, ?)",
            [(as_blob(k), now - 10) for k in keys] + [(as_blob(digest("m:s:old")), now - 7200)],
        )
        registry = DedupRegistry(window=3600, expected_keys=100, false_positive_rate=0.01)
        fresh = digest("m:s:fresh")
        found = await in_thread(
            connection, lambda c: registry.confirm(c, registry.screen([keys[-1], fresh], now), now)
        )
        assert found == {keys[-1]} and not registry.complete
        steps = 0
        while True:
            rows = await in_thread(connection, lambda c: registry.rebuild_rows(c, 10))
            steps += 1
            registry.rebuild_load(rows, now, last=len(rows) < 10)
            if registry.complete:
                break
        assert steps == 3  # 26 rows, 10 a step
        assert registry.loaded == 25  # the key from before the window is not loaded
        assert all(registry.bloom.maybe_contains(k, now) for k in keys)
        found = await in_thread(
            connection, lambda c: registry.confirm(c, registry.screen([keys[0], fresh], now), now)
        )
        assert found == {keys[0]}
    finally:
        await connection.close()
