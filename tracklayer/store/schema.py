"""The SQLite schema, versioned with ``PRAGMA user_version`` and upgraded by migrations."""

from __future__ import annotations

import aiosqlite

# Each entry upgrades the schema from version ``index`` to ``index + 1``. Never edit a
# released entry; append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        received_at REAL NOT NULL,
        source TEXT NOT NULL,
        name TEXT NOT NULL,
        event_id TEXT NOT NULL,
        body BLOB NOT NULL
    );
    CREATE INDEX events_received ON events (received_at);

    -- one row per (event, destination) still to deliver
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        destination TEXT NOT NULL,
        event INTEGER NOT NULL,
        due_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        claimed INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX outbox_due ON outbox (destination, claimed, due_at);
    CREATE INDEX outbox_event ON outbox (event);

    -- dedup registry: xxh3-128 digest of the scoped key, and when it was first seen
    CREATE TABLE dedup (
        key BLOB PRIMARY KEY,
        seen_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX dedup_seen ON dedup (seen_at);

    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY,
        destination TEXT NOT NULL,
        event INTEGER NOT NULL,
        failed_at REAL NOT NULL,
        attempts INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        code TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX dead_letters_destination ON dead_letters (destination, failed_at);
    CREATE INDEX dead_letters_event ON dead_letters (event);

    -- per-minute counts per destination, event and outcome, for reports
    CREATE TABLE stats (
        minute INTEGER NOT NULL,
        destination TEXT NOT NULL,
        name TEXT NOT NULL,
        outcome TEXT NOT NULL,
        code TEXT NOT NULL,
        count INTEGER NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (minute, destination, name, outcome, code)
    ) WITHOUT ROWID;
    """,
    # 2: the identity graph. Every id a person was seen with (user id, anonymous id, email
    # and phone hashes) points at one profile; merging two profiles re-points the ids.
    """
    CREATE TABLE profiles (
        id INTEGER PRIMARY KEY,
        updated_at REAL NOT NULL,
        data BLOB NOT NULL
    );
    CREATE TABLE identity_keys (
        key TEXT PRIMARY KEY,
        profile INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX identity_keys_profile ON identity_keys (profile);
    CREATE INDEX profiles_updated ON profiles (updated_at);

    -- scratch space to prove the store takes writes again after a failure
    CREATE TABLE probe (id INTEGER PRIMARY KEY, pad BLOB NOT NULL);
    """,
    # 3: stats rows carry a sum besides the count (order value by currency, latency,
    # match-quality score), so reports and anomaly detection read one per-minute table.
    """
    ALTER TABLE stats ADD COLUMN total REAL NOT NULL DEFAULT 0;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


async def migrate(connection: aiosqlite.Connection) -> int:
    """Bring the schema up to ``SCHEMA_VERSION``; returns the version found before."""
    async with connection.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    found = int(row[0]) if row else 0
    if found > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {found} is newer than this TrackLayer ({SCHEMA_VERSION})"
        )
    for version in range(found, SCHEMA_VERSION):
        await connection.executescript(
            f"BEGIN; {MIGRATIONS[version]} PRAGMA user_version = {version + 1}; COMMIT;"
        )
    return found
