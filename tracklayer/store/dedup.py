"""The dedup registry: a time-sliced bloom in memory, confirmed against the ``dedup`` table.

Keys are scoped strings (``m:<source>:<messageId>``, ``b:<destination>:<business key>``)
stored as their xxh3-128 digest. The bloom answers "definitely new" without touching SQLite;
a "maybe" is confirmed in the table, so a bloom false positive never drops an event.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable

import aiosqlite

from tracklayer.store.bloom import TimeSlicedBloom, digest

log = logging.getLogger("tracklayer.store.dedup")

_CHUNK = 900  # SQLite's default parameter limit is well above this; keeps statements small


def message_key(source: str, message_id: str) -> int:
    return digest(f"m:{source}:{message_id}")


def business_key(destination: str, key: str) -> int:
    return digest(f"b:{destination}:{key}")


def as_blob(key_digest: int) -> bytes:
    return key_digest.to_bytes(16, "big")


class DedupRegistry:
    """Which scoped keys were seen within ``window`` seconds."""

    def __init__(self, window: float, expected_keys: int, false_positive_rate: float) -> None:
        self.window = window
        self.bloom = TimeSlicedBloom(window, expected_keys, false_positive_rate)
        self.confirmations = 0  # bloom "maybe" answers checked in SQLite
        self.false_positives = 0  # of those, keys SQLite had never seen

    async def rebuild(self, connection: aiosqlite.Connection, now: float | None = None) -> int:
        """Reload the bloom from the table after a start; logs progress for big registries."""
        now = time.time() if now is None else now
        since = now - self.window
        loaded = 0
        started = time.monotonic()
        async with connection.execute(
            "SELECT key, seen_at FROM dedup WHERE seen_at >= ?", (since,)
        ) as cursor:
            while rows := await cursor.fetchmany(50_000):
                for key, seen_at in rows:
                    self.bloom.add(int.from_bytes(key, "big"), seen_at)
                loaded += len(rows)
                if time.monotonic() - started > 2:
                    log.info("rebuilding dedup filter", extra={"fields": {"loaded": loaded}})
                    started = time.monotonic()
        return loaded

    def seen(self, connection: sqlite3.Connection, digests: Iterable[int], now: float) -> set[int]:
        """The subset of ``digests`` seen within the window: bloom first, then SQLite (run
        inside the writer's transaction, so it sees the group's own earlier rows)."""
        maybe = [d for d in set(digests) if self.bloom.maybe_contains(d, now)]
        if not maybe:
            return set()
        self.confirmations += len(maybe)
        found: set[int] = set()
        since = now - self.window
        for start in range(0, len(maybe), _CHUNK):
            chunk = maybe[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key FROM dedup WHERE key IN ({marks}) AND seen_at >= ?"
            rows = connection.execute(query, [*map(as_blob, chunk), since]).fetchall()
            found.update(int.from_bytes(row[0], "big") for row in rows)
        self.false_positives += len(maybe) - len(found)
        return found

    def remember(self, digests: Iterable[int], now: float) -> list[tuple[bytes, float]]:
        """Add keys to the bloom; returns the rows the caller inserts in its transaction."""
        rows = []
        for key_digest in digests:
            self.bloom.add(key_digest, now)
            rows.append((as_blob(key_digest), now))
        return rows
