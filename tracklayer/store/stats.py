"""Per-minute outcome counts per destination and event, buffered in memory and flushed
through the journal, so reports read SQLite without a write per event."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import aiosqlite

# Upper bounds (ms) of the receipt-to-acceptance latency buckets; percentiles in reports
# are read off these.
LATENCY_BUCKETS_MS = (
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000,
    3_600_000, 21_600_000, 86_400_000,
)  # fmt: skip


def latency_bucket(milliseconds: float) -> str:
    for bound in LATENCY_BUCKETS_MS:
        if milliseconds <= bound:
            return str(bound)
    return "inf"


class StatsBuffer:
    """Counts (and sums) since the last flush, keyed (minute, destination, event, outcome,
    code). Besides delivery outcomes, rows record facts for reports and anomaly detection:
    outcome "value" (code = currency, total = order value), "latency" (code = bucket upper
    bound in ms), "score" (total = sum of match-quality scores), "key" (code = identifier
    key present), "no_consent" (the event stated no consent)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._counts: dict[tuple[int, str, str, str, str], list] = {}

    def add(
        self,
        destination: str,
        name: str,
        outcome: str,
        code: str = "",
        message: str = "",
        count: int = 1,
        total: float = 0.0,
    ) -> None:
        key = (int(self.clock() // 60), destination, name, outcome, code)
        entry = self._counts.get(key)
        if entry is None:
            self._counts[key] = [count, message[:300], total]
        else:
            entry[0] += count
            entry[2] += total
            if message:
                entry[1] = message[:300]

    def take(self) -> list[tuple]:
        """Rows (minute, destination, name, outcome, code, count, message, total)."""
        counts, self._counts = self._counts, {}
        return [(*key, value[0], value[1], value[2]) for key, value in counts.items()]

    def restore(self, rows: list[tuple]) -> None:
        """Put rows from ``take()`` back after a failed write."""
        for minute, destination, name, outcome, code, count, message, total in rows:
            key = (minute, destination, name, outcome, code)
            entry = self._counts.setdefault(key, [0, message, 0.0])
            entry[0] += count
            entry[2] += total

    @staticmethod
    def write(connection: sqlite3.Connection, rows: list[tuple]) -> None:
        """Journal operation: add ``rows`` (from ``take()``) to the stats table."""
        connection.executemany(
            "INSERT INTO stats (minute, destination, name, outcome, code, count, message, total)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (minute, destination, name, outcome, code) DO UPDATE SET"
            " count = count + excluded.count, total = total + excluded.total,"
            " message = CASE excluded.message WHEN '' THEN message ELSE excluded.message END",
            rows,
        )


async def summary(connection: aiosqlite.Connection, since: float, until: float) -> list[tuple]:
    """(destination, event, outcome, code, count, message, total) over ``[since, until)``."""
    async with connection.execute(
        "SELECT destination, name, outcome, code, SUM(count), MAX(message), SUM(total)"
        " FROM stats"
        " WHERE minute >= ? AND minute < ? GROUP BY destination, name, outcome, code"
        " ORDER BY destination, name, outcome, code",
        (int(since // 60), int(until // 60) + 1),
    ) as cursor:
        return list(await cursor.fetchall())


async def series(connection: aiosqlite.Connection, since: float, until: float) -> list[tuple]:
    """Per-minute rows (minute, destination, event, outcome, code, count, total, message)
    over ``[since, until)``, oldest first: the buckets anomaly detection reads."""
    async with connection.execute(
        "SELECT minute, destination, name, outcome, code, count, total, message FROM stats"
        " WHERE minute >= ? AND minute < ? ORDER BY minute",
        (int(since // 60), int(until // 60) + 1),
    ) as cursor:
        return list(await cursor.fetchall())
