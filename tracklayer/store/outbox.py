"""The outbox: one row per (event, destination) until the destination has settled it.

Writes are journal operations: plain functions of a sqlite3 connection, run inside the
writer's group transaction on its thread. Reads that need no lock use the reader
connection (async).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence

import aiosqlite
import msgspec

from tracklayer.model import Event

_decode_event = msgspec.msgpack.Decoder(Event).decode
_decode_ids = msgspec.json.Decoder(list[int]).decode
_encode_ids = msgspec.json.Encoder().encode


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
    connection: sqlite3.Connection,
    destination: str,
    limit: int,
    now: float,
    in_flight: Collection[int] = (),
) -> list[Claimed]:
    """Up to ``limit`` due rows of ``destination``, oldest first, skipping ``in_flight``.

    A read (on the reader connection): which rows a worker holds lives in its memory, not
    in the table, so claiming never waits for the writer, and a crashed process's holds
    vanish with it (its rows are simply due again).
    """
    ids = _due_ids(connection, destination, limit, now, in_flight)
    if not ids:
        return []
    rows = connection.execute(
        "SELECT o.id, o.event, o.attempts, e.body FROM outbox o JOIN events e ON e.id = o.event"
        f" WHERE o.id IN ({_marks(ids)}) ORDER BY o.due_at, o.id",
        ids,
    ).fetchall()
    return [Claimed(row[0], row[1], row[2], _decode_event(row[3])) for row in rows]


def _due_ids(
    connection: sqlite3.Connection,
    destination: str,
    limit: int,
    now: float,
    in_flight: Collection[int],
) -> list[int]:
    # Rows in flight are still in the table and due: read past them on the index, as one
    # JSON array in one step. Python's sqlite3 takes the GIL back for every row it steps
    # over, and stepping over thousands of held rows one by one stalls under load. (The
    # array keeps the subquery's order; were it ever not to, the rows taken would still
    # be among the oldest due, and the claim orders them.)
    (ids,) = connection.execute(
        "SELECT json_group_array(id) FROM (SELECT id FROM outbox"
        " WHERE destination = ? AND claimed = 0 AND due_at <= ? ORDER BY due_at, id LIMIT ?)",
        (destination, now, limit + len(in_flight)),
    ).fetchone()
    return [row_id for row_id in _decode_ids(ids) if row_id not in in_flight][:limit]


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
            "UPDATE outbox SET due_at = ?, attempts = ?, last_error = ? WHERE id = ?",
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


def recover_claims(connection: sqlite3.Connection, destinations: Sequence[str]) -> int:
    """Rows that earlier builds marked claimed in the table are due again (holds now live
    in the worker's memory, and the column stays 0). Per destination, on the index."""
    return sum(
        connection.execute(
            "UPDATE outbox SET claimed = 0 WHERE destination = ? AND claimed = 1", (destination,)
        ).rowcount
        for destination in destinations
    )


def next_due(
    connection: sqlite3.Connection, destination: str, in_flight: Collection[int] = ()
) -> float | None:
    """When the earliest row not in flight is due (None: the destination has none). The
    held rows are skipped inside SQLite: one step, however many there are."""
    row = connection.execute(
        "SELECT due_at FROM outbox WHERE destination = ? AND claimed = 0"
        " AND id NOT IN (SELECT value FROM json_each(?)) ORDER BY due_at, id LIMIT 1",
        (destination, _encode_ids(in_flight).decode()),
    ).fetchone()
    return row[0] if row else None


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
