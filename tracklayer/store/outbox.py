"""The outbox: one row per (event, destination) until the destination has settled it.

Writes are journal operations (they run inside the writer's group transaction); reads that
need no lock use the reader connection.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite
import msgspec

from tracklayer.model import Event

_decode_event = msgspec.msgpack.Decoder(Event).decode


class Claimed(msgspec.Struct):
    """An outbox row taken by a worker, with the event it carries."""

    id: int
    event_row: int
    attempts: int
    event: Event


class Retry(msgspec.Struct):
    id: int
    due_at: float
    attempts: int
    error: str


class Dead(msgspec.Struct):
    id: int
    event_row: int
    attempts: int
    outcome: str  # "rejected" (the platform refused it) or "dead" (retries ran out)
    code: str
    reason: str


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


async def claim(
    connection: aiosqlite.Connection, destination: str, limit: int, now: float
) -> list[Claimed]:
    """Take up to ``limit`` due rows of ``destination``, oldest first."""
    async with connection.execute(
        "SELECT o.id, o.event, o.attempts, e.body FROM outbox o JOIN events e ON e.id = o.event"
        " WHERE o.destination = ? AND o.claimed = 0 AND o.due_at <= ?"
        " ORDER BY o.due_at, o.id LIMIT ?",
        (destination, now, limit),
    ) as cursor:
        rows = await cursor.fetchall()
    if not rows:
        return []
    ids = [row[0] for row in rows]
    await connection.execute(f"UPDATE outbox SET claimed = 1 WHERE id IN ({_marks(ids)})", ids)
    return [Claimed(row[0], row[1], row[2], _decode_event(row[3])) for row in rows]


async def settle(
    connection: aiosqlite.Connection,
    destination: str,
    done: Sequence[int],
    retries: Sequence[Retry],
    dead: Sequence[Dead],
    now: float,
) -> None:
    """Record a batch's fate: finished rows leave, retries wait, dead rows move aside."""
    if done:
        await connection.execute(f"DELETE FROM outbox WHERE id IN ({_marks(done)})", list(done))
    if retries:
        await connection.executemany(
            "UPDATE outbox SET claimed = 0, due_at = ?, attempts = ?, last_error = ? WHERE id = ?",
            [(r.due_at, r.attempts, r.error, r.id) for r in retries],
        )
    if dead:
        await connection.executemany(
            "INSERT INTO dead_letters (destination, event, failed_at, attempts, outcome, code,"
            " reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (destination, d.event_row, now, d.attempts, d.outcome, d.code, d.reason)
                for d in dead
            ],
        )
        ids = [d.id for d in dead]
        await connection.execute(f"DELETE FROM outbox WHERE id IN ({_marks(ids)})", ids)


async def release(connection: aiosqlite.Connection, ids: Sequence[int]) -> None:
    """Hand claimed rows back untouched (shutdown with a send still unanswered)."""
    if ids:
        await connection.execute(
            f"UPDATE outbox SET claimed = 0 WHERE id IN ({_marks(ids)})", list(ids)
        )


async def recover_claims(connection: aiosqlite.Connection) -> int:
    """After a crash, rows claimed by the dead process are due again."""
    cursor = await connection.execute("UPDATE outbox SET claimed = 0 WHERE claimed = 1")
    return cursor.rowcount


async def next_due(connection: aiosqlite.Connection, destination: str) -> float | None:
    async with connection.execute(
        "SELECT MIN(due_at) FROM outbox WHERE destination = ? AND claimed = 0", (destination,)
    ) as cursor:
        row = await cursor.fetchone()
    return row[0] if row and row[0] is not None else None


async def depths(connection: aiosqlite.Connection) -> dict[str, int]:
    async with connection.execute(
        "SELECT destination, COUNT(*) FROM outbox GROUP BY destination"
    ) as cursor:
        return {row[0]: row[1] for row in await cursor.fetchall()}


async def replay(connection: aiosqlite.Connection, destination: str, now: float) -> int:
    """Queue every dead letter of ``destination`` again, attempts reset."""
    cursor = await connection.execute(
        "INSERT INTO outbox (destination, event, due_at)"
        " SELECT destination, event, ? FROM dead_letters WHERE destination = ? ORDER BY id",
        (now, destination),
    )
    count = cursor.rowcount
    await connection.execute("DELETE FROM dead_letters WHERE destination = ?", (destination,))
    return count


async def dead_letter_counts(connection: aiosqlite.Connection) -> dict[str, int]:
    async with connection.execute(
        "SELECT destination, COUNT(*) FROM dead_letters GROUP BY destination"
    ) as cursor:
        return {row[0]: row[1] for row in await cursor.fetchall()}
