"""The outbox: one row per (event, destination) until the destination has settled it.

Writes are journal operations: plain functions of a sqlite3 connection, run inside the
writer's group transaction on its thread. Reads that need no lock use the reader
connection (async).
"""

from __future__ import annotations

import sqlite3
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


def claim(
    connection: sqlite3.Connection, destination: str, limit: int, now: float
) -> list[Claimed]:
    """Take up to ``limit`` due rows of ``destination``, oldest first."""
    rows = connection.execute(
        "SELECT o.id, o.event, o.attempts, e.body FROM outbox o JOIN events e ON e.id = o.event"
        " WHERE o.destination = ? AND o.claimed = 0 AND o.due_at <= ?"
        " ORDER BY o.due_at, o.id LIMIT ?",
        (destination, now, limit),
    ).fetchall()
    if not rows:
        return []
    ids = [row[0] for row in rows]
    connection.execute(f"UPDATE outbox SET claimed = 1 WHERE id IN ({_marks(ids)})", ids)
    return [Claimed(row[0], row[1], row[2], _decode_event(row[3])) for row in rows]


def settle(
    connection: sqlite3.Connection,
    destination: str,
    done: Sequence[int],
    retries: Sequence[Retry],
    dead: Sequence[Dead],
    now: float,
) -> None:
    """Record a batch's fate: finished rows leave, retries wait, dead rows move aside."""
    if done:
        connection.execute(f"DELETE FROM outbox WHERE id IN ({_marks(done)})", list(done))
    if retries:
        connection.executemany(
            "UPDATE outbox SET claimed = 0, due_at = ?, attempts = ?, last_error = ? WHERE id = ?",
            [(r.due_at, r.attempts, r.error, r.id) for r in retries],
        )
    if dead:
        connection.executemany(
            "INSERT INTO dead_letters (destination, event, failed_at, attempts, outcome, code,"
            " reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (destination, d.event_row, now, d.attempts, d.outcome, d.code, d.reason)
                for d in dead
            ],
        )
        ids = [d.id for d in dead]
        connection.execute(f"DELETE FROM outbox WHERE id IN ({_marks(ids)})", ids)


def release(connection: sqlite3.Connection, ids: Sequence[int]) -> None:
    """Hand claimed rows back untouched (shutdown with a send still unanswered)."""
    if ids:
        connection.execute(f"UPDATE outbox SET claimed = 0 WHERE id IN ({_marks(ids)})", list(ids))


def recover_claims(connection: sqlite3.Connection) -> int:
    """After a crash, rows claimed by the dead process are due again."""
    return connection.execute("UPDATE outbox SET claimed = 0 WHERE claimed = 1").rowcount


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


def replay(connection: sqlite3.Connection, destination: str, now: float) -> int:
    """Queue every dead letter of ``destination`` again, attempts reset."""
    count = connection.execute(
        "INSERT INTO outbox (destination, event, due_at)"
        " SELECT destination, event, ? FROM dead_letters WHERE destination = ? ORDER BY id",
        (now, destination),
    ).rowcount
    connection.execute("DELETE FROM dead_letters WHERE destination = ?", (destination,))
    return count


async def dead_letter_counts(connection: aiosqlite.Connection) -> dict[str, int]:
    async with connection.execute(
        "SELECT destination, COUNT(*) FROM dead_letters GROUP BY destination"
    ) as cursor:
        return {row[0]: row[1] for row in await cursor.fetchall()}
