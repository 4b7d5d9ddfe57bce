"""The dedup registry: a time-sliced bloom in memory, confirmed against the ``dedup`` table.

Keys are scoped strings (``m:<source>:<messageId>``, ``b:<destination>:<business key>``)
stored as their xxh3-128 digest. The bloom answers "definitely new" without touching SQLite;
a "maybe" is confirmed in the table, so a bloom false positive never drops an event.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from tracklayer.store.bloom import TimeSlicedBloom, digest

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
        # Until the filter holds every key of the window, a "no" from it proves nothing:
        # every key is confirmed in SQLite meanwhile (correct, only slower).
        self.complete = False
        self.confirmations = 0  # bloom "maybe" answers checked in SQLite
        self.false_positives = 0  # of those, keys SQLite had never seen
        self._rebuild_after = b""  # keyset position of the rebuild
        self.loaded = 0

    def rebuild_rows(self, connection: sqlite3.Connection, limit: int) -> list[tuple]:
        """The next ``limit`` rows of the table (key order), for ``rebuild_load``. Read on a
        reader connection, so the scan does not fill the writer's page cache."""
        return connection.execute(
            "SELECT key, seen_at FROM dedup WHERE key > ? ORDER BY key LIMIT ?",
            (self._rebuild_after, limit),
        ).fetchall()

    def rebuild_load(self, rows: list[tuple], now: float, last: bool) -> None:
        """Add the window's keys among ``rows`` to the filter; ``last``: the table is done.

        Runs on the event loop, like every other use of the filter, in steps: start-up
        need not wait for the whole table, the daemon serves at once. A key committed
        after a step read its rows reaches the filter through ``remember``.
        """
        since = now - self.window
        add = self.bloom.add
        for key, seen_at in rows:
            if seen_at >= since:
                add(int.from_bytes(key, "big"), seen_at)
                self.loaded += 1
        if rows:  # moved on only once loaded: a failed step reads the same rows again
            self._rebuild_after = rows[-1][0]
        if last:
            self.complete = True

    def screen(self, digests: Iterable[int], now: float) -> list[int]:
        """The keys among ``digests`` the filter cannot rule out, for ``confirm``. On the
        event loop, before the group's transaction: the filter's Python work stays off the
        writer thread, which then spends its time in SQLite without the GIL."""
        if not self.complete:
            return list(set(digests))
        contains = self.bloom.maybe_contains
        maybe = [d for d in set(digests) if contains(d, now)]
        self.confirmations += len(maybe)
        return maybe

    def confirm(self, connection: sqlite3.Connection, maybe: list[int], now: float) -> set[int]:
        """The subset of ``maybe`` seen within the window, from SQLite (run inside the
        writer's transaction, so it sees every committed group)."""
        if not maybe:
            return set()
        found: set[int] = set()
        since = now - self.window
        for start in range(0, len(maybe), _CHUNK):
            chunk = maybe[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key FROM dedup WHERE key IN ({marks}) AND seen_at >= ?"
            rows = connection.execute(query, [*map(as_blob, chunk), since]).fetchall()
            found.update(int.from_bytes(row[0], "big") for row in rows)
        if self.complete:
            self.false_positives += len(maybe) - len(found)
        return found

    def remember(self, digests: Iterable[int], now: float) -> None:
        """Add keys a transaction committed to the filter (on the event loop, after the
        commit and before the next group is screened, so no screen misses them; a rolled
        back key never enters it)."""
        add = self.bloom.add
        for key_digest in digests:
            add(key_digest, now)


def rows(digests: Iterable[int], now: float) -> list[tuple[bytes, float]]:
    """The ``dedup`` table rows for keys first seen at ``now``."""
    return [(as_blob(key_digest), now) for key_digest in digests]
