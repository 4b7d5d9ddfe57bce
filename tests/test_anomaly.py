"""Anomaly detection on an injected clock and synthetic per-minute traffic: every kind opens
within its window and closes after it clears; steady Poisson traffic over days raises none."""

from __future__ import annotations

import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.harness import ADMIN_TOKEN, base_config, start_app, wait_until
from tests.test_alerts import Receiver
from tracklayer.diagnostics.anomaly import (
    DAY,
    AnomalyMonitor,
    Settings,
    Transition,
    drop_check,
    share_check,
)
from tracklayer.metrics import Metrics

S = Settings()
START = 20_000_000  # a minute number (Unix minutes, in 2008: any will do)


class Traffic:
    """Synthetic stats rows, served the way ``stats.series`` serves them."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.rows: dict[int, list[tuple]] = defaultdict(list)
        self.loads = 0

    def poisson(self, rate: float) -> int:
        if rate <= 0:
            return 0
        if rate > 30:
            return max(0, round(self.rng.gauss(rate, math.sqrt(rate))))
        limit, k, p = math.exp(-rate), 0, 1.0
        while True:
            p *= self.rng.random()
            if p <= limit:
                return k
            k += 1

    def binomial(self, n: int, p: float) -> int:
        return sum(1 for _ in range(n) if self.rng.random() < p)

    def add(self, minute: int, destination: str, event: str, outcome: str, code: str, count: int):
        if count:
            self.rows[minute].append((minute, destination, event, outcome, code, count, 0.0))

    def minute(
        self,
        minute: int,
        destination: str = "meta",
        event: str = "purchase",
        rate: float = 6.0,
        duplicate: float = 0.02,
        rejected: float = 0.01,
        code: str = "100",
        new_code: tuple[str, float] | None = None,
        missing: dict[str, float] | None = None,
        no_consent: float = 0.05,
    ) -> None:
        n = self.poisson(rate)
        bad = self.binomial(n, rejected)
        extra = self.binomial(n - bad, new_code[1]) if new_code else 0
        self.add(minute, destination, event, "accepted", "", n - bad - extra)
        self.add(minute, destination, event, "rejected", code, bad)
        if new_code:
            self.add(minute, destination, event, "rejected", new_code[0], extra)
        dups = self.binomial(n, duplicate / (1 - duplicate)) if duplicate < 1 else n
        self.add(minute, destination, event, "duplicate", "business", dups)
        for key, share in (missing if missing is not None else {"em": 0.2, "ph": 0.4}).items():
            lacking = self.binomial(n, share)
            self.add(minute, destination, event, "missing", key, lacking)
            self.add(minute, destination, event, "key", key, n - lacking)
        self.add(minute, destination, event, "no_consent", "", self.binomial(n, no_consent))

    async def load(self, since: float, until: float) -> list[tuple]:
        self.loads += 1
        rows: list[tuple] = []
        for minute in range(int(since // 60), int(until // 60) + 1):
            rows.extend(self.rows.get(minute, ()))
        return rows


class Clock:
    def __init__(self) -> None:
        self.now = START * 60.0

    def __call__(self) -> float:
        return self.now


def monitor_for(traffic: Traffic, clock: Clock, **settings: Any) -> AnomalyMonitor:
    return AnomalyMonitor(traffic.load, Metrics(), clock, Settings(**settings))


async def run(
    monitor: AnomalyMonitor,
    traffic: Traffic,
    clock: Clock,
    first: int,
    last: int,
    profile: Callable[[int], list[dict[str, Any]]],
) -> list[tuple[int, Transition]]:
    """Generate minutes ``[first, last)``; after each one, evaluate (as the app does, a
    second into the next minute). Returns (minute, transition) pairs."""
    seen: list[tuple[int, Transition]] = []
    for minute in range(first, last):
        for params in profile(minute):
            traffic.minute(minute, **params)
        clock.now = (minute + 1) * 60.0 + 1.0
        seen.extend((minute, t) for t in await monitor.evaluate())
    return seen


def opened(transitions: list[tuple[int, Transition]]) -> list[tuple[int, str, str]]:
    return [(m, t.anomaly.kind, t.anomaly.subject) for m, t in transitions if t.change == "opened"]


def closed(transitions: list[tuple[int, Transition]]) -> list[tuple[int, str, str]]:
    return [(m, t.anomaly.kind, t.anomaly.subject) for m, t in transitions if t.change == "closed"]


def steady(minute: int) -> list[dict[str, Any]]:
    """Two tracks with a daily cycle (±30 %) and Poisson noise on every count."""
    cycle = 1 + 0.3 * math.sin(2 * math.pi * (minute % DAY) / DAY)
    return [
        {"rate": 6.0 * cycle},
        {"destination": "hooks", "event": "lead", "rate": 2.0 * cycle, "missing": {"ph": 0.5}},
    ]


WARM = 8 * 60  # minutes of normal traffic before a change (a trailing baseline only)


async def test_steady_traffic_over_days_raises_no_alert():
    traffic, clock = Traffic(seed=20261203), Clock()
    monitor = monitor_for(traffic, clock)
    transitions = await run(monitor, traffic, clock, START, START + 4 * DAY + 120, steady)
    assert transitions == []
    assert monitor.active == []
    # the last day was judged against the same window on the previous three days
    figures = monitor._volume(  # type: ignore[attr-defined]
        "meta", "purchase", monitor._tracks[("meta", "purchase")], START + 4 * DAY + 120
    )[0].figures
    assert "previous 4 days" in figures["baseline"]


async def test_volume_drop_against_the_trailing_rate_opens_and_closes(caplog):
    caplog.set_level(logging.INFO, logger="tracklayer.diagnostics.anomaly")
    traffic, clock = Traffic(seed=1), Clock()
    monitor = monitor_for(traffic, clock)
    change, back = START + WARM, START + WARM + 90

    def profile(minute: int) -> list[dict[str, Any]]:
        return [{"rate": 0.6 if change <= minute < back else 6.0}]

    transitions = await run(monitor, traffic, clock, START, back + 120, profile)
    assert opened(transitions)[0][1] == "volume_drop"
    assert [kind for _, kind, _ in opened(transitions)] == ["volume_drop"]
    opened_at = opened(transitions)[0][0]
    assert change <= opened_at < change + 15, "a 90 % drop is seen within the 15 min window"
    closed_at = closed(transitions)[0][0]
    assert back < closed_at <= back + 60 + S.clear_minutes
    anomaly = transitions[0][1].anomaly
    assert (anomaly.destination, anomaly.event) == ("meta", "purchase")
    assert "delivered in the last" in anomaly.detail and "expected about" in anomaly.detail
    assert "rate over the" in anomaly.detail
    assert anomaly.closed_at is not None and anomaly.close_detail.startswith("Cleared")
    # logged once on open and once on close, not every minute in between
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("anomaly opened") == 1 and messages.count("anomaly closed") == 1
    opened_record = next(r for r in caplog.records if r.getMessage() == "anomaly opened")
    assert opened_record.fields["kind"] == "volume_drop"  # type: ignore[attr-defined]
    gauge = monitor.metrics.anomalies_active.labels("meta", "volume_drop")  # type: ignore[union-attr]
    assert gauge._value.get() == 0
    assert monitor.snapshot()["recent"][0]["kind"] == "volume_drop"


async def test_volume_drop_against_previous_days_at_the_same_time():
    """Night traffic is a tenth of the day's: only previous days say what is normal now."""
    traffic, clock = Traffic(seed=2), Clock()

    def daily(minute: int) -> float:
        hour = (minute % DAY) / 60
        return 8.0 if 8 <= hour < 20 else 0.8

    history_end = START + 3 * DAY + 10 * 60  # 10:00 on the fourth day
    for minute in range(START, history_end):
        traffic.minute(minute, rate=daily(minute))
    clock.now = history_end * 60.0 + 1
    monitor = monitor_for(traffic, clock)  # starts late: the first evaluation backfills
    change = history_end + 30

    def profile(minute: int) -> list[dict[str, Any]]:
        return [{"rate": daily(minute) * (0.3 if minute >= change else 1.0)}]

    transitions = await run(monitor, traffic, clock, history_end, change + 75, profile)
    assert [kind for _, kind, _ in opened(transitions)] == ["volume_drop"]
    assert change <= opened(transitions)[0][0] < change + 60
    assert "previous 3 days" in transitions[0][1].anomaly.detail


async def test_a_drop_at_low_volume_never_pages():
    traffic, clock = Traffic(seed=3), Clock()
    monitor = monitor_for(traffic, clock)

    def profile(minute: int) -> list[dict[str, Any]]:
        return [{"rate": 0.15 if minute < START + WARM else 0.0, "missing": {}}]

    assert await run(monitor, traffic, clock, START, START + WARM + 180, profile) == []


@pytest.mark.parametrize(
    ("kind", "subject", "changed", "window"),
    [
        ("duplicate_spike", "", {"duplicate": 0.5}, S.share_window),
        ("missing_identifier", "em", {"missing": {"em": 0.9, "ph": 0.4}}, S.share_window),
        ("missing_consent", "", {"no_consent": 0.6}, S.share_window),
        ("rejection_rate", "", {"rejected": 0.4}, S.share_window),
        ("new_rejection_code", "2635", {"new_code": ("2635", 0.06)}, S.new_code_window),
    ],
)
async def test_each_kind_opens_within_its_window_and_closes(kind, subject, changed, window):
    traffic, clock = Traffic(seed=4), Clock()
    monitor = monitor_for(traffic, clock)
    change, back = START + WARM, START + WARM + 45

    def profile(minute: int) -> list[dict[str, Any]]:
        return [changed if change <= minute < back else {}]

    transitions = await run(monitor, traffic, clock, START, back + 90, profile)
    assert [(k, s) for _, k, s in opened(transitions)] == [(kind, subject)]
    at = opened(transitions)[0][0]
    assert change <= at < change + window
    assert [(k, s) for _, k, s in closed(transitions)] == [(kind, subject)]
    assert closed(transitions)[0][0] > back
    anomaly = transitions[0][1].anomaly
    assert anomaly.destination == "meta" and anomaly.event == "purchase"
    assert "purchase → meta" in anomaly.detail
    assert any(ch.isdigit() for ch in anomaly.detail), "the sentence carries the figures"
    if subject:
        assert subject in anomaly.detail


async def test_anomalies_active_gauge_and_snapshot_while_open():
    traffic, clock = Traffic(seed=5), Clock()
    monitor = monitor_for(traffic, clock)
    change = START + WARM
    sent: list[Transition] = []
    monitor.notify = sent.append

    def profile(minute: int) -> list[dict[str, Any]]:
        return [{"duplicate": 0.6} if minute >= change else {}]

    await run(monitor, traffic, clock, START, change + 30, profile)
    gauge = monitor.metrics.anomalies_active.labels("meta", "duplicate_spike")  # type: ignore[union-attr]
    assert gauge._value.get() == 1
    snapshot = monitor.snapshot()
    assert [a["kind"] for a in snapshot["active"]] == ["duplicate_spike"]
    assert snapshot["active"][0]["opened_at"].endswith("Z")
    assert snapshot["active"][0]["closed_at"] is None
    assert [t.change for t in sent] == ["opened"]


async def test_loads_history_once_then_only_new_minutes():
    traffic, clock = Traffic(seed=6), Clock()
    monitor = monitor_for(traffic, clock)
    await run(monitor, traffic, clock, START, START + 10, lambda m: [{}])
    first = traffic.loads
    await run(monitor, traffic, clock, START + 10, START + 20, lambda m: [{}])
    assert traffic.loads - first == 10  # one small read per evaluation


def test_drop_check():
    assert drop_check(0, 100, 100, S) == "flag"
    assert drop_check(45, 100, 100, S) == "flag"
    assert drop_check(60, 100, 100, S) == "hold"  # not a large enough drop
    assert drop_check(85, 100, 100, S) == "clear"
    assert drop_check(0, 15, 15, S) == "clear"  # too little traffic to tell
    assert drop_check(40, 100, 400, S) == "hold"  # noisy history: 3 sd is not enough


def test_share_check():
    assert share_check(30, 60, 20, 1000, 0.1, S) == "flag"
    assert share_check(4, 60, 20, 1000, 0.1, S) == "clear"
    assert share_check(8, 60, 20, 1000, 0.1, S) == "hold"  # jumped, but too few to tell
    assert share_check(30, 60, 20, 10, 0.1, S) == "clear"  # no baseline to compare with
    assert share_check(40, 60, 500, 1000, 0.1, S) == "hold"  # 67 % against 50 %: not 2×


async def test_the_daemon_evaluates_stored_stats_serves_and_alerts(tmp_path):
    """Through the app: stats rows in SQLite → the monitor → /v1/admin/anomalies and the
    alert webhook."""
    async with Receiver() as receiver:
        app = await start_app(base_config(tmp_path, alerts={"webhook": receiver.url}))
        try:
            now_minute = int(time.time() // 60)
            rows = []
            for minute in range(now_minute - 8 * 60, now_minute):
                rows.append((minute, "meta", "purchase", "accepted", "", 6, "", 0.0))
                if minute >= now_minute - 20:
                    rows.append((minute, "meta", "purchase", "duplicate", "business", 6, "", 0.0))
            await app.app.journal.run(lambda c: app.app.stats.write(c, rows))
            await app.app._evaluate_anomalies()  # what the background task runs every minute
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    app.url + "/v1/admin/anomalies",
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                ) as response,
            ):
                document = await response.json()
            assert [a["kind"] for a in document["active"]] == ["duplicate_spike"]
            assert document["active"][0]["destination"] == "meta"
            await wait_until(lambda: len(receiver.bodies) == 1)
            assert receiver.bodies[0]["text"].startswith("🔴 Duplicate spike: purchase → meta")
        finally:
            await app.stop()
