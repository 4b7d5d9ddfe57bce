"""TrackLayer ingest benchmarks: runs them, checks them, prints and records the results.

    python bench/ingest.py [--duration 15] [--warmup 3] [--no-profile] [--readme FILE]

(``bench/run`` installs the tools and calls this.) What runs, in order:

A  single event: wrk (bench/track.lua, unique messageId per request) against
   1. the bare handler (bench/baseline_server.py: aiohttp + uvloop, read + msgspec decode,
      ``{"success": true}``), then
   2. ``tracklayer run`` (one Segment source, ``durability: process``, one webhook
      destination in ``mode: observe``) in a temp dir.
B  batch: wrk (bench/batch.lua, 100 events per request, unique messageIds) against a fresh
   TrackLayer; baseline: raw SQLite WAL inserts of the same rows (bench/sqlite_baseline.py),
   with the blob size and the dedup and identity rows per event measured from TrackLayer's
   own database (and a narrower baseline without the identity rows, the earlier definition).
P  profile: py-spy samples a fresh TrackLayer under the single-event load.

After each TrackLayer run the daemon is stopped (SIGTERM: it drains and commits) and its
``tracklayer.db`` is counted against what wrk sent and what was answered 200.

All traffic goes to 127.0.0.1; every process started here is stopped by its pid and every
temp dir removed, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import inspect
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchlib import (
    BENCH,
    PYTHON,
    ROOT,
    CpuMeter,
    console_table,
    log,
    machine,
    start,
    stop,
    stop_all,
    tail,
    update_section,
    wait_for_quiet,
    wait_started,
)

WRITE_KEY = "bench_write_key"

GOALS = {
    "A": {"goal": 0.9, "defect": 0.6},
    "B": {"goal": 0.7, "defect": 0.3},
}


# wrk ---------------------------------------------------------------------------------------


def wrk(
    script: str,
    address: str,
    seconds: float,
    args,
    prefix: str,
    logfile: Path,
    server_pid: int | None = None,
) -> dict:
    """One wrk run; returns the JSON that the script's ``done()`` prints, plus CPU use."""
    argv = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / script),
        f"http://{address}",
        "--",
        prefix,
    ]
    env = {**os.environ, "BENCH_WRITE_KEY": WRITE_KEY}
    meter = CpuMeter(server_pid)
    result = subprocess.run(
        argv, cwd=BENCH, capture_output=True, text=True, timeout=seconds + 60, env=env
    )
    cpu = meter.result()
    with open(logfile, "a") as out:
        out.write(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        raise RuntimeError(f"wrk exited {result.returncode}: {result.stderr.strip()}")
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line.removeprefix("BENCH_JSON "))
            data["seconds"] = data["duration_us"] / 1e6
            data["rps"] = data["requests"] / data["seconds"]
            data["ok_events_per_s"] = data["ok"] * data["events_per_request"] / data["seconds"]
            data["socket_errors"] = sum(
                data["errors"][k] for k in ("connect", "read", "write", "timeout")
            )
            data["cpu"] = cpu
            return data
    raise RuntimeError(f"wrk printed no BENCH_JSON line:\n{result.stdout}\n{result.stderr}")


def load(
    script: str, address: str, args, name: str, logfile: Path, server_pid: int | None
) -> tuple[dict, list[dict]]:
    """A warm-up run, then the measured run, each with its own messageId prefix."""
    nonce = f"{int(time.time()) % 100000:05d}"
    runs = []
    if args.warmup > 0:
        runs.append(wrk(script, address, args.warmup, args, f"{name}w{nonce}", logfile, server_pid))
    measured = wrk(script, address, args.duration, args, f"{name}m{nonce}", logfile, server_pid)
    runs.append(measured)
    return measured, runs


# TrackLayer --------------------------------------------------------------------------------


def tracklayer_config(directory: Path) -> Path:
    path = directory / "tracklayer.yaml"
    path.write_text(f"""\
# Written by bench/ingest.py for one benchmark run.
server:
  listen: 127.0.0.1:0
storage:
  path: {directory / "data"}
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
  - id: hooks
    type: webhook
    mode: observe            # payloads are built and signed, nothing is sent
    url: http://127.0.0.1:9/in
    secret: bench-secret
    batch: {{max_events: 100, max_wait: 1s}}
""")
    return path


class Daemon:
    def __init__(self, workdir: Path, name: str) -> None:
        self.dir = workdir / name
        self.dir.mkdir()
        self.config = tracklayer_config(self.dir)
        self.logfile = self.dir / "daemon.log"
        self.proc: subprocess.Popen | None = None
        self.address = ""

    def __enter__(self) -> Daemon:
        self.proc = start(
            [PYTHON, "-m", "tracklayer", "run", "--config", str(self.config)], self.logfile
        )
        self.address = wait_started(self.proc, self.logfile)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        code = stop(self.proc)
        self.proc = None
        return code

    def metrics(self) -> dict[str, float]:
        """A few Prometheus samples of the running daemon (delivery progress)."""
        wanted = {}
        try:
            with urllib.request.urlopen(f"http://{self.address}/metrics", timeout=10) as answer:
                text = answer.read().decode()
        except OSError:
            return wanted
        for line in text.splitlines():
            if line.startswith(
                (
                    "tracklayer_deliveries_total{",
                    "tracklayer_outbox_depth{",
                    "tracklayer_events_received_total{",
                    "tracklayer_events_duplicate_total{",
                )
            ):
                key, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    wanted[key] = float(value)
        return wanted

    def database(self) -> dict:
        path = self.dir / "data" / "tracklayer.db"
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:

            def one(query: str):
                return connection.execute(query).fetchone()[0]

            return {
                "events": one("SELECT COUNT(*) FROM events"),
                "body_bytes": one("SELECT COALESCE(AVG(LENGTH(body)), 0) FROM events"),
                "dedup_rows": one("SELECT COUNT(*) FROM dedup"),
                "profiles": one("SELECT COUNT(*) FROM profiles"),
                "profile_bytes": one("SELECT COALESCE(AVG(LENGTH(data)), 0) FROM profiles"),
                "identity_keys": one("SELECT COUNT(*) FROM identity_keys"),
                "outbox_left": one("SELECT COUNT(*) FROM outbox"),
                "dead_letters": one("SELECT COUNT(*) FROM dead_letters"),
            }
        finally:
            connection.close()


def verify(name: str, runs: list[dict], db: dict, exit_code: int | None) -> dict:
    """The daemon stored what it acknowledged: 200s <= rows <= events sent.

    wrk keeps one request in flight per connection; when it stops it closes them without
    reading the answers, so up to connections x events-per-request were stored but never
    seen answered. Stored rows below the 200s would be acknowledged-but-lost events."""
    epr = runs[0]["events_per_request"]
    acked = sum(r["ok"] for r in runs) * epr
    sent = sum(r["sent_events"] for r in runs)
    check = {
        "name": name,
        "requests": sum(r["requests"] for r in runs),
        "ok": sum(r["ok"] for r in runs),
        "non200": sum(r["non200"] for r in runs),
        "socket_errors": sum(r["socket_errors"] for r in runs),
        "acked_events": acked,
        "sent_events": sent,
        "stored": db["events"],
        "unanswered_stored": db["events"] - acked,
        "exit_code": exit_code,
        "outbox_left": db["outbox_left"],
        "dead_letters": db["dead_letters"],
    }
    check["ok_check"] = acked <= db["events"] <= sent and check["non200"] == 0
    return check


# the benchmarks ----------------------------------------------------------------------------


def bench_single(workdir: Path, args) -> dict:
    log("A: baseline (bare aiohttp + uvloop + msgspec handler)")
    base_log = workdir / "baseline_server.log"
    proc = start([PYTHON, str(BENCH / "baseline_server.py")], base_log)
    try:
        address = wait_started(proc, base_log)
        baseline, _ = load("track.lua", address, args, "A0", workdir / "wrk.log", proc.pid)
    finally:
        stop(proc)
    log(f"A: baseline {baseline['rps']:.0f} req/s")

    log("A: TrackLayer")
    with Daemon(workdir, "single") as daemon:
        measured, runs = load(
            "track.lua", daemon.address, args, "A1", workdir / "wrk.log", daemon.proc.pid
        )
        metrics = daemon.metrics()
        code = daemon.stop()
        db = daemon.database()
    log(f"A: TrackLayer {measured['rps']:.0f} req/s")
    return {
        "baseline": baseline,
        "tracklayer": measured,
        "ratio": measured["rps"] / baseline["rps"] if baseline["rps"] else 0.0,
        "check": verify("A single event", runs, db, code),
        "metrics": metrics,
        "db": db,
    }


def sqlite_baseline(
    directory: Path,
    args,
    body: int,
    dedup: int,
    profiles: float,
    profile_bytes: int,
    keys: float,
) -> dict:
    """One run of bench/sqlite_baseline.py in its own process, with its CPU measured."""
    meter = CpuMeter(None)
    argv = [PYTHON, str(BENCH / "sqlite_baseline.py"), "--dir", str(directory)]
    argv += ["--seconds", str(args.sqlite_seconds), "--batch", "100", "--body", str(body)]
    argv += ["--dedup", str(dedup), "--outbox", "1", "--profiles", f"{profiles:.4f}"]
    argv += ["--profile-bytes", str(profile_bytes), "--keys", f"{keys:.4f}"]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=args.sqlite_seconds + 60, cwd=ROOT
    )
    if result.returncode != 0:
        raise RuntimeError(f"sqlite_baseline failed: {result.stderr}")
    baseline = json.loads(result.stdout.strip().splitlines()[-1])
    baseline["cpu"] = meter.result()
    return baseline


def bench_batch(workdir: Path, args) -> dict:
    log("B: TrackLayer /v1/batch, 100 events per request")
    with Daemon(workdir, "batch") as daemon:
        measured, runs = load(
            "batch.lua", daemon.address, args, "B1", workdir / "wrk.log", daemon.proc.pid
        )
        metrics = daemon.metrics()
        code = daemon.stop()
        db = daemon.database()
    log(f"B: TrackLayer {measured['ok_events_per_s']:.0f} events/s")
    body = round(db["body_bytes"]) or 600
    events = db["events"] or 1
    dedup = max(1, round(db["dedup_rows"] / events)) if db["events"] else 1
    profiles, keys = db["profiles"] / events, db["identity_keys"] / events
    profile_bytes = round(db["profile_bytes"]) or 800
    log(
        f"B: baseline raw SQLite, the same rows: {body}-byte blob, 1 outbox row, {dedup} dedup"
        f" rows, {profiles:.2f} profile rows ({profile_bytes} bytes), {keys:.2f} identity keys"
        " per event"
    )
    baseline = sqlite_baseline(workdir / "sqlite", args, body, dedup, profiles, profile_bytes, keys)
    log(f"B: baseline {baseline['events_per_s']:.0f} events/s")
    log("B: narrower baseline (events, outbox and dedup rows only, the earlier definition)")
    narrow = sqlite_baseline(workdir / "sqlite-narrow", args, body, dedup, 0.0, 0, 0.0)
    log(f"B: narrower baseline {narrow['events_per_s']:.0f} events/s")
    return {
        "baseline": baseline,
        "narrow": narrow,
        "narrow_ratio": measured["ok_events_per_s"] / narrow["events_per_s"],
        "tracklayer": measured,
        "ratio": measured["ok_events_per_s"] / baseline["events_per_s"]
        if baseline["events_per_s"]
        else 0.0,
        "check": verify("B batch", runs, db, code),
        "metrics": metrics,
        "db": db,
    }


# profile -----------------------------------------------------------------------------------


def _idle_lines() -> set[tuple[str, int]]:
    """(function, line) of frames that are a thread waiting, not working: aiosqlite's worker
    thread blocked on its queue (py-spy does not always see that wait as idle)."""
    idle = set()
    try:
        import aiosqlite.core as core

        lines, first = inspect.getsourcelines(core._connection_worker_thread)
        for offset, text in enumerate(lines):
            if "tx.get()" in text or ("future, function" in text and ".get()" in text):
                idle.add(("_connection_worker_thread", first + offset))
    except (ImportError, OSError, AttributeError, TypeError):
        pass
    return idle


FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def category(file: str, func: str) -> str:
    if file.startswith("tracklayer/") or "/tracklayer/" in file:
        return "TrackLayer"
    if "aiosqlite" in file:
        return "aiosqlite/sqlite3"
    if "aiohttp" in file or "multidict" in file or "yarl" in file:
        return "aiohttp"
    if func == "Runner.run" or "asyncio" in file or "uvloop" in file:
        return "uvloop/asyncio"
    if "msgspec" in file:
        return "msgspec"
    return "other (stdlib, prometheus_client...)"


def parse_profile(raw: Path) -> dict:
    """py-spy ``--format raw --threads`` collapsed stacks → self and inclusive shares."""
    idle = _idle_lines()
    self_time: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    threads: collections.Counter = collections.Counter()
    categories: collections.Counter = collections.Counter()
    main_inclusive: collections.Counter = collections.Counter()
    total = idle_samples = main_total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = stack.split(";")
        thread = (
            re.sub(r"^thread \(\d+\): ", "", frames[0]) if frames[0].startswith("thread (") else "?"
        )
        frames = frames[1:] if frames[0].startswith("thread (") else frames
        parsed = []
        for frame in frames:
            match = FRAME.match(frame)
            if match:
                parsed.append((match["func"], match["file"], int(match["line"] or 0)))
            else:
                parsed.append((frame, "", 0))
        if not parsed:
            continue
        leaf = parsed[-1]
        if (leaf[0], leaf[2]) in idle:
            idle_samples += samples
            continue
        thread_kind = (
            "main (event loop)"
            if thread == "MainThread"
            else ("aiosqlite worker" if "_connection_worker_thread" in thread else thread)
        )
        total += samples
        threads[thread_kind] += samples
        name = (leaf[0], leaf[1], thread_kind)
        self_time[name] += samples
        categories[category(leaf[1], leaf[0])] += samples
        for func, file, _ in {(f, fl, 0) for f, fl, _ in parsed}:
            inclusive[(func, file, thread_kind)] += samples
            if thread_kind == "main (event loop)":
                main_inclusive[(func, file)] += samples
        if thread_kind == "main (event loop)":
            main_total += samples
    return {
        "total": total,
        "idle_excluded": idle_samples,
        "main_total": main_total,
        "self": self_time,
        "inclusive": inclusive,
        "main_inclusive": main_inclusive,
        "threads": threads,
        "categories": categories,
    }


def bench_profile(workdir: Path, args) -> dict | None:
    if shutil.which("py-spy") is None:
        log("P: py-spy not installed; profile skipped")
        return None
    log(f"P: py-spy on TrackLayer under the single-event load ({args.profile_seconds}s)")
    raw = workdir / "profile.raw.txt"
    with Daemon(workdir, "profile") as daemon:
        load_seconds = args.profile_seconds + 4
        wrk_argv = [
            "wrk",
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{load_seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(BENCH / "track.lua"),
            f"http://{daemon.address}",
            "--",
            f"P{int(time.time()) % 100000:05d}",
        ]
        env = {**os.environ, "BENCH_WRITE_KEY": WRITE_KEY}
        load_proc = start(wrk_argv, workdir / "wrk-profile.log", cwd=BENCH, env=env)
        try:
            time.sleep(2)
            spy = subprocess.run(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(daemon.proc.pid),
                    "--duration",
                    str(args.profile_seconds),
                    "--rate",
                    "100",
                    "--format",
                    "raw",
                    "--threads",
                    "--nonblocking",
                    "--output",
                    str(raw),
                ],
                capture_output=True,
                text=True,
                timeout=args.profile_seconds + 60,
            )
            load_proc.wait(timeout=load_seconds + 30)
        finally:
            stop(load_proc)
        if spy.returncode != 0 or not raw.exists():
            log(f"P: py-spy failed ({spy.returncode}): {spy.stderr.strip()[-500:]}")
            return None
    profile = parse_profile(raw)
    out = (workdir / "wrk-profile.log").read_text(errors="replace")
    match = re.search(r"BENCH_JSON (\{.*\})", out)
    if match:
        data = json.loads(match.group(1))
        profile["rps_under_profile"] = data["requests"] / (data["duration_us"] / 1e6)
    if args.keep_profile:
        shutil.copy(raw, args.keep_profile)
    return profile


# report ------------------------------------------------------------------------------------


def verdict(ratio: float, goals: dict) -> str:
    if ratio >= goals["goal"]:
        return "meets goal"
    if ratio < goals["defect"]:
        return f"**DEFECT** (< {goals['defect']}x)"
    return "below goal"


def ms(us: float) -> str:
    return f"{us / 1000:.1f} ms"


def render_ingest(info: dict, a: dict | None, b: dict | None, args, started: str) -> str:
    lines = [
        "## Ingest",
        "",
        f"_Generated by `bench/run` at {started} (UTC); rerunning replaces this section._",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} RAM, Linux "
        f"{info['kernel']}; Python {info['python']}, aiohttp {info['aiohttp']}, uvloop "
        f"{info['uvloop']}, msgspec {info['msgspec']}, SQLite {info['sqlite']}, wrk {info['wrk']}. "
        "wrk, the servers and SQLite share these CPUs. TrackLayer sources measured: sha256 "
        f"`{info['tracklayer_sources']}` of `tracklayer/**/*.py`.",
        "",
        f"Command: `bench/run` (load: wrk {args.threads} threads, {args.connections} connections,"
        f" {args.warmup:g} s warm-up then {args.duration:g} s measured per server).",
        "",
        "| benchmark | TrackLayer | baseline | ratio | goal | verdict |",
        "|---|---|---|---|---|---|",
    ]
    if a:
        t, base = a["tracklayer"], a["baseline"]
        lines += [
            f"| A single event `/v1/track`: requests/s | {t['rps']:,.0f} | {base['rps']:,.0f} "
            f"(bare aiohttp + uvloop + msgspec handler) | **{a['ratio']:.2f}x** | >= 0.9x "
            f"(defect < 0.6x) | {verdict(a['ratio'], GOALS['A'])} |",
            f"| A latency p50 | {ms(t['latency_us']['p50'])} | {ms(base['latency_us']['p50'])} "
            "| | | |",
            f"| A latency p99 | {ms(t['latency_us']['p99'])} | {ms(base['latency_us']['p99'])} "
            "| | | |",
        ]
    if b:
        t, base = b["tracklayer"], b["baseline"]
        lines += [
            f"| B batch `/v1/batch` (100 events/request): events/s | "
            f"{t['ok_events_per_s']:,.0f} | {base['events_per_s']:,.0f} (raw SQLite WAL, "
            f"synchronous=NORMAL, 100 events/transaction, the same rows) "
            f"| **{b['ratio']:.2f}x** | >= 0.7x "
            f"(defect < 0.3x) | {verdict(b['ratio'], GOALS['B'])} |",
            f"| B against the narrower baseline (events, outbox and dedup rows only; the "
            f"definition used before 2026-12-03 16:40) | | {b['narrow']['events_per_s']:,.0f} "
            f"| {b['narrow_ratio']:.2f}x | | |",
            f"| B requests/s | {t['rps']:,.1f} | | | | |",
            f"| B latency p50 / p99 (per request) | {ms(t['latency_us']['p50'])} / "
            f"{ms(t['latency_us']['p99'])} | | | | |",
        ]
    lines += [
        "",
        "### Stored versus acknowledged",
        "",
        "After each TrackLayer run the daemon is stopped with SIGTERM (it drains and commits) "
        "and `tracklayer.db` is counted. wrk keeps one request in flight per connection and "
        "drops those at its stop, so up to connections x events/request per wrk run are "
        "stored without wrk having read the 200. The check: events answered 200 <= rows "
        "stored <= events sent, and no non-2xx. Counts include the warm-up run.",
        "",
        "| run | requests answered | 200 | non-2xx | socket errors | events acknowledged (200) "
        "| events sent | rows in `events` | stored, answer unread | outbox rows left | exit "
        "| check |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in (a, b):
        if not result:
            continue
        c = result["check"]
        lines.append(
            f"| {c['name']} | {c['requests']:,} | {c['ok']:,} | {c['non200']:,} | "
            f"{c['socket_errors']:,} | {c['acked_events']:,} | {c['sent_events']:,} | "
            f"{c['stored']:,} | {c['unanswered_stored']:,} | {c['outbox_left']:,} | "
            f"{c['exit_code']} | {'OK' if c['ok_check'] else '**MISMATCH**'} |"
        )
    for result in (a, b):
        if result and result["check"]["non200"]:
            samples = [r.get("sample_non200", "") for r in (result["tracklayer"],) if r]
            lines += [
                "",
                f"Non-2xx answers in {result['check']['name']} (first ones): "
                f"`{' '.join(samples)[:400]}`",
            ]
    lines += [
        "",
        "### CPU during the measured runs",
        "",
        "Cores busy on average (of the machine's "
        f"{info['nproc']}), from /proc: the server under test (all its threads, and its "
        "main thread alone: the event loop, 1.00 = saturated), the load generator, and "
        "everything else on the machine (other processes disturb the figures when this is "
        "not near 0; steal is time the hypervisor gave to other guests).",
        "",
        "| run | server (all threads) | server's main thread | load generator "
        "| other processes | steal |",
        "|---|---|---|---|---|---|",
    ]
    rows = []
    if a:
        rows += [
            ("A bare handler", a["baseline"]["cpu"], "wrk"),
            ("A TrackLayer", a["tracklayer"]["cpu"], "wrk"),
        ]
    if b:
        rows += [
            ("B TrackLayer", b["tracklayer"]["cpu"], "wrk"),
            ("B raw SQLite baseline", b["baseline"]["cpu"], ""),
            ("B narrower baseline", b["narrow"]["cpu"], ""),
        ]
    busy = [name for name, cpu, _ in rows if cpu["other_cores"] > 0.3 or cpu["steal"] > 0.1]
    if busy:
        warning = (
            "**Disturbed:** other processes used more than 0.3 cores, or the hypervisor stole "
            f"more than 10% of the CPU, during {', '.join(busy)}; those figures are low by an "
            "unknown amount."
        )
    else:
        warning = ""
    for name, cpu, generator in rows:
        if generator:
            lines.append(
                f"| {name} | {cpu['server_cores']:.2f} | {cpu['server_main_thread_cores']:.2f} | "
                f"{cpu['wrk_cores']:.2f} | {cpu['other_cores']:.2f} | {cpu['steal']:.1%} |"
            )
        else:
            lines.append(
                f"| {name} | {cpu['wrk_cores']:.2f} (the inserting process) | | | "
                f"{cpu['other_cores']:.2f} | {cpu['steal']:.1%} |"
            )
    if warning:
        lines += ["", warning]
    lines += [
        "",
        "### Delivery while ingesting (observe mode)",
        "",
        "Scraped from the daemon's `/metrics` just after the measured run, before the stop "
        "(the outbox gauge refreshes every 5 s).",
        "",
    ]
    for result in (a, b):
        if not result:
            continue
        m = result["metrics"]
        observed = sum(
            v
            for k, v in m.items()
            if "tracklayer_deliveries_total" in k and 'outcome="observed"' in k
        )
        depth = sum(v for k, v in m.items() if k.startswith("tracklayer_outbox_depth"))
        lines.append(
            f"- {result['check']['name']}: {observed:,.0f} events delivered "
            f"(observed) when the measured run ended, outbox gauge {depth:,.0f}; after "
            f"the stop {result['check']['stored']:,} events stored in all and "
            f"{result['check']['outbox_left']:,} outbox rows still queued."
        )
    lines += [
        "",
        "### Settings",
        "",
        "- TrackLayer: `tracklayer run --config FILE` with `server.listen: 127.0.0.1:0`, "
        "one Segment source (Basic auth write key), `storage.durability: process`, "
        "`dedup.expected_keys: 1000000`, one webhook destination `mode: observe` "
        "(batch 100 / 1 s), in a temp dir.",
        "- Request body: a Segment `Order Completed` track call of about 700 bytes of "
        "JSON (email, phone, names to hash, one product), unique `messageId` and "
        "`order_id` per event (`<run>-<thread>-<counter>`), same script for baseline "
        "and TrackLayer.",
    ]
    if b:
        base = b["baseline"]
        lines.append(
            f"- SQLite baseline: Python sqlite3, WAL, synchronous=NORMAL, TrackLayer's schema "
            f"and indexes, per event one `events` row with a {base['body_bytes']}-byte blob "
            f"(the mean body TrackLayer stored), {base['outbox_rows_per_event']} `outbox` row, "
            f"{base['dedup_rows_per_event']} `dedup` rows (what TrackLayer wrote per event: "
            f"message key + business key), and the identity graph's rows TrackLayer held at the "
            f"end: {base['profile_rows_per_event']:.2f} `profiles` rows of "
            f"{base['profile_bytes']} bytes and {base['key_rows_per_event']:.2f} "
            f"`identity_keys` rows (66-character keys, ascending: the cheapest inserts) "
            f"per event; {base['batch']} events per transaction, {base['seconds']:.0f} s "
            f"({base['events']:,} events). "
            f"The narrower baseline leaves out the identity rows: "
            f"{b['narrow']['events_per_s']:,.0f} events/s."
        )
    return "\n".join(lines) + "\n"


def render_profile(profile: dict | None, args) -> str:
    lines = ["## Profile", ""]
    if not profile:
        return "\n".join([*lines, "_Not recorded (py-spy missing or not permitted)._", ""])
    total = profile["total"] or 1
    rps = profile.get("rps_under_profile")
    sampled = f" ({rps:,.0f} req/s while sampled)" if rps else ""
    busy_share = profile["main_total"] / (args.profile_seconds * 100)
    lines += [
        f"_py-spy {args.profile_seconds} s at 100 Hz (`--nonblocking --threads --format raw`) "
        f"on TrackLayer under benchmark A's load{sampled}; "
        f"{profile['total']:,} busy samples ({profile['idle_excluded']:,} samples of aiosqlite "
        "threads waiting on their queue excluded). Generated by `bench/run`._",
        "",
        f"The event-loop thread was busy in {busy_share:.0%} of the samples taken (100% would be"
        " one core saturated).",
        "",
        "Busy samples by thread: "
        + ", ".join(
            f"{name} {count / total:.0%}" for name, count in profile["threads"].most_common()
        ),
        "",
        "Top 10 costs (self time: the function on top of the stack; C code such as uvloop's "
        "loop, socket writes, msgspec, hashlib and sqlite3 counts for the Python function "
        "that called it):",
        "",
        "| # | function | file | thread | share | owner |",
        "|---|---|---|---|---|---|",
    ]
    for rank, ((func, file, thread), count) in enumerate(profile["self"].most_common(10), 1):
        shown = func
        if func == "Runner.run":
            shown = "Runner.run (uvloop's C loop: epoll, socket reads/writes, callbacks)"
        elif func == "_connection_worker_thread":
            shown = "_connection_worker_thread (SQLite statements running in C)"
        lines.append(
            f"| {rank} | `{shown}` | {file} | {thread} | {count / total:.1%} | "
            f"{category(file, func)} |"
        )
    lines += ["", "Self time by owner (all threads):", "", "| owner | share |", "|---|---|"]
    for name, count in profile["categories"].most_common():
        lines.append(f"| {name} | {count / total:.1%} |")
    lines += [
        "",
        "Inclusive time of TrackLayer's functions (the function and what it calls), per "
        "thread, as a share of all busy samples (Python code on either thread holds the GIL, "
        "so these add up against one core):",
        "",
        "| function | file | thread | inclusive share |",
        "|---|---|---|---|",
    ]
    stages = [
        (k, v)
        for k, v in profile["inclusive"].most_common()
        if category(k[1], k[0]) == "TrackLayer"
        and not k[1].startswith("tracklayer/cli")
        and k[1] != "tracklayer/__main__.py"
        and k[0] not in ("json_errors",)
    ]
    for (func, file, thread), count in stages[:20]:
        lines.append(f"| `{func}` | {file} | {thread} | {count / total:.1%} |")
    return "\n".join(lines) + "\n"


def render_console(a: dict | None, b: dict | None) -> str:
    rows = [("benchmark", "TrackLayer", "baseline", "ratio", "verdict")]
    if a:
        t, base = a["tracklayer"], a["baseline"]
        rows += [
            (
                "A /v1/track req/s",
                f"{t['rps']:,.0f}",
                f"{base['rps']:,.0f}",
                f"{a['ratio']:.2f}x",
                verdict(a["ratio"], GOALS["A"]).replace("*", ""),
            ),
            ("A p50 latency", ms(t["latency_us"]["p50"]), ms(base["latency_us"]["p50"]), "", ""),
            ("A p99 latency", ms(t["latency_us"]["p99"]), ms(base["latency_us"]["p99"]), "", ""),
        ]
    if b:
        t, base = b["tracklayer"], b["baseline"]
        rows += [
            (
                "B /v1/batch events/s",
                f"{t['ok_events_per_s']:,.0f}",
                f"{base['events_per_s']:,.0f}",
                f"{b['ratio']:.2f}x",
                verdict(b["ratio"], GOALS["B"]).replace("*", ""),
            ),
            (
                "B narrower baseline",
                "",
                f"{b['narrow']['events_per_s']:,.0f}",
                f"{b['narrow_ratio']:.2f}x",
                "",
            ),
            (
                "B p50/p99 latency",
                f"{ms(t['latency_us']['p50'])}/{ms(t['latency_us']['p99'])}",
                "",
                "",
                "",
            ),
        ]
    for result in (a, b):
        if result:
            c = result["check"]
            rows.append(
                (
                    f"{c['name']} stored",
                    f"{c['stored']:,} rows",
                    f"{c['acked_events']:,} acked / {c['sent_events']:,} sent",
                    f"non-2xx {c['non200']}",
                    "OK" if c["ok_check"] else "MISMATCH",
                )
            )
    return console_table(rows)


# main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description="TrackLayer ingest benchmarks")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--sqlite-seconds", type=float, default=8.0)
    parser.add_argument("--profile-seconds", type=int, default=10)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=20.0,
        help="seconds to wait at most, before each benchmark, for other processes to go quiet",
    )
    parser.add_argument("--only", default="A,B", help="which of A,B to run")
    parser.add_argument("--readme", type=Path, default=BENCH / "README.md")
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--keep-profile", type=Path, help="copy py-spy's raw stacks here")
    parser.add_argument("--json", type=Path, help="write all results as JSON here")
    args = parser.parse_args()

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    if shutil.which("wrk") is None:
        print("wrk is not installed (bench/run installs it)", file=sys.stderr)
        return 2
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    only = {part.strip().upper() for part in args.only.split(",")}
    workdir = Path(tempfile.mkdtemp(prefix="tracklayer-bench-"))
    a = b = profile = None
    try:
        info = machine()
        with Daemon(workdir, "preflight"):  # fail fast, before any baseline runs
            pass
        if "A" in only:
            wait_for_quiet(args.quiet_wait)
            a = bench_single(workdir, args)
        if "B" in only:
            wait_for_quiet(args.quiet_wait)
            b = bench_batch(workdir, args)
        if not args.no_profile:
            wait_for_quiet(args.quiet_wait)
            try:
                profile = bench_profile(workdir, args)
            except Exception as problem:  # keep A and B; the profile section stays as it was
                log(f"P: profile failed, its README section is left as it was: {problem}")
    except BaseException:
        for logfile in sorted(workdir.rglob("*.log")):
            print(f"--- {logfile.relative_to(workdir)}\n{tail(logfile)}", file=sys.stderr)
        raise
    finally:
        stop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    print(render_console(a, b))
    ingest = render_ingest(info, a, b, args, started)
    for line in ingest.splitlines():
        if line.startswith("**Disturbed"):
            print(line.replace("**", ""))
    profile_text = render_profile(profile, args) if profile else None
    if profile:
        print()
        print(profile_text)
    if not args.no_readme:
        update_section(args.readme, "ingest", ingest)
        if profile_text is not None:
            update_section(args.readme, "profile", profile_text)
        log(f"wrote {args.readme}")
    if args.json:
        plain_profile = None
        if profile:
            plain_profile = {
                key: [[list(k) if isinstance(k, tuple) else k, v] for k, v in value.most_common()]
                if isinstance(value, collections.Counter)
                else value
                for key, value in profile.items()
            }
        everything = {"machine": info, "A": a, "B": b, "profile": plain_profile}
        args.json.write_text(json.dumps(everything, default=str, indent=1))
    checks = [r["check"]["ok_check"] for r in (a, b) if r]
    return 0 if all(checks) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all()
