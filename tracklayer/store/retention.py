"""Retention: forget dedup keys past the window and events, dead letters and stats past
``storage.retention``, in small chunks so the writer is never held for long."""

from __future__ import annotations

import sqlite3

CHUNK = 5000


def sweep_once(
    connection: sqlite3.Connection,
    now: float,
    window: float,
    retention: float,
    profile_retention: float = 400 * 86400,
) -> int:
    """One chunk of each cleanup; returns rows deleted (0 means nothing left to do)."""
    deleted = 0
    cursor = connection.execute(
        "DELETE FROM dedup WHERE key IN (SELECT key FROM dedup WHERE seen_at < ? LIMIT ?)",
        (now - window, CHUNK),
    )
    deleted += cursor.rowcount
    cutoff = now - retention
    cursor = connection.execute(
        "DELETE FROM dead_letters WHERE id IN"
        " (SELECT id FROM dead_letters WHERE failed_at < ? LIMIT ?)",
        (cutoff, CHUNK),
    )
    deleted += cursor.rowcount
    cursor = connection.execute(
        "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.received_at < ?"
        " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event = e.id)"
        " AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.event = e.id) LIMIT ?)",
        (cutoff, CHUNK),
    )
    deleted += cursor.rowcount
    cursor = connection.execute("DELETE FROM stats WHERE minute < ?", (int(cutoff // 60),))
    deleted += cursor.rowcount
    return deleted
