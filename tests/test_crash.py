"""kill -9 in the middle of a burst of concurrent requests, then a restart on the same data:
every event that was answered 200 is delivered, and a redelivery keeps its event_id."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict

import aiohttp

from tests.harness import WRITE_KEY, Daemon, base_config, basic, webhook


async def burst(url: str, acked: set[str], stop: asyncio.Event, ids: itertools.count) -> None:
    """One client: sequential requests (single events and batches of 10) until stopped."""
    headers = {"Authorization": basic(WRITE_KEY), "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            n = next(ids)
            batch = n % 3 == 0
            messages = [f"m-{n}-{i}" for i in range(10 if batch else 1)]
            body = [
                {
                    "type": "track",
                    "userId": "u",
                    "event": "Order Completed",
                    "messageId": m,
                    "properties": {"order_id": m, "revenue": 1},
                }
                for m in messages
            ]
            path, payload = ("/v1/batch", {"batch": body}) if batch else ("/v1/track", body[0])
            try:
                async with session.post(
                    url + path, data=json.dumps(payload), headers=headers
                ) as response:
                    if response.status == 200:
                        acked.update(messages)
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.01)  # the daemon is gone: nothing acknowledged here


async def test_kill_9_loses_nothing_that_was_acknowledged(tmp_path, hook, daemons):
    config = base_config(tmp_path, destinations=[webhook(hook.url)])
    daemon = Daemon(tmp_path, config)
    daemons.append(daemon)
    await asyncio.to_thread(daemon.start)

    acked: set[str] = set()
    stop = asyncio.Event()
    ids = itertools.count()
    clients = [asyncio.create_task(burst(daemon.url, acked, stop, ids)) for _ in range(24)]
    await asyncio.sleep(1.5)
    daemon.kill()  # SIGKILL: no shutdown code runs
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*clients)  # answers read just after the kill still count as acks
    assert len(acked) > 100, "the burst was too small to mean anything"

    await asyncio.to_thread(daemon.start)  # same data directory
    await hook.wait_for_ids(acked, timeout=30)
    assert hook.problems == []

    event_ids: dict[str, set[str]] = defaultdict(set)
    for event in hook.accepted_events:
        event_ids[event["message_id"]].add(event["event_id"])
    assert acked <= set(event_ids)
    assert all(len(ids_seen) == 1 for ids_seen in event_ids.values())
    redelivered = len(hook.accepted_events) - len(event_ids)
    print(f"\nacknowledged {len(acked)}, delivered {len(event_ids)}, redelivered {redelivered}")
