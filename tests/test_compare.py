"""``tracklayer compare``: the stored canonical events against an old route's export
(Segment NDJSON or CSV), matched by dedup key, with the exit code gating a cut-over."""

from __future__ import annotations

import csv
import json
import time

import pytest

from tests.harness import base_config, start_app
from tracklayer.config import parse
from tracklayer.diagnostics.compare import (
    BaselineError,
    Conversion,
    compare,
    parse_baseline,
    run_compare,
)
from tracklayer.pipeline.names import NameMap

NOW = time.time()


def iso(seconds: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        + f".{int(seconds % 1 * 1000):03d}Z"
    )


def order(i: int, value: float = 10.0, currency: str = "EUR", event: str = "Order Completed"):
    return {
        "type": "track",
        "event": event,
        "userId": f"u{i}",
        "messageId": f"msg-{i}",
        "timestamp": iso(NOW - 3600 + i),
        "properties": {"order_id": f"o{i}", "revenue": value, "currency": currency},
    }


def signup(i: int):
    return {
        "type": "track",
        "event": "Signed Up",
        "userId": f"s{i}",
        "messageId": f"sign-{i}",
        "timestamp": iso(NOW - 3000 + i),
        "properties": {},
    }


@pytest.fixture
async def stored(tmp_path):
    """A store holding 60 purchases (o0..o59, 10 EUR each), 5 sign-ups and a page view."""
    config = base_config(tmp_path, events={"aliases": {"Purchase Completed": "purchase"}})
    app = await start_app(config)
    try:
        batch = [order(i) for i in range(60)] + [signup(i) for i in range(5)]
        batch.append(
            {
                "type": "page",
                "userId": "u1",
                "messageId": "page-1",
                "name": "Home",
                "timestamp": iso(NOW - 3000),
            }
        )
        status, body, _ = await app.post("/v1/batch", {"batch": batch})
        assert status == 200, body
    finally:
        await app.stop()
    return parse(config, "test.yaml")


def write_ndjson(path, messages) -> str:
    path.write_text("".join(json.dumps(m) + "\n" for m in messages))
    return str(path)


async def test_an_identical_baseline_passes(stored, tmp_path):
    messages = [order(i) for i in range(60)] + [signup(i) for i in range(5)]
    messages.append({"type": "identify", "userId": "u1", "timestamp": iso(NOW - 3000)})
    text, code = await run_compare(
        stored, write_ndjson(tmp_path / "b.ndjson", messages), None, 0.02
    )
    assert code == 0, text
    assert "purchase: baseline 60, tracklayer 60 (+0.0%, ok)" in text
    assert "value EUR: baseline 600.00, tracklayer 600.00 (0.0%, ok)" in text
    assert "sign_up: baseline 5, tracklayer 5" in text
    assert "page_view" in text and "not compared" in text  # ours only: listed, not judged
    assert "1 baseline lines skipped" in text  # the identify
    assert text.rstrip().endswith("OK: counts and values agree within 2.0%")


async def test_missing_orders_and_value_differences_fail(stored, tmp_path):
    messages = [order(i) for i in range(60)]
    messages[3]["properties"]["revenue"] = 250.0  # the old route saw a different value
    messages[4]["properties"]["currency"] = "USD"
    messages += [order(100 + i) for i in range(3)]  # orders TrackLayer never received
    messages.append(order(7))  # the old route sent o7 twice
    del messages[10]  # and never sent o10
    text, code = await run_compare(
        stored, write_ndjson(tmp_path / "b.ndjson", messages), None, 0.02
    )
    assert code == 1, text
    assert "purchase: baseline 62, tracklayer 60" in text
    assert "only in baseline: 3: purchase:o100, purchase:o101, purchase:o102" in text
    assert "only in tracklayer: 1: purchase:o10" in text
    assert "baseline sent 1 duplicates" in text
    assert "value differs on 1 matched: purchase:o3 (250.00 vs 10.00 EUR)" in text
    assert "currency differs on 1 matched: purchase:o4 (USD vs EUR)" in text
    assert "FAIL:" in text and "USD value differs" in text


async def test_tolerance_gates_the_count_difference(stored, tmp_path):
    messages = [order(i) for i in range(60)] + [order(200)]  # one more: 1.6 %
    path = write_ndjson(tmp_path / "b.ndjson", messages)
    assert (await run_compare(stored, path, None, 0.02))[1] == 0
    text, code = await run_compare(stored, path, None, 0.01)
    assert code == 1 and "purchase: count differs by 1.6% (60 against 61)" in text


async def test_csv_baseline_with_an_alias(stored, tmp_path):
    path = tmp_path / "b.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["event", "order_id", "value", "currency", "timestamp"])
        for i in range(60):
            writer.writerow(["Purchase Completed", f"o{i}", "10.00", "eur", iso(NOW - 3600 + i)])
    text, code = await run_compare(stored, str(path), None, 0.0)
    assert code == 0, text
    assert "purchase: baseline 60, tracklayer 60" in text


async def test_since_limits_both_sides(stored, tmp_path):
    messages = [order(i) for i in range(60)]
    messages.append({**order(300), "timestamp": iso(NOW - 5 * 86400)})  # long before --since
    path = write_ndjson(tmp_path / "b.ndjson", messages)
    text, code = await run_compare(stored, path, 2 * 3600, 0.0)
    assert code == 0, text


async def test_unreadable_baselines_say_why(stored, tmp_path):
    text, code = await run_compare(stored, str(tmp_path / "missing.ndjson"), None, 0.02)
    assert code == 2 and "cannot read" in text
    bad = tmp_path / "bad.csv"
    bad.write_text("name,amount\nx,1\n")
    text, code = await run_compare(stored, str(bad), None, 0.02)
    assert code == 2 and "CSV header lacks event, order_id, value, currency, timestamp" in text


def test_parse_baseline_ndjson_details():
    names = NameMap({})
    text = "\n".join(
        [
            json.dumps(
                {
                    "type": "track",
                    "event": "Lead Created",
                    "messageId": "m1",
                    "timestamp": "2026-12-03T09:00:00Z",
                    "properties": {},
                }
            ),
            "{not json",
            json.dumps({"batch": [order(1), {"type": "page", "name": "x"}]}),
            json.dumps(
                {
                    "type": "track",
                    "event": "Signed Up",
                    "timestamp": "2026-12-03T09:00:00Z",
                    "properties": {"event_id": "e-9"},
                }
            ),
        ]
    )
    baseline = parse_baseline(text, names)
    assert [(c.name, c.key) for c in baseline.conversions] == [
        ("lead", "lead:m1"),
        ("purchase", "purchase:o1"),
        ("sign_up", "sign_up:e-9"),
    ]
    assert baseline.conversions[1].value == 10.0 and baseline.conversions[1].currency == "EUR"
    assert baseline.skipped == 2 and baseline.problems[0].startswith("line 2: not JSON")
    with pytest.raises(BaselineError):
        parse_baseline("   \n", names)


def test_compare_without_keys_counts_but_does_not_match():
    theirs = [Conversion("purchase", "", 5.0, "USD", 0.0)] * 2
    ours = [Conversion("purchase", "", 5.0, "USD", 0.0)] * 2
    result = compare(theirs, ours, 0.0, 0.0, 1.0)
    assert result.failures == []
    assert result.events[0].only_baseline == [] and result.events[0].baseline.unique == 2


async def test_a_store_the_daemon_never_wrote_compares_as_empty(tmp_path):
    config = parse(base_config(tmp_path / "fresh"), "test.yaml")
    path = write_ndjson(tmp_path / "b.ndjson", [order(1)])
    text, code = await run_compare(config, path, None, 0.02)
    assert code == 1
    assert "the TrackLayer store holds no events" in text
    assert "purchase: baseline 1, tracklayer 0" in text
