"""TrackLayer backlog benchmark: a BFCM-style spike into a rate-limited destination.

    python bench/spike.py [--spike-seconds 60] [--quick] [--readme FILE | --no-readme]

(``bench/run spike`` calls this.) One ``tracklayer run`` with one Segment source and two
live webhook destinations, each with its own fake receiver (bench/fake_platform.py, one
process, answering at once):

- ``limited``: ``rate_limit: {rps: 50}`` and ``batch: {max_events: 10, max_wait: 200ms}``,
  so it drains at most 50 x 10 = 500 events/s;
- ``fast``: ``rate_limit: {rps: 1000, burst: 1000}``, ``batch: {max_events: 100,
  max_wait: 200ms}``: never limited here.

Open-loop load (Segment ``Order Completed`` calls through ``/v1/batch``, 10 events per
request, sent on a fixed schedule whatever the answers take): the normal rate R (100
events/s) for ``--pre-seconds``, then 10 x R for ``--spike-seconds`` (more than ``limited``
can drain: its backlog grows by about 500 events/s), then R again until its backlog has
drained (bounded by ``--max-drain-seconds``), plus a few seconds.

Measured: the daemon's RSS (VmRSS from /proc/PID/status every 0.5 s, and VmHWM); the
outbox of each destination (read-only SQLite count every 0.5 s); ``limited``'s drain rate
in requests/s (the fake's receipt times) over the interval its backlog was non-empty
(at least 10 batches waiting unclaimed), against its bucket (goal: within 5 % of 50/s);
``fast``'s delivery latency (fake receipt minus the event's ``received_at``) p50/p99
before, during and after the spike; and that every event the daemon acknowledged reached
each fake exactly once (the fakes record every ``message_id``), with no dead letter.

``--control`` then reruns the same load with ``limited`` unthrottled (batch 100, bucket
1,000 requests/s, so no backlog forms): ``fast``'s latency during that spike is what the
load alone costs, and the first run's is compared with it.

All traffic goes to 127.0.0.1; every process started here is stopped by its pid and the
temp dir removed, also on errors, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import json
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec
from benchlib import (
    BENCH,
    TICK,
    CpuMeter,
    console_table,
    log,
    machine,
    process_ticks,
    stop_all,
    tail,
    update_section,
    wait_for_quiet,
)
from delivery import (
    AUTH,
    WRITE_KEY,
    Daemon,
    Fake,
    deliveries,
    iso_now,
    machine_line,
    order_completed,
)

SECRET = "bench-hook-secret"
LIMITED, FAST = "limited", "fast"
GOAL_TOLERANCE = 0.05
_encode = msgspec.json.Encoder().encode


def daemon_config(data_dir: Path, fake: Fake, args) -> str:
    return f"""\
# Written by bench/spike.py.
server:
  listen: 127.0.0.1:0
storage:
  path: {data_dir}
  durability: process
dedup:
  window: 48h
  expected_keys: 1000000
  false_positive_rate: 0.001
sources:
  - id: segment
    type: segment
    write_keys: ["{WRITE_KEY}"]
destinations:
  - id: {LIMITED}
    type: webhook
    mode: live
    url: {fake.base}/hook/{LIMITED}
    secret: {SECRET}
    rate_limit: {{rps: {args.bucket_rps:g}}}
    batch: {{max_events: {args.limited_batch}, max_wait: 200ms}}
  - id: {FAST}
    type: webhook
    mode: live
    url: {fake.base}/hook/{FAST}
    secret: {SECRET}
    rate_limit: {{rps: 1000, burst: 1000}}
    batch: {{max_events: 100, max_wait: 200ms}}
"""


# sampling ----------------------------------------------------------------------------------


class Sampler:
    """Two threads, each every 0.5 s: the daemon process (RSS, CPU ticks, and how long its
    main thread waited for a CPU, from /proc) and each destination's outbox rows (all /
    unclaimed, a read-only SQLite count, which can take longer under load: kept apart so
    the RSS sampling stays regular)."""

    def __init__(self, pid: int, data_dir: Path, interval: float = 0.5) -> None:
        self.pid, self.interval = pid, interval
        self.db = data_dir / "tracklayer.db"
        self.samples: list[dict] = []  # process
        self.depths: list[dict] = []  # outbox
        self.latest_depth: dict = {}
        self.halt = threading.Event()
        self.threads = [
            threading.Thread(target=self._loop, args=(self.process, self.samples), daemon=True),
            threading.Thread(target=self._loop, args=(self.outbox, self.depths), daemon=True),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.halt.set()
        for thread in self.threads:
            thread.join(10)

    def _loop(self, take, into: list) -> None:
        while not self.halt.is_set():
            began = time.monotonic()
            into.append(take())
            self.halt.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def process(self) -> dict:
        sample = {
            "at": time.time(),
            "rss": 0,
            "hwm": 0,
            "ticks": process_ticks(self.pid),
            "main_ticks": process_ticks(self.pid, main_thread=True),
            "main_wait_ns": 0,
        }
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key == "VmRSS":
                    sample["rss"] = int(value.split()[0])
                elif key == "VmHWM":
                    sample["hwm"] = int(value.split()[0])
            schedstat = Path(f"/proc/{self.pid}/task/{self.pid}/schedstat").read_text().split()
            sample["main_wait_ns"] = int(schedstat[1])
        except (OSError, IndexError, ValueError):
            pass
        return sample

    def outbox(self) -> dict:
        sample: dict = {"at": time.time(), "outbox": {}, "unclaimed": {}}
        try:
            connection = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
            try:
                rows = connection.execute(
                    "SELECT destination, claimed, COUNT(*) FROM outbox GROUP BY destination,"
                    " claimed"
                ).fetchall()
            finally:
                connection.close()
            for destination, claimed, count in rows:
                sample["outbox"][destination] = sample["outbox"].get(destination, 0) + count
                if not claimed:
                    sample["unclaimed"][destination] = count
        except sqlite3.Error as problem:
            sample["error"] = str(problem)
        sample["took"] = time.time() - sample["at"]
        self.latest_depth = sample
        return sample


# load --------------------------------------------------------------------------------------


class Load:
    """Open-loop ``/v1/batch`` load: each request goes at its scheduled time."""

    def __init__(self, address: str, per_request: int, run: str) -> None:
        self.url = f"http://{address}/v1/batch"
        self.per_request = per_request
        self.run = run
        self.sequence = 0
        self.requests: list[tuple] = []  # (phase, scheduled, sent, answered, ok, first, count)
        self.acked: set[str] = set()
        self.sent: set[str] = set()
        self.errors: collections.Counter = collections.Counter()
        self.sample_error = ""
        self.tasks: set[asyncio.Task] = set()

    def ids(self, first: int, count: int) -> list[str]:
        return [f"{self.run}-{n}" for n in range(first, first + count)]

    async def send(self, session, phase: str, scheduled: float) -> None:
        first = self.sequence
        self.sequence += self.per_request
        stamp = iso_now()
        ids = self.ids(first, self.per_request)
        body = _encode(
            {
                "batch": [order_completed(m, first + j, stamp) for j, m in enumerate(ids)],
                "sentAt": stamp,
            }
        )
        self.sent.update(ids)
        sent = time.time()
        good = False
        try:
            async with session.post(self.url, data=body, headers=AUTH) as answer:
                text = await answer.read()
                good = answer.status == 200 and b'"success":true' in text.replace(b" ", b"")
                if good and b"rejected" in text:
                    good = False
                if not good:
                    self.errors[f"HTTP {answer.status}"] += 1
                    self.sample_error = self.sample_error or f"{answer.status} {text[:200]!r}"
        except Exception as error:  # transport errors and timeouts: not acknowledged
            self.errors[type(error).__name__] += 1
            self.sample_error = self.sample_error or repr(error)
        if good:
            self.acked.update(ids)
        self.requests.append((phase, scheduled, sent, time.time(), good, first, self.per_request))

    async def phase(self, session, name: str, rate: float, seconds: float, until=None) -> tuple:
        """Send at ``rate`` events/s for ``seconds`` (or until ``until()`` is true)."""
        loop = asyncio.get_running_loop()
        interval = self.per_request / rate
        began_wall, began = time.time(), loop.time()
        due = began
        while True:
            now = loop.time()
            if now - began >= seconds or (until is not None and until()):
                break
            if due > now:
                await asyncio.sleep(due - now)
            task = asyncio.create_task(self.send(session, name, time.time()))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            due += interval
        return began_wall, time.time()


async def drive(daemon: Daemon, sampler: Sampler, args, run: str) -> tuple[Load, dict]:
    import aiohttp

    load = Load(daemon.address, args.request_events, run)
    phases: dict[str, tuple[float, float]] = {}
    spike_rate = args.rate * args.spike_factor
    threshold = args.backlog_threshold

    def drained() -> bool:
        latest = sampler.latest_depth
        return latest.get("at", 0) > phases["spike"][1] and (
            latest["outbox"].get(LIMITED, 0) < threshold
        )

    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60),
        connector=aiohttp.TCPConnector(limit=512),
    ) as session:
        log(f"spike: normal rate {args.rate:g} events/s for {args.pre_seconds:g} s")
        phases["pre"] = await load.phase(session, "pre", args.rate, args.pre_seconds)
        log(f"spike: {spike_rate:g} events/s for {args.spike_seconds:g} s")
        phases["spike"] = await load.phase(session, "spike", spike_rate, args.spike_seconds)
        log(f"spike: normal rate again until {LIMITED}'s backlog drains")
        began, end = await load.phase(
            session, "drain", args.rate, args.max_drain_seconds, until=drained
        )
        phases["drain"] = (began, end)
        phases["drained"] = drained()
        log(
            f"spike: backlog {'drained' if phases['drained'] else 'NOT drained'} "
            f"{end - phases['spike'][1]:.1f} s after the spike; {args.tail_seconds:g} s more"
        )
        phases["tail"] = await load.phase(session, "tail", args.rate, args.tail_seconds)
        if load.tasks:
            await asyncio.wait(load.tasks, timeout=90)
    return load, phases


# analysis ----------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


def backlog_window(samples: list[dict], destination: str, threshold: int) -> tuple[float, float]:
    """First and last sample with at least ``threshold`` unclaimed rows waiting."""
    busy = [s["at"] for s in samples if s["unclaimed"].get(destination, 0) >= threshold]
    return (busy[0], busy[-1]) if busy else (0.0, 0.0)


def drain_rate(log_rows: list, window: tuple[float, float]) -> dict:
    start, end = window
    inside = [(t, n) for t, n in log_rows if start <= t <= end]
    seconds = end - start
    bins: collections.Counter = collections.Counter(int(t - start) for t, _ in inside)
    full = [bins.get(i, 0) for i in range(int(seconds))]
    return {
        "seconds": seconds,
        "requests": len(inside),
        "events": sum(n for _, n in inside),
        "rps": len(inside) / seconds if seconds > 0 else 0.0,
        "eps": sum(n for _, n in inside) / seconds if seconds > 0 else 0.0,
        "per_second_min": min(full) if full else 0,
        "per_second_median": percentile(full, 0.5) if full else 0,
        "per_second_max": max(full) if full else 0,
    }


def exactly_once(arrivals: list, acked: set[str], sent: set[str]) -> dict:
    counts = collections.Counter(a[0] for a in arrivals)
    delivered = set(counts)
    return {
        "delivered": len(arrivals),
        "unique": len(delivered),
        "duplicates": sum(c - 1 for c in counts.values() if c > 1),
        "lost": len(acked - delivered),
        "unacked_delivered": len(delivered - acked),
        "unknown": len(delivered - sent),
    }


def latency_by_phase(arrivals: list, phases: dict, warmup: float) -> dict:
    """Delivery latency (fake receipt - the event's received_at) by the phase the event was
    received in; the first ``warmup`` seconds of the run are left out."""
    bounds = {
        "pre": (phases["pre"][0] + warmup, phases["spike"][0]),
        "spike": (phases["spike"][0], phases["spike"][1]),
        "after": (phases["spike"][1], phases["tail"][1]),
    }
    out = {}
    for name, (start, end) in bounds.items():
        values = [r - a for _, a, r in arrivals if a and start <= a < end]
        out[name] = {
            "events": len(values),
            "p50": percentile(values, 0.5),
            "p99": percentile(values, 0.99),
            "max": max(values) if values else float("nan"),
        }
    return out


def ingest_by_phase(load: Load) -> dict:
    out = {}
    for name in ("pre", "spike", "drain", "tail"):
        rows = [r for r in load.requests if r[0] == name]
        latency = [r[3] - r[2] for r in rows]
        late = [r[2] - r[1] for r in rows]
        out[name] = {
            "requests": len(rows),
            "ok": sum(1 for r in rows if r[4]),
            "p50": percentile(latency, 0.5),
            "p99": percentile(latency, 0.99),
            "late_p99": percentile(late, 0.99),
        }
    return out


def timeline(phases: dict, sampler: Sampler, fake_stats: dict, step: float) -> list[dict]:
    """Per ``step`` seconds from the start of the load: requests and events each fake got,
    and the last sample's outbox rows and RSS."""
    origin = phases["pre"][0]
    rows: dict[int, dict] = collections.defaultdict(
        lambda: {LIMITED: [0, 0], FAST: [0, 0], "outbox": {}, "rss": 0, "ticks": None}
    )
    for name in (LIMITED, FAST):
        for at, count in fake_stats[name]["log"]:
            if at >= origin:
                row = rows[int((at - origin) // step)][name]
                row[0] += 1
                row[1] += count
    end = phases["tail"][1]
    for sample in sampler.depths:
        if origin <= sample["at"] <= end:
            rows[int((sample["at"] - origin) // step)]["outbox"] = sample["outbox"]
    for sample in sampler.samples:
        if origin <= sample["at"] <= end:
            row = rows[int((sample["at"] - origin) // step)]
            row["rss"] = sample["rss"]
            row["ticks"] = (
                sample["at"],
                sample["ticks"],
                sample["main_ticks"],
                sample["main_wait_ns"],
            )
    out = []
    previous = None
    for index in range(int((end - origin) // step) + 1):
        row = rows[index]
        cores = main = waited = 0.0
        if row["ticks"] and previous:
            wall = row["ticks"][0] - previous[0]
            if wall > 0:
                cores = (row["ticks"][1] - previous[1]) / TICK / wall
                main = (row["ticks"][2] - previous[2]) / TICK / wall
                waited = (row["ticks"][3] - previous[3]) / 1e9 / wall
        previous = row["ticks"] or previous
        out.append(
            {
                "t": index * step,
                "limited_requests": row[LIMITED][0],
                "limited_events": row[LIMITED][1],
                "fast_events": row[FAST][1],
                "limited_outbox": row["outbox"].get(LIMITED, 0),
                "fast_outbox": row["outbox"].get(FAST, 0),
                "rss_kib": row["rss"],
                "daemon_cores": cores,
                "main_thread_cores": main,
                "main_thread_waiting": waited,
            }
        )
    return out


def analyse(load: Load, phases: dict, sampler: Sampler, fake_stats: dict, args) -> dict:
    limited, fast = fake_stats[LIMITED], fake_stats[FAST]
    window = backlog_window(sampler.depths, LIMITED, args.backlog_threshold)
    drain = drain_rate(limited["log"], window)
    spike_end = phases["spike"][1]
    drain_during = drain_rate(limited["log"], (window[0], min(window[1], spike_end)))
    drain_after = drain_rate(limited["log"], (max(window[0], spike_end), window[1]))
    deviation = abs(drain["rps"] - args.bucket_rps) / args.bucket_rps if drain["rps"] else 1.0
    spike_start = phases["spike"][0]
    peak_limited = max((s["outbox"].get(LIMITED, 0) for s in sampler.depths), default=0)
    peak_fast_spike = max(
        (
            s["outbox"].get(FAST, 0)
            for s in sampler.depths
            if spike_start <= s["at"] <= spike_end + 1
        ),
        default=0,
    )
    peak_fast_pre = max(
        (s["outbox"].get(FAST, 0) for s in sampler.depths if s["at"] < spike_start),
        default=0,
    )
    pre_rss = [s["rss"] for s in sampler.samples if s["at"] < spike_start and s["rss"]]
    during = [s for s in sampler.samples if spike_start <= s["at"] <= spike_end]
    spike_cpu = {"cores": 0.0, "main": 0.0, "waiting": 0.0}
    if len(during) > 1:
        wall = during[-1]["at"] - during[0]["at"]
        spike_cpu = {
            "cores": (during[-1]["ticks"] - during[0]["ticks"]) / TICK / wall,
            "main": (during[-1]["main_ticks"] - during[0]["main_ticks"]) / TICK / wall,
            "waiting": (during[-1]["main_wait_ns"] - during[0]["main_wait_ns"]) / 1e9 / wall,
        }
    took = [d["took"] for d in sampler.depths]
    return {
        "window": window,
        "drain": drain,
        "drain_during_spike": drain_during,
        "drain_after_spike_rate": drain_after,
        "deviation": deviation,
        "drain_ok": bool(drain["requests"]) and deviation <= GOAL_TOLERANCE,
        "spike_cpu": spike_cpu,
        "outbox_query_p99": percentile(took, 0.99),
        "outbox_samples": len(sampler.depths),
        "peak_rss_kib": max((s["rss"] for s in sampler.samples), default=0),
        "hwm_kib": max((s["hwm"] for s in sampler.samples), default=0),
        "pre_rss_kib": sorted(pre_rss)[len(pre_rss) // 2] if pre_rss else 0,
        "end_rss_kib": sampler.samples[-1]["rss"] if sampler.samples else 0,
        "peak_limited_outbox": peak_limited,
        "peak_fast_outbox_pre": peak_fast_pre,
        "peak_fast_outbox_spike": peak_fast_spike,
        "once": {
            LIMITED: exactly_once(limited["arrivals"], load.acked, load.sent),
            FAST: exactly_once(fast["arrivals"], load.acked, load.sent),
        },
        "latency": {
            FAST: latency_by_phase(fast["arrivals"], phases, args.warmup),
            LIMITED: latency_by_phase(limited["arrivals"], phases, args.warmup),
        },
        "ingest": ingest_by_phase(load),
        "drain_after_spike": phases["drain"][1] - spike_end if phases["drained"] else None,
        "timeline": timeline(phases, sampler, fake_stats, 1.0),
    }


# the run -----------------------------------------------------------------------------------


def run_spike(workdir: Path, args) -> dict:
    fake = Fake(workdir, ["--webhook", f"{LIMITED}={SECRET}", "--webhook", f"{FAST}={SECRET}"])
    data_dir = workdir / "data"
    daemon = Daemon(workdir, "spike", daemon_config(data_dir, fake, args))
    wait_for_quiet(args.quiet_wait)
    daemon.start()
    sampler = Sampler(daemon.pid, data_dir)
    sampler.start()
    meter = CpuMeter(daemon.pid)
    fake0, daemon0 = fake.ticks(), process_ticks(daemon.pid)
    run = f"s{int(time.time()) % 100000:05d}"
    began = time.time()
    try:
        import uvloop

        load, phases = uvloop.run(drive(daemon, sampler, args, run))
    except ImportError:
        load, phases = asyncio.run(drive(daemon, sampler, args, run))
    load_end = time.time()
    log(
        f"spike: load done: {len(load.acked):,} events acknowledged of {len(load.sent):,} sent; "
        "waiting for both fakes to have every one"
    )
    deadline = time.monotonic() + args.settle_seconds
    while time.monotonic() < deadline:
        counts = {name: fake.stats(name)["unique"] for name in (LIMITED, FAST)}
        if all(count >= len(load.acked) for count in counts.values()):
            break
        time.sleep(0.5)
    settled = time.time()
    cpu = meter.result()
    daemon_cpu = (process_ticks(daemon.pid) - daemon0) / TICK
    fake_cores = (fake.ticks() - fake0) / TICK / cpu["wall"]
    metrics = daemon.metrics()
    sampler.stop()
    final_rss = daemon.rss_kib()
    code = daemon.stop()
    stats = {name: fake.stats(name, detail=True) for name in (LIMITED, FAST)}
    fake.stop()
    connection = sqlite3.connect(f"file:{data_dir / 'tracklayer.db'}?mode=ro", uri=True)
    try:
        db = {
            "events": connection.execute("SELECT COUNT(*) FROM events").fetchall()[0][0],
            "outbox": dict(
                connection.execute(
                    "SELECT destination, COUNT(*) FROM outbox GROUP BY destination"
                ).fetchall()
            ),
            "dead": dict(
                connection.execute(
                    "SELECT destination, COUNT(*) FROM dead_letters GROUP BY destination"
                ).fetchall()
            ),
        }
    finally:
        connection.close()
    result = analyse(load, phases, sampler, stats, args)
    result.update(
        {
            "phases": phases,
            "acked": len(load.acked),
            "sent": len(load.sent),
            "errors": dict(load.errors),
            "sample_error": load.sample_error,
            "seconds": {
                "load": load_end - began,
                "settle": settled - load_end,
            },
            "daemon_cpu": daemon_cpu,
            "daemon_cores": daemon_cpu / cpu["wall"],
            "fake_cores": fake_cores,
            "other_cores": max(0.0, cpu["other_cores"] - fake_cores),
            "steal": cpu["steal"],
            "hwm_final_kib": final_rss.get("VmHWM", 0),
            "outcomes": {name: deliveries(metrics, name) for name in (LIMITED, FAST)},
            "fake": {
                name: {k: v for k, v in s.items() if k not in ("log", "arrivals")}
                for name, s in stats.items()
            },
            "exit_code": code,
            "db": db,
        }
    )
    once = result["once"]
    result["lost_ok"] = (
        all(
            once[name]["lost"] == 0 and once[name]["duplicates"] == 0 and once[name]["unknown"] == 0
            for name in (LIMITED, FAST)
        )
        and not any(db["dead"].values())
        and not any(db["outbox"].values())
    )
    result["clean_ok"] = (
        code == 0
        and all(stats[name]["problem_count"] == 0 for name in (LIMITED, FAST))
        and phases["drained"]
    )
    return result


# output ------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    if seconds != seconds:  # NaN: no events
        return "–"
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def command_line(args) -> str:
    shown = ["bench/spike.py"]
    if args.quick:
        shown.append("--quick")
    elif args.spike_seconds != 60:
        shown.append(f"--spike-seconds {args.spike_seconds:g}")
    if args.control:
        shown.append("--control")
    return " ".join(shown)


def control_rows(control: dict | None) -> list[str]:
    if control is None:
        return []
    lat = control["latency"][FAST]
    return [
        f"| control run, same load, no backlog (`{LIMITED}` unthrottled, batch 100): `{FAST}` "
        f"p50 / p99 before / during the spike | {ms(lat['pre']['p50'])} / "
        f"{ms(lat['pre']['p99'])}; {ms(lat['spike']['p50'])} / {ms(lat['spike']['p99'])} "
        f"(`{LIMITED}` outbox peak {control['peak_limited_outbox']:,}, ingest answer p50 "
        f"{ms(control['ingest']['spike']['p50'])} during the spike) | | |"
    ]


def render(info: dict, r: dict, args, started: str, control: dict | None = None) -> str:
    drain, once, lat = r["drain"], r["once"], r["latency"][FAST]
    spike_rate = args.rate * args.spike_factor
    drain_verdict = "OK" if r["drain_ok"] else "**MISSED**"
    lost_verdict = "OK" if r["lost_ok"] else "**FAILED**"
    after = r["drain_after_spike"]
    lines = [
        "## Backlog / BFCM spike",
        "",
        f"_Generated by `{command_line(args)}` at {started} (UTC); rerunning replaces this "
        "section._",
        "",
        machine_line(info),
        "",
        f"Command: `{command_line(args)}` (normal {args.rate:g} events/s for "
        f"{args.pre_seconds:g} s, then {spike_rate:g} events/s for {args.spike_seconds:g} s, "
        f"then {args.rate:g} events/s until `{LIMITED}`'s backlog drained, plus "
        f"{args.tail_seconds:g} s; `/v1/batch`, {args.request_events} events per request, "
        "open loop).",
        "",
        "| measure | result | goal | verdict |",
        "|---|---|---|---|",
        f"| `{LIMITED}` drain rate while its backlog was non-empty | **{drain['rps']:.1f} "
        f"requests/s** ({drain['eps']:,.0f} events/s) over {drain['seconds']:.1f} s | "
        f"{args.bucket_rps:g} requests/s (its bucket) ± {GOAL_TOLERANCE:.0%} | "
        f"{drain_verdict} ({r['deviation']:.1%} off) |",
        f"| of which during the spike / after it | {r['drain_during_spike']['rps']:.1f} "
        f"requests/s over {r['drain_during_spike']['seconds']:.1f} s / "
        f"{r['drain_after_spike_rate']['rps']:.1f} requests/s over "
        f"{r['drain_after_spike_rate']['seconds']:.1f} s | | |",
        f"| every acknowledged event delivered exactly once, to both destinations | "
        f"{r['acked']:,} acknowledged; lost {once[LIMITED]['lost']} / {once[FAST]['lost']}, "
        f"duplicates {once[LIMITED]['duplicates']} / {once[FAST]['duplicates']} "
        f"(`{LIMITED}` / `{FAST}`); dead letters {sum(r['db']['dead'].values())}, outbox left "
        f"{sum(r['db']['outbox'].values())} | nothing lost, nothing twice | {lost_verdict} |",
        f"| daemon peak RSS | {mib(r['peak_rss_kib'])} (VmHWM {mib(r['hwm_final_kib'])}); "
        f"{mib(r['pre_rss_kib'])} before the spike, {mib(r['end_rss_kib'])} at the end | | |",
        f"| `{FAST}` delivery latency p50 / p99: before the spike | {ms(lat['pre']['p50'])} / "
        f"{ms(lat['pre']['p99'])} ({lat['pre']['events']:,} events) | | |",
        f"| `{FAST}` delivery latency p50 / p99: during the spike | "
        f"{ms(lat['spike']['p50'])} / {ms(lat['spike']['p99'])} "
        f"({lat['spike']['events']:,} events) | unaffected | "
        f"{latency_word(lat, control)} |",
        f"| `{FAST}` delivery latency p50 / p99: after the spike | {ms(lat['after']['p50'])} / "
        f"{ms(lat['after']['p99'])} ({lat['after']['events']:,} events) | | |",
        *control_rows(control),
        f"| `{LIMITED}` backlog: peak, time to drain after the spike ended | "
        f"{r['peak_limited_outbox']:,} events, "
        + (f"{after:.1f} s" if after is not None else "**not drained**")
        + f" (bound {args.max_drain_seconds:g} s) | | |",
        "",
    ]
    if r["other_cores"] > 0.3 or r["steal"] > 0.1:
        lines += [
            f"**Disturbed:** other processes used {r['other_cores']:.2f} cores on average and "
            f"the hypervisor stole {r['steal']:.1%} of the CPU during the run; the figures are "
            "off by an unknown amount.",
            "",
        ]
    if not r["clean_ok"]:
        problems = []
        if r["exit_code"] != 0:
            problems.append(f"daemon exit code {r['exit_code']}")
        if not r["phases"]["drained"]:
            problems.append(f"backlog not drained within {args.max_drain_seconds:g} s")
        for name in (LIMITED, FAST):
            if r["fake"][name]["problem_count"]:
                problems.append(f"`{name}` fake: {'; '.join(r['fake'][name]['problems'][:3])}")
        lines += ["**Problems:** " + "; ".join(problems) + ".", ""]
    ingest = r["ingest"]
    lines += [
        "### Details",
        "",
        "| phase | ingest requests (200) | ingest answer p50 / p99 | sends late p99 "
        f"| `{FAST}` latency p50 / p99 / max | `{LIMITED}` latency p50 / p99 |",
        "|---|---|---|---|---|---|",
    ]
    names = {"pre": "before", "spike": "spike", "drain": "after", "tail": "tail"}
    for phase, shown in names.items():
        i = ingest[phase]
        row = (
            f"| {shown} | {i['requests']:,} ({i['ok']:,}) | {ms(i['p50'])} / {ms(i['p99'])} "
            f"| {ms(i['late_p99'])} "
        )
        if phase in ("pre", "spike"):
            f, g = r["latency"][FAST][phase], r["latency"][LIMITED][phase]
        elif phase == "drain":
            f, g = r["latency"][FAST]["after"], r["latency"][LIMITED]["after"]
        else:
            f = g = None
        if f:
            row += (
                f"| {ms(f['p50'])} / {ms(f['p99'])} / {ms(f['max'])} | {ms(g['p50'])} / "
                f"{ms(g['p99'])} |"
            )
        else:
            row += "| (in after) | (in after) |"
        lines.append(row)
    limited = r["fake"][LIMITED]
    lines += [
        "",
        f"- `{LIMITED}`: {limited['requests']:,} requests, {limited['events']:,} events "
        f"(largest batch {limited['max_batch']}); per second inside the backlog window: min "
        f"{drain['per_second_min']}, median {drain['per_second_median']}, max "
        f"{drain['per_second_max']} requests. The window runs from the first to the last "
        f"0.5 s sample with at least {args.backlog_threshold} events waiting unclaimed "
        "(read-only `SELECT COUNT(*) FROM outbox`).",
        f"- `{FAST}`: outbox peak {r['peak_fast_outbox_pre']:,} events before the spike and "
        f"{r['peak_fast_outbox_spike']:,} during it; {r['fake'][FAST]['requests']:,} requests.",
        f"- Ingest: {r['sent']:,} events sent, {r['acked']:,} acknowledged"
        + (
            f"; not acknowledged: {', '.join(f'{k} x{v}' for k, v in r['errors'].items())} "
            f"(first: `{r['sample_error'][:160]}`)"
            if r["errors"]
            else ""
        )
        + f". Deliveries counted by the daemon: `{LIMITED}` "
        + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(r["outcomes"][LIMITED].items()) if v)
        + f"; `{FAST}` "
        + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(r["outcomes"][FAST].items()) if v)
        + ".",
        f"- During the spike the daemon used {r['spike_cpu']['cores']:.2f} cores (main thread "
        f"{r['spike_cpu']['main']:.2f}), and its main thread waited for a CPU "
        f"{r['spike_cpu']['waiting']:.0%} of the time. The outbox count took up to "
        f"{ms(r['outbox_query_p99'])} (p99 of {r['outbox_samples']:,} samples).",
        f"- CPU: the daemon {r['daemon_cores']:.2f} cores on average over the run "
        f"({r['daemon_cpu']:.0f} CPU s), the fakes {r['fake_cores']:.2f}, other processes "
        f"{r['other_cores']:.2f}, steal {r['steal']:.1%}. Load {r['seconds']['load']:.0f} s, "
        f"then {r['seconds']['settle']:.1f} s until both fakes had every acknowledged event; "
        f"daemon exit code {r['exit_code']}.",
    ]
    step = max(1, round(args.timeline_step))
    spike_from = r["phases"]["spike"][0] - r["phases"]["pre"][0]
    spike_to = r["phases"]["spike"][1] - r["phases"]["pre"][0]
    lines += [
        "",
        f"Timeline ({step} s steps from the start of the load, the spike from "
        f"{spike_from:.0f} s to {spike_to:.0f} s): requests and events per second the fakes "
        "received over the step, outbox rows and daemon RSS at its end, the daemon's CPU "
        "over the step (all threads / main thread, the event loop; Python holds the GIL on "
        "either, so about 1.0 in all is what one process gets), and the share of the step "
        "its main thread was runnable but waiting for a CPU (/proc/PID/task/PID/schedstat: "
        "other processes had the cores).",
        "",
        f"| t (s) | `{LIMITED}` requests/s | `{LIMITED}` events/s | `{FAST}` events/s "
        f"| `{LIMITED}` outbox | `{FAST}` outbox | RSS | daemon cores (main) "
        "| main thread waiting for a CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    seconds = r["timeline"]
    for at in range(0, len(seconds), step):
        chunk = seconds[at : at + step]
        last = chunk[-1]
        mean = {
            key: sum(c[key] for c in chunk) / len(chunk)
            for key in (
                "limited_requests",
                "limited_events",
                "fast_events",
                "daemon_cores",
                "main_thread_cores",
                "main_thread_waiting",
            )
        }
        lines.append(
            f"| {chunk[0]['t']:.0f} | {mean['limited_requests']:.1f} "
            f"| {mean['limited_events']:,.0f} | {mean['fast_events']:,.0f} "
            f"| {last['limited_outbox']:,} | {last['fast_outbox']:,} | {mib(last['rss_kib'])} "
            f"| {mean['daemon_cores']:.2f} ({mean['main_thread_cores']:.2f}) "
            f"| {mean['main_thread_waiting']:.0%} |"
        )
    lines += [
        "",
        "### Settings",
        "",
        "- `tracklayer run --config FILE`: one Segment source, `storage.durability: process`; "
        f"`{LIMITED}`: webhook, `rate_limit: {{rps: {args.bucket_rps:g}}}` (burst = rps), "
        f"`batch: {{max_events: {args.limited_batch}, max_wait: 200ms}}`; `{FAST}`: webhook, "
        "`rate_limit: {rps: 1000, burst: 1000}`, `batch: {max_events: 100, max_wait: 200ms}`; "
        "both `max_in_flight: 4` (default), each its own sink of bench/fake_platform.py "
        "(signature checked, every `message_id` recorded, answers at once).",
        "- Events: Segment `Order Completed` (the ingest benchmark's body), unique "
        "`messageId` and `order_id`. Latency is the fake's receipt time minus the "
        "event's `received_at` as the daemon sent it (same clock), by the phase the daemon "
        f"received the event in; the first {args.warmup:g} s are left out.",
        "- RSS: VmRSS of the daemon from /proc/PID/status every 0.5 s; VmHWM is the kernel's "
        "own peak.",
    ]
    return "\n".join(lines) + "\n"


def latency_word(lat: dict, control: dict | None = None) -> str:
    """Against the control run when there is one (same load, no backlog anywhere), else
    only the ratio to before the spike: the spike's load alone slows a one-core daemon."""
    pre, spike = lat["pre"]["p99"], lat["spike"]["p99"]
    if pre != pre or spike != spike:
        return "–"
    if control is None:
        return f"p99 {spike / pre:.1f}x before (no control run: see `--control`)"
    base = control["latency"][FAST]["spike"]["p99"]
    if base != base or base <= 0:
        return "–"
    if spike <= max(1.5 * base, base + 0.25):
        return f"unaffected by the backlog (p99 {spike / base:.2f}x the control's)"
    return f"**affected** by the backlog (p99 {spike / base:.1f}x the control's)"


def render_console(r: dict, args, control: dict | None = None) -> str:
    lat = r["latency"][FAST]
    once = r["once"]
    rows = [
        ("spike", "result", "verdict"),
        (
            f"{LIMITED} drain req/s (bucket {args.bucket_rps:g})",
            f"{r['drain']['rps']:.1f} over {r['drain']['seconds']:.0f} s",
            ("OK" if r["drain_ok"] else "MISSED") + f" ({r['deviation']:.1%} off)",
        ),
        (
            "  during spike / after",
            f"{r['drain_during_spike']['rps']:.1f} / {r['drain_after_spike_rate']['rps']:.1f}",
            "",
        ),
        (
            "lost / duplicates",
            f"{once[LIMITED]['lost']}+{once[FAST]['lost']} / "
            f"{once[LIMITED]['duplicates']}+{once[FAST]['duplicates']} of {r['acked']:,}",
            "OK" if r["lost_ok"] else "FAILED",
        ),
        ("peak RSS", f"{mib(r['peak_rss_kib'])} (before {mib(r['pre_rss_kib'])})", ""),
        (
            f"{FAST} p50/p99 before",
            f"{ms(lat['pre']['p50'])} / {ms(lat['pre']['p99'])}",
            "",
        ),
        (
            f"{FAST} p50/p99 spike",
            f"{ms(lat['spike']['p50'])} / {ms(lat['spike']['p99'])}",
            latency_word(lat, control).replace("*", "").split(" (")[0],
        ),
        *(
            [
                (
                    f"{FAST} p50/p99 spike, control",
                    f"{ms(control['latency'][FAST]['spike']['p50'])} / "
                    f"{ms(control['latency'][FAST]['spike']['p99'])}",
                    "",
                )
            ]
            if control
            else []
        ),
        (
            f"{FAST} p50/p99 after",
            f"{ms(lat['after']['p50'])} / {ms(lat['after']['p99'])}",
            "",
        ),
        (
            f"{LIMITED} backlog peak / drain",
            f"{r['peak_limited_outbox']:,} / "
            + (f"{r['drain_after_spike']:.0f} s" if r["drain_after_spike"] is not None else "-"),
            "" if r["clean_ok"] else "PROBLEMS",
        ),
    ]
    return console_table(rows)


# main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description="TrackLayer backlog / spike benchmark")
    parser.add_argument("--rate", type=float, default=100.0, help="normal events/s")
    parser.add_argument("--spike-factor", type=float, default=10.0)
    parser.add_argument("--pre-seconds", type=float, default=20.0)
    parser.add_argument("--spike-seconds", type=float, default=60.0)
    parser.add_argument("--max-drain-seconds", type=float, default=120.0)
    parser.add_argument("--tail-seconds", type=float, default=5.0)
    parser.add_argument("--settle-seconds", type=float, default=60.0)
    parser.add_argument("--bucket-rps", type=float, default=50.0)
    parser.add_argument("--limited-batch", type=int, default=10)
    parser.add_argument("--request-events", type=int, default=10, help="events per /v1/batch")
    parser.add_argument("--backlog-threshold", type=int, default=100)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--timeline-step", type=float, default=10.0, help="README timeline")
    parser.add_argument("--quick", action="store_true", help="5 s normal, 10 s spike")
    parser.add_argument(
        "--control",
        action="store_true",
        help=f"then rerun the same load with {LIMITED} unthrottled, to tell the backlog's "
        f"effect on {FAST} from the load's (doubles the run time)",
    )
    parser.add_argument("--quiet-wait", type=float, default=20.0)
    parser.add_argument("--readme", type=Path, default=BENCH / "README.md")
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    if args.quick:
        args.pre_seconds = min(args.pre_seconds, 5.0)
        args.spike_seconds = min(args.spike_seconds, 10.0)
        args.max_drain_seconds = min(args.max_drain_seconds, 40.0)
        args.quiet_wait = min(args.quiet_wait, 4.0)
        args.timeline_step = min(args.timeline_step, 5.0)

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    workdir = Path(tempfile.mkdtemp(prefix="tracklayer-spike-"))
    began = time.monotonic()
    try:
        info = machine()
        (workdir / "run").mkdir()
        result = run_spike(workdir / "run", args)
        control = None
        if args.control:
            log(f"control: the same load with `{LIMITED}` unthrottled (batch 100, bucket 1000)")
            (workdir / "control").mkdir()
            control_args = argparse.Namespace(**vars(args))
            control_args.bucket_rps, control_args.limited_batch = 1000.0, 100
            control = run_spike(workdir / "control", control_args)
    except BaseException:
        for logfile in sorted(workdir.rglob("*.log")):
            print(f"--- {logfile.relative_to(workdir)}\n{tail(logfile)}", file=sys.stderr)
        raise
    finally:
        stop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    print(render_console(result, args, control))
    text = render(info, result, args, started, control)
    if not args.no_readme:
        update_section(args.readme, "spike", text)
        log(f"wrote {args.readme}")
    if args.json:
        everything = {"machine": info, "spike": result, "control": control}
        args.json.write_text(json.dumps(everything, indent=1, default=str))
    log(f"done in {time.monotonic() - began:.0f} s")
    return 0 if result["drain_ok"] and result["lost_ok"] and result["clean_ok"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all()
