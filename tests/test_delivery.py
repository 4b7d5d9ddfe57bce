"""Delivery against a fake webhook: retries, Retry-After, pacing, dead letters, replay,
observe mode, timeouts, isolation between destinations, health transitions."""

from __future__ import annotations

import asyncio
import logging
import time

from tests.fakes.webhook import Answer, FakeWebhook
from tests.harness import base_config, start_app, track, webhook
from tracklayer.cli import replay_dead_letters
from tracklayer.config import parse


async def send(app, count: int, prefix: str = "m") -> None:
    for i in range(count):
        status, _, _ = await app.post("/v1/track", track(messageId=f"{prefix}-{i}"))
        assert status == 200


async def test_server_errors_then_429_with_retry_after_are_retried(tmp_path, hook):
    hook.script = [Answer(503), Answer(503), Answer(503), Answer(429, {"Retry-After": "1"})]
    app = await start_app(base_config(tmp_path, destinations=[webhook(hook.url)]))
    try:
        await send(app, 3)
        events = await hook.wait_for(3, timeout=15)
        assert hook.problems == []
        assert sorted(e["message_id"] for e in events) == ["m-0", "m-1", "m-2"]
        answered = [r.answered for r in hook.requests]
        assert answered[:4] == [503, 503, 503, 429]
        throttled_at = hook.requests[3].at
        after = hook.requests[4].at
        assert after - throttled_at >= 0.95, "Retry-After: 1 was not honoured"
        # the same event ids on every attempt (the receiver can dedup our redeliveries)
        ids = {e["event_id"] for r in hook.requests for e in r.events}
        assert ids == {e["event_id"] for e in events}
        counts = app.app.metrics.deliveries
        assert counts.labels("hooks", "retried")._value.get() >= 4
        assert counts.labels("hooks", "accepted")._value.get() == 3
    finally:
        await app.stop()


async def test_backlog_drains_at_the_configured_rate(tmp_path, hook):
    destination = webhook(
        hook.url, rate_limit={"rps": 4, "burst": 1}, batch={"max_events": 1, "max_wait": "0s"}
    )
    app = await start_app(base_config(tmp_path, destinations=[destination]))
    try:
        await send(app, 13)
        await hook.wait_for(13, timeout=20)
        times = [r.at for r in hook.requests]
        rate = (len(times) - 1) / (times[-1] - times[0])
        print(f"\nmeasured drain rate: {rate:.2f} req/s (configured 4)")
        assert 3.2 <= rate <= 4.6
    finally:
        await app.stop()


async def test_permanent_rejection_is_dead_lettered_and_replayed(tmp_path, hook):
    hook.script = [Answer(400, body=b'{"error":"field x is bad"}')]
    config = base_config(tmp_path, destinations=[webhook(hook.url)])
    app = await start_app(config)
    try:
        await send(app, 1)
        await asyncio.sleep(0.5)
        assert len(hook.requests) == 1  # never retried
        dead = await dead_letters(app)
        assert len(dead) == 1
        outcome, code, reason = dead[0]
        assert (outcome, code) == ("rejected", "400")
        assert "field x is bad" in reason
        assert app.app.metrics.deliveries.labels("hooks", "rejected")._value.get() == 1

        assert await replay_dead_letters(parse(config, "t.yaml"), "hooks") == 0
        events = await hook.wait_for(1, timeout=5)
        assert events[0]["message_id"] == "m-0"
        assert await dead_letters(app) == []
    finally:
        await app.stop()


async def test_retries_run_out_into_dead_letters(tmp_path, hook):
    hook.script = [Answer(500)] * 10
    destination = webhook(
        hook.url, retry={"max_attempts": 3, "initial_backoff": "10ms", "max_backoff": "20ms"}
    )
    app = await start_app(base_config(tmp_path, destinations=[destination]))
    try:
        await send(app, 1)
        for _ in range(100):
            if await dead_letters(app):
                break
            await asyncio.sleep(0.05)
        assert len(hook.requests) == 3
        [(outcome, code, reason)] = await dead_letters(app)
        assert (outcome, code) == ("dead", "500")
        assert "gave up after 3 attempts" in reason
    finally:
        await app.stop()


async def test_observe_mode_sends_nothing(tmp_path, hook):
    app = await start_app(base_config(tmp_path, destinations=[webhook(hook.url, mode="observe")]))
    try:
        await send(app, 5)
        counter = app.app.metrics.deliveries.labels("hooks", "observed")
        for _ in range(100):
            if counter._value.get() == 5:
                break
            await asyncio.sleep(0.02)
        assert counter._value.get() == 5
        assert hook.requests == []
    finally:
        await app.stop()


async def test_timeouts_are_retried(tmp_path, hook):
    hook.script = [Answer(200, delay=1.0)]
    destination = webhook(hook.url, timeout="200ms")
    app = await start_app(base_config(tmp_path, destinations=[destination]))
    try:
        await send(app, 1)
        await wait_for_requests(hook, 2, timeout=5)
        assert hook.requests[1].answered == 200
        assert app.app.metrics.deliveries.labels("hooks", "retried")._value.get() >= 1
    finally:
        await app.stop()


async def test_a_hanging_destination_never_slows_another(tmp_path, hook):
    stuck = await FakeWebhook(secret="s3cret").start()
    stuck.script = [Answer(200, delay=3.0)] * 20
    try:
        destinations = [
            webhook(stuck.url, id="stuck", timeout="2s"),
            webhook(hook.url, id="healthy"),
        ]
        app = await start_app(base_config(tmp_path, destinations=destinations))
        try:
            started = time.monotonic()
            await send(app, 10)
            await hook.wait_for(10, timeout=5)
            assert time.monotonic() - started < 1.5
        finally:
            await app.stop()
    finally:
        await stuck.stop()


async def test_connection_refused_turns_unhealthy_once_and_recovers_once(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tracklayer.delivery")
    fake = FakeWebhook(secret="s3cret")
    await fake.start()
    url = fake.url
    await fake.stop()  # nothing listens on that port now
    destination = webhook(
        url, retry={"max_attempts": 50, "initial_backoff": "10ms", "max_backoff": "50ms"}
    )
    app = await start_app(base_config(tmp_path, destinations=[destination]))
    try:
        await send(app, 1)
        worker = app.app.workers["hooks"]
        for _ in range(200):
            if worker.health.failures >= 6:
                break
            await asyncio.sleep(0.02)
        assert not worker.health.healthy
        assert app.app.metrics.destination_healthy.labels("hooks")._value.get() == 0

        port = int(url.rsplit(":", 1)[1].split("/")[0])
        revived = FakeWebhook(secret="s3cret")
        await revived.start_on(port)
        try:
            await revived.wait_for(1, timeout=5)
            await asyncio.sleep(0.1)
            assert worker.health.healthy
        finally:
            await revived.stop()
        messages = [r.getMessage() for r in caplog.records]
        assert messages.count("destination unhealthy") == 1
        assert messages.count("destination recovered") == 1
    finally:
        await app.stop()


async def test_429_lowers_the_rate_and_success_restores_it(tmp_path, hook):
    hook.script = [Answer(429), Answer(429)]
    destination = webhook(
        hook.url,
        rate_limit={"rps": 50, "burst": 1},
        batch={"max_events": 1, "max_wait": "0s"},
        retry={"max_attempts": 10, "initial_backoff": "10ms", "max_backoff": "20ms"},
    )
    app = await start_app(base_config(tmp_path, destinations=[destination]))
    try:
        await send(app, 1)
        worker = app.app.workers["hooks"]
        await hook.wait_for(1, timeout=5)
        lowest = worker.rate.rate
        assert lowest < 50
        await send(app, 30, prefix="more")
        await hook.wait_for(31, timeout=10)
        assert worker.rate.rate > lowest
    finally:
        await app.stop()


async def dead_letters(app) -> list[tuple]:
    async with app.app.reader.execute(
        "SELECT outcome, code, reason FROM dead_letters ORDER BY id"
    ) as cursor:
        return [tuple(row) for row in await cursor.fetchall()]


async def wait_for_requests(fake: FakeWebhook, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(fake.requests) < count:
        assert time.monotonic() < deadline, f"only {len(fake.requests)} requests arrived"
        await asyncio.sleep(0.02)


async def test_stop_is_prompt_when_every_send_slot_waits_for_a_token(tmp_path, hook, monkeypatch):
    """A paused bucket (a throttled platform's retry-after of minutes) keeps every send slot
    busy; stopping must still end within the send timeout, and nothing is lost: the rows
    that were held are delivered after a restart. (It used to wait for a slot forever.)"""
    from tracklayer.delivery import worker

    monkeypatch.setattr(worker, "STOP_SECONDS", 0.5)
    held = webhook(
        hook.url,
        rate_limit={"rps": 0.001, "burst": 1},  # one token now, the next in 1,000 s
        batch={"max_events": 1, "max_wait": "0s"},
        max_in_flight=2,
    )
    config = base_config(tmp_path, destinations=[held])
    app = await start_app(config)
    await send(app, 5)
    await hook.wait_for(1)
    await asyncio.sleep(0.3)  # both slots now wait for a token, the loop for a slot
    started = time.monotonic()
    await app.stop()
    assert time.monotonic() - started < 5
    assert len(hook.accepted_events) == 1

    config["destinations"][0].pop("rate_limit")
    app = await start_app(config)
    try:
        events = await hook.wait_for(5)
        assert sorted(e["message_id"] for e in events) == [f"m-{i}" for i in range(5)]
    finally:
        await app.stop()
