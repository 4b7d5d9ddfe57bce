"""The ``tracklayer`` command: run, check, report, replay."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import time

from tracklayer import __version__, log
from tracklayer.config import Config, ConfigError, load
from tracklayer.destinations import create
from tracklayer.duration import format_duration, parse_duration

# How long a thread may hold the GIL before one that waits for it is let in (Python's
# default is 5 ms). SQLite's threads (the writer's group commit, each worker's claims)
# release the GIL around every statement and must win it back afterwards; while the event
# loop is busy each win waits out this interval, so at 5 ms a commit of a thousand events
# spent most of its time waiting. 1 ms measured +15 % batch ingest (bench/README.md).
GIL_SWITCH_SECONDS = 0.001


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tracklayer", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tracklayer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument(
            "--config",
            default=os.environ.get("TRACKLAYER_CONFIG"),
            help="config file (default: $TRACKLAYER_CONFIG)",
        )
        return sub

    run = command("run", "run the daemon")
    run.add_argument("--log-level", default="info")
    command("check", "validate the config and print the plan")
    report = command("report", "what happened per destination and event")
    report.add_argument("--since", default="24h")
    report.add_argument("--json", action="store_true")
    replay = command("replay", "re-queue dead-lettered events of a destination")
    replay.add_argument("--destination", required=True)
    compare = command("compare", "parallel validation against the old route's export")
    compare.add_argument(
        "--baseline",
        required=True,
        help="the old route's export: Segment NDJSON, or CSV"
        " event,order_id,value,currency,timestamp",
    )
    compare.add_argument(
        "--since", help="only this far back, e.g. 24h (default: the baseline's span)"
    )
    compare.add_argument(
        "--tolerance",
        type=float,
        default=0.02,
        help="largest relative difference in counts or values that passes (default 0.02)",
    )
    send_test = command("send-test", "send one identify + purchase to a destination's test mode")
    send_test.add_argument("--destination", required=True)
    send_test.add_argument("--test-event-code", default="", help="Meta / TikTok test events code")

    args = parser.parse_args(argv)
    if not args.config:
        parser.error("--config is required (or set TRACKLAYER_CONFIG)")
    try:
        config = load(args.config)
    except ConfigError as problem:
        print(problem, file=sys.stderr)
        return 1
    if args.command == "check":
        print(plan(config, args.config))
        return 0
    if args.command == "run":
        return run_daemon(config, args.config, args.log_level)
    if args.command == "report":
        try:
            since = parse_duration(args.since)
        except ValueError as problem:
            print(f"--since: {problem}", file=sys.stderr)
            return 2
        return asyncio.run(print_report(config, since, args.json))
    if args.command == "replay":
        return asyncio.run(replay_dead_letters(config, args.destination))
    if args.command == "compare":
        from tracklayer.diagnostics.compare import run_compare

        try:
            since = parse_duration(args.since) if args.since else None
        except ValueError as problem:
            print(f"--since: {problem}", file=sys.stderr)
            return 2
        text, code = asyncio.run(run_compare(config, args.baseline, since, args.tolerance))
        print(text, file=sys.stderr if code == 2 else sys.stdout)
        return code
    if args.command == "send-test":
        from tracklayer import send_test as send_test_module

        return asyncio.run(send_test_module.run(config, args.destination, args.test_event_code))
    return 2


def run_daemon(config: Config, path: str, level: str) -> int:
    import uvloop

    from tracklayer.app import TrackLayer

    log.setup(level)
    sys.setswitchinterval(GIL_SWITCH_SECONDS)

    async def main_loop() -> None:
        daemon = TrackLayer(config, path)
        try:
            await daemon.start()
        except BaseException:
            await daemon.stop()  # close what did open, so the process can exit
            raise
        await daemon.serve()

    try:
        uvloop.run(main_loop())
    except OSError as problem:  # e.g. the listen address is taken
        print(f"{path}: cannot start: {problem}", file=sys.stderr)
        return 1
    return 0


def plan(config: Config, path: str) -> str:
    """What the config will do, for ``check``."""
    lines = [f"{path}: OK", "", f"listen {config.server.listen}"]
    if config.admin.listen:
        lines.append(f"admin listen {config.admin.listen}")
    storage = config.storage
    lines.append(
        f"storage {storage.path} (durability {storage.durability}, retention"
        f" {format_duration(storage.retention)}),"
        f" dedup window {format_duration(config.dedup.window)}"
    )
    lines.append("")
    lines.append("sources:")
    for source in config.sources:
        limit = f", rate limit {source.rate_limit.rps:g}/s" if source.rate_limit else ""
        allow = (
            f", allow {len(source.allow_events)} events" if source.allow_events is not None else ""
        )
        lines.append(
            f"  {source.id} ({source.type}, {len(source.write_keys)} write keys{limit}{allow})"
        )
    lines.append("destinations:")
    for destination in config.destinations:
        plugin = create(destination)
        batch = destination.batch or plugin.default_batch
        rate = destination.rate_limit or plugin.default_rate_limit
        events = ", ".join(destination.events) if destination.events is not None else "all events"
        consent = (
            f", requires consent {', '.join(destination.requires_consent)}"
            if destination.requires_consent
            else ""
        )
        lines.append(
            f"  {destination.id} ({type(destination).__struct_config__.tag},"
            f" {destination.mode}): {events}; {rate.rps:g} req/s burst {rate.capacity:g};"
            f" batch {batch.max_events} / {format_duration(batch.max_wait)};"
            f" retry {destination.retry.max_attempts}× within"
            f" {format_duration(destination.retry.max_age)}{consent}"
        )
    return "\n".join(lines)


async def print_report(config: Config, since: float, as_json: bool) -> int:
    from tracklayer.destinations import match_weights_for
    from tracklayer.diagnostics import report
    from tracklayer.store.database import connect

    connection = await connect(config.storage.path, config.storage.durability)
    try:
        now = time.time()
        data = await report.build(
            connection, now - since, now, match_weights_for(config.destinations)
        )
    finally:
        await connection.close()
    print(json.dumps(data, indent=2) if as_json else report.render(data))
    return 0


async def replay_dead_letters(config: Config, destination: str) -> int:
    from tracklayer.store import outbox
    from tracklayer.store.database import in_thread, open_database

    try:
        config.destination(destination)
    except KeyError as problem:
        print(problem.args[0], file=sys.stderr)
        return 1
    connection = await open_database(config.storage.path, config.storage.durability)
    try:

        def requeue(raw: sqlite3.Connection) -> int:
            with raw:  # one transaction; the running daemon's writer waits on busy_timeout
                raw.execute("BEGIN IMMEDIATE")
                return outbox.replay(raw, destination, time.time())

        count = await in_thread(connection, requeue)
    finally:
        await connection.close()
    print(f"re-queued {count} dead-lettered events for {destination}")
    return 0
