"""CPU per event of TrackLayer in one process, for comparing two versions of the code.

    python bench/inprocess.py [track|batch] [--seconds 8] [--profile]

Starts TrackLayer in this process with bench/ingest.py's config (one Segment source, one
observe-mode webhook), drives it with wrk (bench/track.lua or bench/batch.lua) and prints
the process's CPU seconds per event (both threads: the event loop and SQLite's), the
commits, how much was delivered meanwhile, and the writer thread's own CPU. Process CPU
time is steadier than requests/s on a shared machine, so this is the figure to compare
before and after a change (run each a few times); the ratios in bench/README.md come from
bench/run. ``--profile`` adds cProfile of the event-loop thread (slower; read it for
shares, not for speed). Not part of ``bench/run``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import uvloop

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
# The repo's own tracklayer, not an installed copy; PYTHONPATH=<other checkout> measures
# that one instead (how "before" figures are taken).
if not os.environ.get("PYTHONPATH"):
    sys.path.insert(1, str(BENCH.parent))
from ingest import WRITE_KEY, tracklayer_config  # noqa: E402

from tracklayer.app import TrackLayer  # noqa: E402
from tracklayer.cli import GIL_SWITCH_SECONDS  # noqa: E402
from tracklayer.config import load  # noqa: E402
from tracklayer.store import journal  # noqa: E402

writer_cpu = [0.0]


def time_the_writer() -> None:
    """Add up the CPU the writer thread spends in group transactions."""
    transaction = journal.Journal._transaction

    def timed(self, connection, group, now):
        started = time.thread_time()
        try:
            transaction(self, connection, group, now)
        finally:
            writer_cpu[0] += time.thread_time() - started

    journal.Journal._transaction = timed


async def run(script: str, seconds: int, profile: cProfile.Profile | None) -> None:
    directory = Path(tempfile.mkdtemp(prefix="tracklayer-inprocess-"))
    app = TrackLayer(load(str(tracklayer_config(directory))))
    await app.start()
    argv = ["wrk", "-t2", "-c32", f"-d{seconds}s", "-s", str(BENCH / script)]
    argv += [f"http://{app.addresses['public']}", "--", f"p{time.time():.0f}"]
    env = {**os.environ, "BENCH_WRITE_KEY": WRITE_KEY}
    wrk = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=BENCH, stdout=asyncio.subprocess.PIPE
    )
    cpu, wall = time.process_time(), time.monotonic()
    if profile:
        profile.enable()
    out, _ = await wrk.communicate()
    if profile:
        profile.disable()
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    line = next(x for x in out.decode().splitlines() if x.startswith("BENCH_JSON "))
    result = json.loads(line.removeprefix("BENCH_JSON "))
    events = result["ok"] * result["events_per_request"]
    database = sqlite3.connect(directory / "data" / "tracklayer.db")
    stored = database.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    left = database.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    commits = app.journal.commits
    await app.stop()
    print(
        f"{script}: {result['requests'] / wall:,.0f} requests/s, {events:,} events answered;"
        f" CPU {cpu:.2f} s in {wall:.1f} s = {cpu / events * 1e6:,.0f} us per event"
        f" (writer thread {writer_cpu[0] / events * 1e6:,.0f} us);"
        f" {commits} commits; delivered meanwhile {stored - left:,} of {stored:,}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("load", choices=["track", "batch"], nargs="?", default="track")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    profile = cProfile.Profile() if args.profile else None
    time_the_writer()
    sys.setswitchinterval(GIL_SWITCH_SECONDS)  # as the daemon runs (tracklayer run)
    uvloop.run(run(f"{args.load}.lua", args.seconds, profile))
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
