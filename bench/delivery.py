"""TrackLayer delivery benchmark: a stored backlog delivered to a fake Meta Conversions API.

    python bench/delivery.py [--events 200000] [--quick] [--readme FILE | --no-readme]

(``bench/run delivery`` calls this.) What runs, in order:

1. A fake Meta edge starts (bench/fake_platform.py, its own process) in ``hold`` mode (it
   reads a request and never answers: a safety net, nothing should reach it yet).
2. ``tracklayer run`` with one Segment source and one live ``meta`` destination pointed at
   the fake (``endpoint``), batch 1,000 events, delivery held by a bucket that never has a
   token (``rate_limit: {rps: 0.0001, burst: 0.0001}``, ``max_in_flight`` 4: four claimed
   batches wait in it). N Segment ``Order Completed`` events are ingested
   through ``/v1/batch`` (Basic auth with the write key, 500 events per request, 4
   concurrent aiohttp clients), then the daemon is stopped (SIGTERM: the waiting sends are
   cancelled and their rows handed back). The database is counted read-only: N events, N
   outbox rows, none attempted or claimed, no dead letter.
3. The fake switches to answering at once; the daemon starts again on the same database
   with ``max_in_flight`` 4 and a bucket far above what is reached.
   Measured: from its ``started`` log line (or the fake's first request, if earlier) until
   its outbox is empty (read-only ``COUNT(*)`` every 0.2 s): events/s, and the CPU seconds
   of the daemon process (all threads, /proc/PID/stat) per 1,000 events.
4. Baseline, same fake, same machine: a bare aiohttp client (uvloop, as the daemon runs)
   POSTs N/1000 pre-built 1000-event bodies, each the first body TrackLayer sent with the
   event ids made unique again, as fast as it can with the same concurrency (4 in flight).
   That is the HTTP + JSON floor of delivering those events.

Checks: the fake counted N events, N unique event ids, no request over 1,000 events, no
payload problem; the daemon counted N accepted and nothing retried, rejected or dead; the
outbox and the dead-letter table are empty after the stop.

All traffic goes to 127.0.0.1; every process started here is stopped by its pid and the
temp dir removed, also on errors, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import json
import math
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import msgspec
from benchlib import (
    BENCH,
    PYTHON,
    TICK,
    CpuMeter,
    console_table,
    log,
    machine,
    process_ticks,
    start,
    stop,
    stop_all,
    tail,
    update_section,
    wait_for_quiet,
    wait_started,
)

WRITE_KEY = "bench_write_key"
PIXEL = "123456789012345"
TOKEN = "bench-meta-token"
SINK = "main"
DESTINATION = "meta"
BAD_OUTCOMES = ("retried", "warning", "rejected", "dead")

_encode = msgspec.json.Encoder().encode


# the fake platform ---------------------------------------------------------------------------


class Fake:
    """bench/fake_platform.py in its own process, and its control routes."""

    def __init__(self, workdir: Path, argv: list[str]) -> None:
        self.logfile = workdir / "fake_platform.log"
        self.proc = start([PYTHON, str(BENCH / "fake_platform.py"), *argv], self.logfile)
        self.address = wait_started(self.proc, self.logfile)
        self.base = f"http://{self.address}"

    def call(self, method: str, route: str, **query) -> bytes:
        url = f"{self.base}/_control/{route}?" + "&".join(f"{k}={v}" for k, v in query.items())
        request = urllib.request.Request(url, method=method)
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.read()

    def mode(self, sink: str, mode: str) -> None:
        self.call("POST", "mode", sink=sink, mode=mode)

    def reset(self, sink: str) -> None:
        self.call("POST", "reset", sink=sink)

    def stats(self, sink: str, detail: bool = False) -> dict:
        return json.loads(self.call("GET", "stats", sink=sink, detail="1" if detail else "0"))

    def sample(self, sink: str) -> bytes:
        return self.call("GET", "sample", sink=sink)

    def ticks(self) -> int:
        return process_ticks(self.proc.pid)

    def stop(self) -> None:
        stop(self.proc)


# the daemon --------------------------------------------------------------------------------


class Daemon:
    """``tracklayer run --config FILE`` on a data dir that outlives one process."""

    def __init__(self, directory: Path, name: str, config_text: str) -> None:
        self.dir = directory
        self.config = directory / f"{name}.yaml"
        self.config.write_text(config_text)
        self.logfile = directory / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.address = ""
        self.started_at = 0.0  # wall time of the "started" log line

    def start(self, timeout: float = 120.0) -> Daemon:
        self.proc = start(
            [PYTHON, "-m", "tracklayer", "run", "--config", str(self.config)], self.logfile
        )
        self.address = wait_started(self.proc, self.logfile, timeout=timeout)
        self.started_at = time.time()
        for line in self.logfile.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                entry = json.loads(line)
                if entry.get("msg") == "started":
                    moment = datetime.datetime.fromisoformat(entry["ts"])
                    self.started_at = min(self.started_at, moment.timestamp())
                    break
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        code = stop(self.proc, timeout=60)
        self.proc = None
        return code

    def metrics(self) -> dict[str, float]:
        samples: dict[str, float] = {}
        try:
            with urllib.request.urlopen(f"http://{self.address}/metrics", timeout=10) as answer:
                text = answer.read().decode()
        except OSError:
            return samples
        for line in text.splitlines():
            if line.startswith("tracklayer_") and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    samples[key] = float(value)
        return samples

    def rss_kib(self) -> dict[str, int]:
        """VmRSS (now) and VmHWM (peak) of the running daemon, in KiB."""
        out = {}
        with contextlib.suppress(OSError, TypeError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
        return out


def log_entry(logfile: Path, message: str) -> dict:
    """The first JSON log line of the daemon with this ``msg`` ({} when none)."""
    for line in logfile.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, AttributeError):
            entry = json.loads(line)
            if entry.get("msg") == message:
                return entry
    return {}


def deliveries(metrics: dict[str, float], destination: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if key.startswith("tracklayer_deliveries_total{") and f'destination="{destination}"' in key:
            outcome = key.split('outcome="', 1)[1].split('"', 1)[0]
            out[outcome] = out.get(outcome, 0.0) + value
    return out


def database(data_dir: Path) -> dict:
    """Counts from the daemon's SQLite file, read-only (safe while it runs: WAL)."""
    connection = sqlite3.connect(f"file:{data_dir / 'tracklayer.db'}?mode=ro", uri=True, timeout=30)
    try:

        def one(query: str, *params):
            return connection.execute(query, params).fetchall()[0][0]

        return {
            "events": one("SELECT COUNT(*) FROM events"),
            "outbox": dict(
                connection.execute(
                    "SELECT destination, COUNT(*) FROM outbox GROUP BY destination"
                ).fetchall()
            ),
            "claimed": one("SELECT COUNT(*) FROM outbox WHERE claimed != 0"),
            "attempted": one("SELECT COUNT(*) FROM outbox WHERE attempts > 0"),
            "dead_letters": one("SELECT COUNT(*) FROM dead_letters"),
        }
    finally:
        connection.close()


def outbox_count(data_dir: Path, destination: str | None = None, unclaimed: bool = False) -> int:
    connection = sqlite3.connect(f"file:{data_dir / 'tracklayer.db'}?mode=ro", uri=True, timeout=30)
    try:
        where, params = [], []
        if destination:
            where.append("destination = ?")
            params.append(destination)
        if unclaimed:
            where.append("claimed = 0")
        query = "SELECT COUNT(*) FROM outbox" + (" WHERE " + " AND ".join(where) if where else "")
        return connection.execute(query, params).fetchall()[0][0]
    finally:
        connection.close()


# Segment events ----------------------------------------------------------------------------


def iso_now() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def order_completed(message_id: str, number: int, timestamp: str) -> dict:
    """The Segment ``Order Completed`` track call bench/common.lua sends (about 700 bytes):
    email, phone and names to hash, IP and user agent, one product; unique messageId and
    order_id, 50,000 distinct users."""
    user = number % 50000
    return {
        "type": "track",
        "messageId": message_id,
        "userId": f"user-{user}",
        "anonymousId": f"anon-{message_id}",
        "event": "Order Completed",
        "timestamp": timestamp,
        "properties": {
            "order_id": f"o-{message_id}",
            "revenue": 42.5,
            "currency": "USD",
            "coupon": "WELCOME10",
            "products": [
                {
                    "product_id": "sku-1001",
                    "name": "Blue T-Shirt",
                    "price": 21.25,
                    "quantity": 2,
                    "category": "Apparel",
                }
            ],
        },
        "context": {
            "ip": "203.0.113.7",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like "
            "Gecko) Chrome/124.0 Safari/537.36",
            "page": {
                "url": "https://shop.example.com/checkout/thank-you",
                "referrer": "https://shop.example.com/cart",
            },
            "traits": {
                "email": f"customer{user}@example.com",
                "phone": f"+1415555{number % 10000:04d}",
                "firstName": "Ada",
                "lastName": "Lovelace",
            },
            "library": {"name": "analytics-python", "version": "2.3.3"},
        },
    }


def batch_body(messages: list[dict]) -> bytes:
    return _encode({"batch": messages, "sentAt": iso_now()})


AUTH = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


async def post_batch(session, url: str, body: bytes, count: int, tally: dict) -> bool:
    """One ``/v1/batch`` request, retried (same body, same messageIds: the daemon drops the
    repeats) on a 5xx or a transport error, as Segment's clients do. True when acknowledged."""
    for attempt in range(5):
        try:
            async with session.post(url, data=body, headers=AUTH) as answer:
                text = await answer.read()
                if answer.status == 200:
                    document = json.loads(text)
                    if document.get("rejected"):
                        tally["rejected"] += len(document["rejected"])
                        tally["sample_error"] = tally["sample_error"] or text[:300].decode()
                    tally["acked"] += document.get("accepted", count)
                    tally["ok_requests"] += 1
                    return True
                tally["non200"] += 1
                tally["sample_error"] = tally["sample_error"] or f"{answer.status} {text[:300]!r}"
                if answer.status < 500 and answer.status != 429:
                    return False
        except Exception as error:  # transport errors, timeouts, unreadable answers
            tally["errors"] += 1
            tally["sample_error"] = tally["sample_error"] or repr(error)
        tally["retries"] += 1
        await asyncio.sleep(0.5 * (attempt + 1))
    return False


async def ingest(address: str, total: int, per_request: int, clients: int, run: str) -> dict:
    """Send ``total`` events through ``/v1/batch`` as fast as ``clients`` connections go."""
    import aiohttp

    url = f"http://{address}/v1/batch"
    tally = dict(acked=0, ok_requests=0, non200=0, errors=0, retries=0, rejected=0, sample_error="")
    next_index = 0
    began = time.monotonic()
    last_log = began

    async def client(session) -> None:
        nonlocal next_index, last_log
        while next_index < total:
            first = next_index
            count = min(per_request, total - first)
            next_index += count
            stamp = iso_now()
            body = batch_body(
                [order_completed(f"{run}-{i}", i, stamp) for i in range(first, first + count)]
            )
            await post_batch(session, url, body, count, tally)
            if time.monotonic() - last_log > 10:
                last_log = time.monotonic()
                rate = tally["acked"] / (last_log - began)
                log(f"  ingested {tally['acked']:,} of {total:,} ({rate:,.0f} events/s)")

    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=clients)
    ) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    tally["seconds"] = time.monotonic() - began
    tally["sent"] = total
    return tally


# config ------------------------------------------------------------------------------------


def daemon_config(data_dir: Path, endpoint: str, args, held: bool) -> str:
    if held:
        # Delivery held: a bucket that never yields a token (capacity and refill 0.0001);
        # the batches claimed meanwhile wait in it, and the stop cancels them (their rows
        # stay queued). Nothing is sent, no attempt is counted; the fake holds what would come.
        rate = "{rps: 0.0001, burst: 0.0001}   # no token ever: delivery held"
        in_flight = args.in_flight
        purpose = "backlog build: delivery held"
    else:
        rate = "{rps: 100000, burst: 100000}   # far above what is reached: not the limit"
        in_flight = args.in_flight
        purpose = "measured delivery"
    return f"""\
# Written by bench/delivery.py ({purpose}).
server:
  listen: 127.0.0.1:0
  max_body_bytes: 8000000
storage:
  path: {data_dir}
  durability: process
dedup:
  window: 48h
  expected_keys: {max(1_000_000, 2 * args.events)}
  false_positive_rate: 0.001
sources:
  - id: segment
    type: segment
    write_keys: ["{WRITE_KEY}"]
destinations:
  - id: {DESTINATION}
    type: meta
    mode: live
    endpoint: {endpoint}
    pixel_id: "{PIXEL}"
    access_token: {TOKEN}
    batch: {{max_events: {args.batch}, max_wait: 1s}}
    rate_limit: {rate}
    max_in_flight: {in_flight}
"""


# the benchmark -----------------------------------------------------------------------------


def build_backlog(workdir: Path, fake: Fake, args) -> dict:
    data_dir = workdir / "data"
    fake.mode(SINK, "hold")
    endpoint = f"{fake.base}/meta/{SINK}"
    daemon = Daemon(workdir, "backlog", daemon_config(data_dir, endpoint, args, held=True))
    daemon.start()
    log(
        f"backlog: ingesting {args.events:,} events through /v1/batch "
        f"({args.ingest_batch}/request, {args.ingest_clients} clients); the fake holds sends"
    )
    run = f"d{int(time.time()) % 100000:05d}"
    tally = asyncio.run(
        ingest(daemon.address, args.events, args.ingest_batch, args.ingest_clients, run)
    )
    log(
        f"backlog: {tally['acked']:,} acknowledged in {tally['seconds']:.1f} s "
        f"({tally['acked'] / tally['seconds']:,.0f} events/s); stopping the daemon"
    )
    tally["rss_kib"] = daemon.rss_kib()
    stopped = time.monotonic()
    code = daemon.stop()
    tally["stop_seconds"] = time.monotonic() - stopped
    tally["exit_code"] = code
    db = database(data_dir)
    held = fake.stats(SINK)
    tally["db"] = db
    tally["held_requests"] = held["held"]
    tally["fake_accepted"] = held["events"]
    tally["ok"] = (
        tally["acked"] == args.events
        and db["events"] == args.events
        and db["outbox"].get(DESTINATION, 0) == args.events
        and db["claimed"] == 0
        and db["attempted"] == 0
        and db["dead_letters"] == 0
        and held["events"] == 0
        and code == 0
    )
    log(
        f"backlog: {db['events']:,} events stored, {db['outbox'].get(DESTINATION, 0):,} outbox "
        f"rows, {db['attempted']} attempted, {db['claimed']} claimed, {db['dead_letters']} dead; "
        f"daemon exit {code} after {tally['stop_seconds']:.1f} s "
        f"({'OK' if tally['ok'] else 'NOT AS EXPECTED'})"
    )
    return tally


def measure_delivery(workdir: Path, fake: Fake, args) -> dict:
    data_dir = workdir / "data"
    fake.reset(SINK)
    fake.mode(SINK, "ok")
    endpoint = f"{fake.base}/meta/{SINK}"
    wait_for_quiet(args.quiet_wait)
    log("delivery: restarting the daemon with the fake answering at once")
    daemon = Daemon(workdir, "deliver", daemon_config(data_dir, endpoint, args, held=False))
    daemon.start()
    cpu0 = process_ticks(daemon.pid)
    fake0 = fake.ticks()
    meter = CpuMeter(daemon.pid)
    deadline = time.monotonic() + args.deliver_timeout
    left = args.events
    last_log = time.monotonic()
    while True:
        left = outbox_count(data_dir, DESTINATION)
        now = time.time()
        if left == 0 or time.monotonic() > deadline or daemon.proc.poll() is not None:
            break
        if time.monotonic() - last_log > 10:
            last_log = time.monotonic()
            log(f"  outbox {left:,} rows left")
        time.sleep(0.2)
    cpu1 = process_ticks(daemon.pid)
    fake1 = fake.ticks()
    cpu = meter.result()
    stats = fake.stats(SINK)
    first = stats["first_at"] or now
    began = min(daemon.started_at, first)
    seconds = now - began
    metrics = daemon.metrics()
    rss = daemon.rss_kib()
    code = daemon.stop()
    rebuilt = log_entry(daemon.logfile, "dedup filter rebuilt")
    db = database(data_dir)
    outcomes = deliveries(metrics, DESTINATION)
    cpu_seconds = (cpu1 - cpu0) / TICK
    fake_cores = (fake1 - fake0) / TICK / cpu["wall"]
    delivered = stats["unique"]
    result = {
        "seconds": seconds,
        "events_per_s": delivered / seconds if seconds > 0 else 0.0,
        "cpu_seconds": cpu_seconds,
        "cpu_per_1k": cpu_seconds / (delivered / 1000) if delivered else 0.0,
        "cores": cpu_seconds / seconds if seconds > 0 else 0.0,
        "first_request_after": first - daemon.started_at,
        "fake_span": stats["last_at"] - stats["first_at"] if stats["first_at"] else 0.0,
        "fake": stats,
        "fake_cores": fake_cores,
        "other_cores": max(0.0, cpu["other_cores"] - fake_cores),
        "steal": cpu["steal"],
        "outcomes": outcomes,
        "rss_kib": rss,
        "dedup_rebuild": rebuilt,
        "exit_code": code,
        "db": db,
        "timed_out": left != 0,
    }
    result["ok"] = (
        not result["timed_out"]
        and stats["events"] == args.events
        and stats["unique"] == args.events
        and stats["duplicates"] == 0
        and stats["max_batch"] <= 1000
        and stats["oversize_batches"] == 0
        and stats["problem_count"] == 0
        and outcomes.get("accepted", 0) == args.events
        and not any(outcomes.get(k, 0) for k in BAD_OUTCOMES)
        and sum(db["outbox"].values()) == 0
        and db["dead_letters"] == 0
        and code == 0
    )
    log(
        f"delivery: {delivered:,} events in {seconds:.1f} s ({result['events_per_s']:,.0f}/s), "
        f"{cpu_seconds:.1f} CPU s ({result['cpu_per_1k']:.3f} per 1k); "
        f"{'OK' if result['ok'] else 'CHECK FAILED'}"
    )
    return result


def baseline_bodies(sample: bytes, total: int, per_request: int) -> tuple[str, dict, list]:
    """N/1000 request bodies shaped exactly like the one TrackLayer sent, ids made unique."""
    document = msgspec.json.decode(sample)
    template = document["data"]
    bodies = []
    for number in range(math.ceil(total / per_request)):
        count = min(per_request, total - number * per_request)
        data = []
        for j in range(count):
            event = dict(template[j % len(template)])
            event["event_id"] = f"baseline-{number}-{j}"
            data.append(event)
        body = {key: value for key, value in document.items() if key != "data"}
        bodies.append((count, _encode({"data": data, **body})))
    return document.get("access_token", ""), document, bodies


async def _post_all(url: str, headers: dict, bodies: list, in_flight: int) -> dict:
    import aiohttp

    queue = list(reversed(bodies))
    tally = {"requests": 0, "events": 0, "bad": 0, "sample_error": ""}

    async def client(session) -> None:
        while queue:
            count, body = queue.pop()
            async with session.post(url, data=body, headers=headers) as answer:
                text = await answer.read()
                received = msgspec.json.decode(text).get("events_received") if text else None
                if answer.status != 200 or received != count:
                    tally["bad"] += 1
                    tally["sample_error"] = tally["sample_error"] or f"{answer.status} {text[:200]}"
                tally["requests"] += 1
                tally["events"] += count

    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=10),
        connector=aiohttp.TCPConnector(limit=in_flight),
    ) as session:
        began = time.perf_counter()
        cpu0 = time.process_time()
        await asyncio.gather(*(client(session) for _ in range(in_flight)))
        tally["seconds"] = time.perf_counter() - began
        tally["cpu_seconds"] = time.process_time() - cpu0
    return tally


def measure_baseline(workdir: Path, fake: Fake, args) -> dict:
    sample = fake.sample(SINK)
    _, document, bodies = baseline_bodies(sample, args.events, args.batch)
    sent_bytes = sum(len(body) for _, body in bodies)
    log(
        f"baseline: {len(bodies)} pre-built bodies of {len(document['data'])} events "
        f"({sent_bytes / len(bodies) / 1024:.0f} KiB each) shaped like TrackLayer's; "
        f"bare aiohttp client, {args.in_flight} in flight"
    )
    fake.reset(SINK)
    fake.mode(SINK, "ok")
    wait_for_quiet(args.quiet_wait)
    url = f"{fake.base}/meta/{SINK}/v26.0/{PIXEL}/events"
    headers = {"Content-Type": "application/json", "User-Agent": "bench-baseline"}
    fake0 = fake.ticks()
    meter = CpuMeter(None)
    try:
        import uvloop

        tally = uvloop.run(_post_all(url, headers, bodies, args.in_flight))
    except ImportError:
        tally = asyncio.run(_post_all(url, headers, bodies, args.in_flight))
    cpu = meter.result()
    fake_cores = (fake.ticks() - fake0) / TICK / cpu["wall"]
    stats = fake.stats(SINK)
    seconds = tally["seconds"]
    result = {
        **tally,
        "events_per_s": stats["unique"] / seconds if seconds else 0.0,
        "cpu_per_1k": tally["cpu_seconds"] / (tally["events"] / 1000) if tally["events"] else 0,
        "cores": tally["cpu_seconds"] / seconds if seconds else 0.0,
        "fake": stats,
        "fake_cores": fake_cores,
        "other_cores": max(0.0, cpu["other_cores"] - fake_cores),
        "steal": cpu["steal"],
        "body_kib": sent_bytes / len(bodies) / 1024,
    }
    result["ok"] = (
        tally["bad"] == 0
        and stats["unique"] == args.events
        and stats["duplicates"] == 0
        and stats["problem_count"] == 0
    )
    log(
        f"baseline: {stats['unique']:,} events in {seconds:.2f} s "
        f"({result['events_per_s']:,.0f}/s), {tally['cpu_seconds']:.2f} CPU s "
        f"({result['cpu_per_1k']:.4f} per 1k)"
    )
    return result


# output ------------------------------------------------------------------------------------


def command_line(args) -> str:
    shown = ["bench/delivery.py"]
    if args.quick:
        shown.append("--quick")
    elif args.events != 200_000:
        shown.append(f"--events {args.events}")
    return " ".join(shown)


def machine_line(info: dict) -> str:
    return (
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} RAM, Linux "
        f"{info['kernel']}; Python {info['python']}, aiohttp {info['aiohttp']}, uvloop "
        f"{info['uvloop']}, msgspec {info['msgspec']}, SQLite {info['sqlite']}. The daemon, the "
        "fake platform and the client share these CPUs. TrackLayer sources measured: sha256 "
        f"`{info['tracklayer_sources']}` of `tracklayer/**/*.py`."
    )


def render(info: dict, backlog: dict, run: dict, base: dict, args, started: str) -> str:
    rate_ratio = run["events_per_s"] / base["events_per_s"] if base["events_per_s"] else 0.0
    cpu_ratio = run["cpu_per_1k"] / base["cpu_per_1k"] if base["cpu_per_1k"] else 0.0
    stats, outcomes, db = run["fake"], run["outcomes"], run["db"]
    left = sum(db["outbox"].values())
    checks_ok = backlog["ok"] and run["ok"] and base["ok"]
    disturbed = [
        name
        for name, r in (("TrackLayer", run), ("baseline", base))
        if r["other_cores"] > 0.3 or r["steal"] > 0.1
    ]
    lines = [
        "## Delivery",
        "",
        f"_Generated by `{command_line(args)}` at {started} (UTC); rerunning replaces this "
        "section._",
        "",
        machine_line(info),
        "",
        f"Command: `{command_line(args)}` (backlog of {args.events:,} events, Meta batches of "
        f"{args.batch:,}, {args.in_flight} requests in flight).",
        "",
        "| measure | TrackLayer | baseline (bare aiohttp client, same payloads) | ratio |",
        "|---|---|---|---|",
        f"| events/s delivered | {run['events_per_s']:,.0f} | {base['events_per_s']:,.0f} "
        f"| **{rate_ratio:.2f}x** |",
        f"| CPU seconds per 1k events (sender process, all threads) | {run['cpu_per_1k']:.3f} "
        f"| {base['cpu_per_1k']:.4f} | **{cpu_ratio:.1f}x** |",
        f"| wall time for {args.events:,} events | {run['seconds']:.1f} s | "
        f"{base['seconds']:.2f} s | |",
        f"| CPU seconds in all | {run['cpu_seconds']:.1f} | {base['cpu_seconds']:.2f} | |",
        f"| sender cores busy on average | {run['cores']:.2f} | {base['cores']:.2f} | |",
        f"| requests to the fake (largest batch) | {stats['requests']:,} ({stats['max_batch']}) "
        f"| {base['fake']['requests']:,} ({base['fake']['max_batch']}) | |",
        f"| fake platform cores busy | {run['fake_cores']:.2f} | {base['fake_cores']:.2f} | |",
        f"| other processes, cores / steal | {run['other_cores']:.2f} / {run['steal']:.1%} "
        f"| {base['other_cores']:.2f} / {base['steal']:.1%} | |",
        "",
        f"No goal is set for this benchmark. Checks: **{'OK' if checks_ok else 'FAILED'}**.",
    ]
    if disturbed:
        lines += [
            "",
            "**Disturbed:** other processes used more than 0.3 cores, or the hypervisor stole "
            f"more than 10% of the CPU, during {', '.join(disturbed)}; those figures are off "
            "by an unknown amount.",
        ]
    db_b = backlog["db"]
    lines += [
        "",
        "### Checks",
        "",
        "| check | expected | seen | |",
        "|---|---|---|---|",
        f"| backlog: events acknowledged by `/v1/batch` | {args.events:,} | "
        f"{backlog['acked']:,} (non-2xx {backlog['non200']}, transport errors "
        f"{backlog['errors']}, rejected {backlog['rejected']}) | "
        f"{ok(backlog['acked'] == args.events)} |",
        f"| backlog: rows in `events` / meta rows in `outbox` after the stop | {args.events:,} / "
        f"{args.events:,} | {db_b['events']:,} / {db_b['outbox'].get(DESTINATION, 0):,} | "
        f"{ok(db_b['events'] == args.events == db_b['outbox'].get(DESTINATION, 0))} |",
        f"| backlog: outbox rows attempted or claimed, dead letters, events the fake accepted "
        f"| 0, 0, 0, 0 | {db_b['attempted']}, {db_b['claimed']}, {db_b['dead_letters']}, "
        f"{backlog['fake_accepted']} | "
        f"{ok(not (db_b['attempted'] or db_b['claimed'] or db_b['dead_letters']))} |",
        f"| delivery: events the fake accepted / unique event ids / duplicates | "
        f"{args.events:,} / {args.events:,} / 0 | {stats['events']:,} / {stats['unique']:,} / "
        f"{stats['duplicates']:,} | "
        f"{ok(stats['events'] == stats['unique'] == args.events and not stats['duplicates'])} |",
        f"| delivery: largest request (events), requests over 1,000 | <= 1,000, 0 | "
        f"{stats['max_batch']:,}, {stats['oversize_batches']} | "
        f"{ok(stats['max_batch'] <= 1000 and not stats['oversize_batches'])} |",
        f"| delivery: payload problems seen by the fake ({stats['deep_checked']:,} events "
        f"through the test suite's full Meta checks) | 0 | {stats['problem_count']} | "
        f"{ok(not stats['problem_count'])} |",
        f"| delivery: `tracklayer_deliveries_total` accepted | {args.events:,} | "
        f"{outcomes.get('accepted', 0):,.0f} | {ok(outcomes.get('accepted', 0) == args.events)} |",
        f"| delivery: retried / warning / rejected / dead | 0 / 0 / 0 / 0 | "
        f"{' / '.join(f'{outcomes.get(k, 0):,.0f}' for k in BAD_OUTCOMES)} | "
        f"{ok(not any(outcomes.get(k, 0) for k in BAD_OUTCOMES))} |",
        f"| delivery: outbox rows / dead letters after the stop, exit code | 0 / 0, 0 | "
        f"{left:,} / {db['dead_letters']:,}, {run['exit_code']} | "
        f"{ok(not left and not db['dead_letters'] and run['exit_code'] == 0)} |",
        f"| baseline: events the fake accepted, unique | {args.events:,} | "
        f"{base['fake']['unique']:,} (bad answers {base['bad']}) | {ok(base['ok'])} |",
    ]
    if stats["problems"]:
        lines += [
            "",
            "Problems the fake saw (first ones): `" + "; ".join(stats["problems"][:5]) + "`",
        ]
    if backlog["sample_error"]:
        lines += ["", f"First ingest error: `{backlog['sample_error'][:300]}`"]
    rss = run["rss_kib"]
    lines += [
        "",
        "### Settings",
        "",
        "- Backlog: `tracklayer run --config FILE`, one Segment source, `storage.durability: "
        "process`, one live `meta` destination whose `endpoint` is the fake "
        f"(bench/fake_platform.py), `batch: {{max_events: {args.batch}, max_wait: 1s}}`, "
        f"`max_in_flight: {args.in_flight}`, `rate_limit: {{rps: 100000}}` (never the limit). "
        f"{args.events:,} Segment `Order Completed` events (the ingest benchmark's body: email, "
        "phone, names, IP, user agent, one product; unique `messageId` and `order_id`) through "
        f"`/v1/batch`, {args.ingest_batch} per request, {args.ingest_clients} aiohttp clients: "
        f"{backlog['acked'] / backlog['seconds']:,.0f} events/s ({backlog['seconds']:.0f} s). "
        "Meanwhile delivery was held: `rate_limit: {rps: 0.0001, burst: 0.0001}` (the bucket "
        "never has a token), so the claimed batches waited for a token and nothing was sent "
        "(the fake, holding any request "
        f"unanswered as a safety net, saw {backlog['held_requests']}). The daemon was stopped "
        f"with SIGTERM (exit {backlog['exit_code']} after {backlog['stop_seconds']:.1f} s: it "
        "waits up to 10 s for sends in flight, then cancels them; their rows stay queued). "
        f"Daemon peak RSS while ingesting: {backlog['rss_kib'].get('VmHWM', 0) / 1024:,.0f} MiB.",
        "- Measured: the daemon restarted on the same database with the fake answering at once. "
        "From its `started` log line (or the fake's first request if earlier; "
        f"the first came {run['first_request_after']:.2f} s after it) until a read-only "
        "`SELECT COUNT(*) FROM outbox` (every 0.2 s) found the outbox empty: "
        f"{run['seconds']:.1f} s; the fake's first to last request {run['fake_span']:.1f} s. "
        "CPU: utime + stime of the daemon (all threads) from /proc/PID/stat over the same "
        f"interval. Daemon RSS at the end {rss.get('VmRSS', 0) / 1024:.0f} MiB, peak "
        f"{rss.get('VmHWM', 0) / 1024:.0f} MiB."
        + (
            f" The daemon rebuilds its dedup filter after `started`, in the background: "
            f"{run['dedup_rebuild'].get('keys', 0):,} keys in "
            f"{run['dedup_rebuild'].get('seconds', 0):.1f} s, inside the measured interval "
            "(part of what a restart with a backlog costs)."
            if run["dedup_rebuild"]
            else ""
        ),
        f"- Baseline: the first request body TrackLayer sent ({base['body_kib']:.0f} KiB for "
        f"{args.batch:,} events) re-used as "
        f"template, event ids made unique, {math.ceil(args.events / args.batch)} bodies built "
        f"before the clock starts; one aiohttp `ClientSession` (uvloop, "
        f"`TCPConnector(limit={args.in_flight})`), {args.in_flight} coroutines POSTing to the "
        "same fake until all are answered; CPU is this process's `time.process_time()`.",
        "- The fake checks each request's path, token, `data` of 1 to 1,000 events, each "
        "event's `event_id`, `event_name`, integer `event_time`, `action_source` and "
        "`user_data` (a typed msgspec decode, so the fake stays cheap); every event of the "
        "first request and of one request in 20 after it also goes through the test suite's "
        "full Meta checks (`tests/fakes/meta.py`); it records every event id.",
    ]
    return "\n".join(lines) + "\n"


def ok(condition: bool) -> str:
    return "OK" if condition else "**FAILED**"


def render_console(backlog: dict, run: dict, base: dict) -> str:
    rate_ratio = run["events_per_s"] / base["events_per_s"] if base["events_per_s"] else 0.0
    cpu_ratio = run["cpu_per_1k"] / base["cpu_per_1k"] if base["cpu_per_1k"] else 0.0
    rows = [
        ("delivery", "TrackLayer", "baseline", "ratio"),
        (
            "events/s",
            f"{run['events_per_s']:,.0f}",
            f"{base['events_per_s']:,.0f}",
            f"{rate_ratio:.2f}x",
        ),
        (
            "CPU s per 1k events",
            f"{run['cpu_per_1k']:.3f}",
            f"{base['cpu_per_1k']:.4f}",
            f"{cpu_ratio:.1f}x",
        ),
        ("wall time", f"{run['seconds']:.1f} s", f"{base['seconds']:.2f} s", ""),
        ("requests (largest)", f"{run['fake']['requests']} ({run['fake']['max_batch']})", "", ""),
        (
            "checks",
            "OK" if run["ok"] else "FAILED",
            "OK" if base["ok"] else "FAILED",
            f"backlog {'OK' if backlog['ok'] else 'FAILED'}",
        ),
    ]
    return console_table(rows)


# main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description="TrackLayer delivery benchmark")
    parser.add_argument("--events", type=int, default=200_000, help="backlog size")
    parser.add_argument("--quick", action="store_true", help="a small run (10,000 events)")
    parser.add_argument("--batch", type=int, default=1000, help="Meta batch.max_events")
    parser.add_argument("--in-flight", type=int, default=4, help="max_in_flight, both senders")
    parser.add_argument("--ingest-batch", type=int, default=500)
    parser.add_argument("--ingest-clients", type=int, default=4)
    parser.add_argument(
        "--deliver-timeout", type=float, default=420.0, help="give up on delivery after this"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=20.0,
        help="seconds to wait at most, before each measured run, for other processes to go quiet",
    )
    parser.add_argument("--readme", type=Path, default=BENCH / "README.md")
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--json", type=Path, help="write all results as JSON here")
    args = parser.parse_args()
    if args.quick:
        args.events = min(args.events, 10_000)
        args.quiet_wait = min(args.quiet_wait, 4.0)

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    workdir = Path(tempfile.mkdtemp(prefix="tracklayer-delivery-"))
    began = time.monotonic()
    try:
        info = machine()
        fake = Fake(workdir, ["--meta", f"{SINK}={PIXEL}:{TOKEN}"])
        backlog = build_backlog(workdir, fake, args)
        if not backlog["ok"]:
            log("backlog is not as expected; measuring anyway (see the checks)")
        run = measure_delivery(workdir, fake, args)
        if not run["fake"]["first_at"]:
            raise RuntimeError("the daemon delivered nothing to the fake: no body to copy")
        base = measure_baseline(workdir, fake, args)
        fake.stop()
    except BaseException:
        for logfile in sorted(workdir.rglob("*.log")):
            print(f"--- {logfile.relative_to(workdir)}\n{tail(logfile)}", file=sys.stderr)
        raise
    finally:
        stop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    print(render_console(backlog, run, base))
    text = render(info, backlog, run, base, args, started)
    if not args.no_readme:
        update_section(args.readme, "delivery", text)
        log(f"wrote {args.readme}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": info, "backlog": backlog, "run": run, "baseline": base}, indent=1
            )
        )
    log(f"done in {time.monotonic() - began:.0f} s")
    return 0 if backlog["ok"] and run["ok"] and base["ok"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all()
