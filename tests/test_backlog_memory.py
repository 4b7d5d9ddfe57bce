"""Memory stays flat with a 1 M event backlog: the backlog is on disk, not in RAM.

A real daemon ingests a few real events over the Segment HTTP API (``/v1/batch``) into a
destination whose batch lingers, so it writes its own events, outbox, dedup, profile and
stats rows; it is stopped cleanly with every outbox row still pending. Those rows are then
multiplied with SQL in the SQLite file (each copy gets its own events row id, message id,
order id and event id; every column in the format the daemon wrote) into a 1,000,000 row
outbox for one destination, and into a small control outbox.

The daemon is then started on each database in turn with the same config, delivering to a
fake webhook over real HTTP, paced by the destination's token bucket (so the 1 M backlog
stays ~1 M while we watch), and its RSS (``/proc/PID/status``) is sampled while it works.
Building 1 M events over HTTP would take minutes; building them in SQL takes seconds.

The copies get no dedup keys by default: writing 2 M keys takes ~20 s more here, and the
dedup filter they fill is the registry's cost, not the backlog's.
``TRACKLAYER_BACKLOG_DEDUP_KEYS=1`` writes them too (each copy's real message and business
keys, in the window), for the realistic restart: the daemon still starts in about a second
(the filter is rebuilt in the background), and the test takes ~25 s longer.

``TRACKLAYER_SKIP_BACKLOG_MEMORY=1`` skips the test; it is skipped too with less than
4 GiB free in the temp dir (the backlog database is ~1.5 GB).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from tests.fakes.webhook import FakeWebhook
from tests.harness import Daemon, base_config, post, webhook
from tracklayer.model import Event
from tracklayer.store.database import FILE_NAME
from tracklayer.store.dedup import as_blob, business_key, message_key

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("TRACKLAYER_SKIP_BACKLOG_MEMORY", "") not in ("", "0"),
        reason="TRACKLAYER_SKIP_BACKLOG_MEMORY is set",
    ),
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc"),
    pytest.mark.skipif(
        shutil.disk_usage(tempfile.gettempdir()).free < 4 * 2**30,
        reason="needs 4 GiB free in the temp dir for the 1.5 GB backlog database",
    ),
    pytest.mark.timeout(300),
]
DEDUP_KEYS = os.environ.get("TRACKLAYER_BACKLOG_DEDUP_KEYS", "") not in ("", "0")

BACKLOG = 1_000_000
# The control keeps the daemon delivering at the same pace for the whole sampling window
# (RATE_RPS * BATCH events a second), so the two runs differ only in the backlog's size.
CONTROL = 20_000
TEMPLATES = 10  # events ingested over HTTP; every other row is a copy of one of them
RATE_RPS = 5.0
BATCH = 100
SAMPLE_SECONDS = 15.0
SAMPLE_EVERY = 0.2
WARM_UP = 2.0  # seconds after 'started' left out of the trend check (sessions, first sends)

# Peak RSS (VmHWM: start-up included) with the 1 M backlog may exceed the control's by at
# most this much. Holding the backlog in memory would cost far more: the 1 M event bodies
# alone are ~1 GB (each is ~1 KB of msgpack; decoded Events are several times that), the
# outbox rows as Python tuples ~200 MB, and even a bare list of the 1 M outbox row ids
# ~36 MB (a set ~60 MB). What may legitimately differ is small: SQLite's page cache is
# capped per connection (2 MB by default, three connections) and, with the dedup keys,
# the bloom filter holds 2 M keys instead of 40 k (~3 MB more: bits, not events); the
# rest is allocator noise. 32 MB is several times that and still below a list of the ids.
PEAK_BOUND = 32 * 2**20
# Over the sampling window (after WARM_UP), the last third's peak may exceed the first
# third's by at most this much: ~2,500 events are delivered between the two, so a leak of
# ~3 KB per delivered event (about one decoded event), or reading ahead into the backlog,
# would show.
TREND_BOUND = 8 * 2**20

TOKEN = "bl-%010d"  # fixed width: replacing one by another keeps msgpack lengths valid
TOKEN_PATTERN = re.compile(r"bl-(\d{10})")


def template_messages() -> list[dict[str, Any]]:
    """Realistic Segment messages (~1 KB stored): purchases and add-to-carts, each with its
    own user, identifiers to hash, a click id, IP and user agent. The message id of the
    event that gets events row ``n`` is ``TOKEN % n`` (order id too, for purchases)."""
    messages = []
    for n in range(1, TEMPLATES + 1):
        token = TOKEN % n
        purchase = n % 2 == 1
        properties: dict[str, Any] = {
            "currency": "USD",
            "products": [
                {"product_id": f"sku-{n}", "name": "Blue T-shirt", "price": 21.25, "quantity": 2}
            ],
        }
        properties.update({"order_id": token, "revenue": 42.5} if purchase else {"value": 21.25})
        messages.append(
            {
                "type": "track",
                "userId": f"user-{n}",
                "event": "Order Completed" if purchase else "Product Added",
                "messageId": token,
                "properties": properties,
                "context": {
                    "ip": f"203.0.113.{n}",
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"
                    " (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
                    "page": {
                        "url": f"https://shop.example.com/thanks?fbclid=IwAR{n:06d}",
                        "referrer": "https://www.facebook.com/",
                    },
                    "traits": {
                        "email": f"jane.doe+{n}@example.com",
                        "phone": f"+1415555{n:04d}",
                        "firstName": "Jane",
                        "lastName": "Doe",
                    },
                },
            }
        )
    return messages


def config(tmp_path: Path, data: Path, url: str, **destination: Any) -> dict[str, Any]:
    # the daemon's default dedup sizing (10 M keys per window): a deployment that expects
    # a backlog of millions would not run with the suite's small default
    keys = {
        "rate_limit": {"rps": RATE_RPS, "burst": 1},
        "batch": {"max_events": BATCH, "max_wait": "50ms"},
    }
    keys.update(destination)
    return base_config(
        tmp_path,
        storage={"path": str(data)},
        dedup={"window": "48h"},
        destinations=[webhook(url, **keys)],
    )


async def ingest_templates(tmp_path: Path, data: Path) -> None:
    """A real daemon stores the templates and keeps their outbox rows pending: the
    destination's batch waits an hour to fill, so nothing is claimed before the clean
    stop (a SIGTERM stop releases nothing because nothing was claimed)."""
    unused = await FakeWebhook(secret="s3cret").start()
    try:
        daemon = Daemon(
            tmp_path,
            config(tmp_path, data, unused.url, batch={"max_events": 1000, "max_wait": "1h"}),
            name="ingest",
        )
        await asyncio.to_thread(daemon.start)
        try:
            status, body, _ = await post(daemon.url + "/v1/batch", {"batch": template_messages()})
            assert (status, body) == (200, {"success": True})
        finally:
            assert await asyncio.to_thread(daemon.stop) == 0
        assert unused.requests == []
    finally:
        await unused.stop()


def multiply(template: Path, data: Path, total: int, dedup_keys: bool) -> float:
    """Copy the template database to ``data`` and grow its outbox to ``total`` rows, with
    their events (and, with ``dedup_keys``, their dedup keys); returns the seconds taken."""
    started = time.monotonic()
    data.mkdir(parents=True)
    source = sqlite3.connect(template / FILE_NAME)
    target = sqlite3.connect(data / FILE_NAME, isolation_level=None)
    source.backup(target)
    source.close()
    # the dedup keys exactly as the journal computes them
    target.create_function(
        "message_key", 2, lambda *key: as_blob(message_key(*key)), deterministic=True
    )
    target.create_function(
        "business_key", 2, lambda *key: as_blob(business_key(*key)), deterministic=True
    )
    # a bulk load: no rollback journal, no fsync; the daemon turns WAL back on when it opens
    target.execute("PRAGMA journal_mode = OFF")
    target.execute("PRAGMA synchronous = OFF")
    target.execute("PRAGMA cache_size = -262144")
    decode = msgspec.msgpack.Decoder(Event).decode
    rows = target.execute(
        "SELECT e.id, e.body, o.destination, o.due_at FROM events e JOIN outbox o"
        " ON o.event = e.id ORDER BY e.id"
    ).fetchall()
    assert [row[0] for row in rows] == list(range(1, TEMPLATES + 1)), "one row per template"
    assert {row[2] for row in rows} == {"hooks"}
    templates = []
    for event_row, body, _, _ in rows:
        event = decode(body)
        assert event.message_id == TOKEN % event_row
        templates.append((event_row % TEMPLATES, event.message_id, event.business_key()))

    target.execute("BEGIN")
    # the templates' rows, copied aside (reading the table being filled would make SQLite
    # stage the whole insert in a temporary table first)
    target.execute(
        "CREATE TEMP TABLE template (slot INTEGER PRIMARY KEY, token TEXT, action TEXT,"
        " received_at REAL, source TEXT, name TEXT, event_id TEXT, body BLOB,"
        " destination TEXT, due_at REAL, seen_at REAL)"
    )
    seen_at = target.execute("SELECT MAX(seen_at) FROM dedup").fetchone()[0]
    for slot, token, action in templates:
        target.execute(
            "INSERT INTO temp.template SELECT ?, ?, ?, e.received_at, e.source, e.name,"
            " e.event_id, e.body, o.destination, o.due_at, ? FROM events e"
            " JOIN outbox o ON o.event = e.id WHERE e.id = ?",
            (slot, token, action, seen_at, slot or TEMPLATES),
        )
    if dedup_keys:  # the keys computed below are the ones the daemon wrote for the templates
        written = {row[0] for row in target.execute("SELECT key FROM dedup")}
        computed = target.execute(
            "SELECT message_key(source, token) FROM temp.template"
            " UNION SELECT business_key(destination, action) FROM temp.template"
        ).fetchall()
        assert written == {row[0] for row in computed}
    sequence = "WITH RECURSIVE seq(n) AS (SELECT ? UNION ALL SELECT n + 1 FROM seq WHERE n < ?) "
    copies = (
        f"SELECT seq.n AS n, printf('{TOKEN}', seq.n) AS new, t.*"
        f" FROM seq JOIN temp.template t ON t.slot = seq.n % {TEMPLATES}"
    )
    bounds = (TEMPLATES + 1, total)
    # events row n carries the token n in its message id, order id and event id
    target.execute(
        sequence + "INSERT INTO events (id, received_at, source, name, event_id, body)"
        " SELECT n, received_at, source, name, replace(event_id, token, new),"
        f" CAST(replace(CAST(body AS TEXT), token, new) AS BLOB) FROM ({copies})",
        bounds,
    )
    # outbox rows as the journal inserts them (attempts, claimed, last_error: defaults)
    target.execute(
        sequence + "INSERT INTO outbox (destination, event, due_at)"
        f" SELECT destination, n, due_at FROM ({copies})",
        bounds,
    )
    if dedup_keys:
        # the keys the journal would have written for each copy (message and business
        # scope), in key order so both of the table's b-trees are filled in order
        target.execute(
            sequence + "INSERT INTO dedup (key, seen_at) SELECT key, seen_at FROM ("
            f" SELECT message_key(source, new) AS key, seen_at FROM ({copies}) UNION ALL"
            f" SELECT business_key(destination, replace(action, token, new)), seen_at"
            f" FROM ({copies})) ORDER BY key",
            bounds,
        )
    target.execute("COMMIT")
    target.execute("PRAGMA journal_mode = WAL")
    counts = [
        target.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        for table in ("events", "outbox", "dedup")
    ]
    assert counts == [total, total, 2 * (total if dedup_keys else TEMPLATES)]
    last = decode(target.execute("SELECT body FROM events WHERE id = ?", (total,)).fetchone()[0])
    assert last.message_id == TOKEN % total
    target.close()
    return time.monotonic() - started


def rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


async def metric(url: str, sample: str) -> float:
    """One sample of ``/metrics``, named with its labels as Prometheus prints them."""
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as answer:
        text = await answer.text()
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {sample} in /metrics")


async def measure(tmp_path: Path, data: Path, name: str, total: int) -> dict[str, Any]:
    """Start the daemon on ``data``, sample its RSS while it delivers, stop it; returns the
    figures and what the fake received."""
    fake = await FakeWebhook(secret="s3cret").start()
    run: dict[str, Any] = {"name": name, "total": total, "fake": fake}
    try:
        daemon = Daemon(tmp_path, config(tmp_path, data, fake.url), name=name)
        began = time.monotonic()
        try:
            await asyncio.to_thread(daemon.start, 120.0)
            run["started"] = time.monotonic() - began
            assert daemon.process is not None
            pid = daemon.process.pid
            run["start_peak"] = rss(pid)[1]  # VmHWM: the highest RSS so far, start-up's
            while (await get(daemon.url + "/readyz"))[0] != 200:
                await asyncio.sleep(0.02)
            run["ready"] = time.monotonic() - began
            samples: list[tuple[float, int]] = []
            sampling = time.monotonic()
            while (at := time.monotonic() - sampling) < SAMPLE_SECONDS:
                samples.append((at, rss(pid)[0]))
                await asyncio.sleep(SAMPLE_EVERY)
            run["samples"] = samples
            run["peak"] = rss(pid)[1]
            run["delivered_in_window"] = len(fake.accepted_events)
            # refreshed every 5 s by the daemon: at most 5 s old
            run["depth_gauge"] = await metric(
                daemon.url, 'tracklayer_outbox_depth{destination="hooks"}'
            )
        finally:
            run["exit"] = await asyncio.to_thread(daemon.stop)
    finally:
        await fake.stop()
    connection = sqlite3.connect(data / FILE_NAME)
    run["outbox_left"], run["oldest_left"] = connection.execute(
        "SELECT COUNT(*), MIN(event) FROM outbox WHERE destination = 'hooks'"
    ).fetchone()
    connection.close()
    return run


async def get(url: str) -> tuple[int, str]:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as answer:
            return answer.status, await answer.text()
    except aiohttp.ClientError:
        return 0, ""


def mb(value: float) -> str:
    return f"{value / 2**20:.1f} MB"


async def test_memory_stays_flat_with_a_1m_event_backlog(tmp_path):
    test_began = time.monotonic()
    template, small, big = tmp_path / "template", tmp_path / "small", tmp_path / "big"
    await ingest_templates(tmp_path, template)
    try:
        build_small = await asyncio.to_thread(multiply, template, small, CONTROL, DEDUP_KEYS)
        build_big = await asyncio.to_thread(multiply, template, big, BACKLOG, DEDUP_KEYS)
        size = (big / FILE_NAME).stat().st_size
        print(
            f"\nbuilt {BACKLOG:,} outbox rows in {build_big:.1f}s ({size / 1e9:.2f} GB),"
            f" {CONTROL:,} in {build_small:.1f}s; dedup keys for the copies: {DEDUP_KEYS}"
        )
        control = await measure(tmp_path, small, "control", CONTROL)
        backlog = await measure(tmp_path, big, "backlog", BACKLOG)
    finally:
        for data in (big, small):
            shutil.rmtree(data, ignore_errors=True)  # ~1.6 GB: do not leave it in /tmp
    for run in (control, backlog):
        report(run)
    excess = backlog["peak"] - control["peak"]
    print(
        f"peak RSS: control {mb(control['peak'])}, 1 M backlog {mb(backlog['peak'])}:"
        f" {mb(excess)} more (bound {mb(PEAK_BOUND)})"
    )

    # delivery progressed, oldest first, with the backlog's events in their right shape
    for run in (control, backlog):
        assert run["exit"] == 0
        check_delivery(run)

    # the backlog stayed on disk: no more memory than the control's, and no growth
    assert excess < PEAK_BOUND, f"the 1 M backlog costs {mb(excess)} more RSS than the control"
    for run in (control, backlog):
        first, last = thirds(run["samples"])
        assert last - first < TREND_BOUND, (
            f"{run['name']}: RSS grew by {mb(last - first)} while delivering"
        )
    print(f"test body took {time.monotonic() - test_began:.1f}s")


def thirds(samples: list[tuple[float, int]]) -> tuple[int, int]:
    """Peak RSS of the first and last third of the samples after the warm-up."""
    steady = [value for at, value in samples if at >= WARM_UP]
    third = len(steady) // 3
    return max(steady[:third]), max(steady[-third:])


def report(run: dict[str, Any]) -> None:
    first, last = thirds(run["samples"])
    values = [value for _, value in run["samples"]]
    requests = run["fake"].requests
    span = requests[-1].at - requests[0].at if len(requests) > 1 else 0.0
    rate = (len(requests) - 1) / span if span else 0.0
    print(
        f"{run['name']:>8} ({run['total']:,} rows): 'started' after {run['started']:.2f}s,"
        f" /readyz 200 after {run['ready']:.2f}s, peak RSS by then {mb(run['start_peak'])}"
    )
    print(
        f"          RSS while delivering: min {mb(min(values))} max {mb(max(values))};"
        f" first third {mb(first)}, last third {mb(last)}; peak (VmHWM) {mb(run['peak'])}"
    )
    print(
        f"          delivered {run['delivered_in_window']:,} events in the"
        f" {SAMPLE_SECONDS:.0f}s window, {len(run['fake'].accepted_events):,} by the stop,"
        f" in {len(requests)} requests ({rate:.2f} req/s); outbox left"
        f" {run['outbox_left']:,} (gauge {run['depth_gauge']:,.0f})"
    )


def check_delivery(run: dict[str, Any]) -> None:
    fake: FakeWebhook = run["fake"]
    assert fake.problems == [], fake.problems  # signature, content type, event fields
    # the token bucket allows RATE_RPS * BATCH events a second; half of that is progress
    expected = int(RATE_RPS * BATCH * SAMPLE_SECONDS * 0.5)
    delivered = run["delivered_in_window"]
    assert delivered >= expected, f"{run['name']}: only {delivered} events delivered"
    events = fake.accepted_events
    assert all(200 <= r.answered < 300 for r in fake.requests)
    by_row: dict[int, dict] = {}
    for event in events:
        match = TOKEN_PATTERN.fullmatch(event["message_id"])
        assert match, event["message_id"]
        row = int(match.group(1))
        assert row not in by_row, f"events row {row} delivered twice"
        by_row[row] = event
    # oldest first: the delivered rows are exactly 1..M and the outbox keeps the rest
    assert sorted(by_row) == list(range(1, len(by_row) + 1))
    assert (run["outbox_left"], run["oldest_left"]) == (
        run["total"] - len(by_row),
        len(by_row) + 1,
    )
    # every copy is its template as the daemon ingested it, but for its own ids
    references = {row % TEMPLATES: by_row[row] for row in range(1, TEMPLATES + 1)}
    for row, event in by_row.items():
        reference = references[row % TEMPLATES]
        token = reference["message_id"]
        expected_event = json.loads(json.dumps(reference).replace(token, TOKEN % row))
        assert event == expected_event, f"events row {row} differs from its template"
    purchase = by_row[1]  # the first template, as sent over HTTP
    assert (purchase["name"], purchase["source_name"]) == ("purchase", "Order Completed")
    assert purchase["user"]["user_id"] == "user-1"
    assert purchase["properties"]["revenue"] == 42.5
    assert purchase["event_id"] == "purchase:" + purchase["message_id"]
    assert purchase["properties"]["order_id"] == purchase["message_id"]
    assert re.fullmatch(r"[0-9a-f]{64}", purchase["user"]["email"])
    assert by_row[2]["name"] == "add_to_cart"
    assert by_row[2]["event_id"] == by_row[2]["message_id"]
