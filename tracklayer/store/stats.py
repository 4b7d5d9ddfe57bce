"""Per-minute outcome counts per destination and event, buffered in memory and flushed
through the journal, so reports read SQLite without a write per event."""

from __future__ import annotations

import time
from collections.abc import Callable

import aiosqlite


class StatsBuffer:
    """Counts since the last flush, keyed (minute, destination, event, outcome, code)."""

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
    ) -> None:
        key = (int(self.clock() // 60), destination, name, outcome, code)
        entry = self._counts.get(key)
        if entry is None:
            self._counts[key] = [count, message[:300]]
        else:
            entry[0] += count
            if message:
                entry[1] = message[:300]

    def take(self) -> list[tuple]:
        counts, self._counts = self._counts, {}
        return [(*key, value[0], value[1]) for key, value in counts.items()]

    async def write(self, connection: aiosqlite.Connection, rows: list[tuple]) -> None:
        """Journal operation: add ``rows`` (from ``take()``) to the stats table."""
        await connection.executemany(
            "INSERT INTO stats (minute, destination, name, outcome, code, count, message)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (minute, destination, name, outcome, code) DO UPDATE SET"
            " count = count + excluded.count,"
            " message = CASE excluded.message WHEN '' THEN message ELSE excluded.message END",
            rows,
        )


async def summary(connection: aiosqlite.Connection, since: float, until: float) -> list[tuple]:
    """(destination, event, outcome, code, count, message) over ``[since, until)``."""
    async with connection.execute(
        "SELECT destination, name, outcome, code, SUM(count), MAX(message) FROM stats"
        " WHERE minute >= ? AND minute < ? GROUP BY destination, name, outcome, code"
        " ORDER BY destination, name, outcome, code",
        (int(since // 60), int(until // 60) + 1),
    ) as cursor:
        return list(await cursor.fetchall())
