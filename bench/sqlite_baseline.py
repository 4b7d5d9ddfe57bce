"""The batch baseline: raw SQLite WAL inserts of the rows TrackLayer writes per event.

Python's sqlite3, WAL, ``synchronous=NORMAL`` (TrackLayer's ``durability: process``), the
TrackLayer schema (imported from ``tracklayer.store.schema`` so indexes match), and per
event: one ``events`` row with a BODY-byte blob, one ``outbox`` row per destination and
DEDUP ``dedup`` key rows (16-byte random digests, as TrackLayer's xxh3-128 keys are),
and the identity graph's rows: PROFILES ``profiles`` rows (PROFILE_BYTES-byte blobs) and
KEYS ``identity_keys`` rows per event (66-character keys, as long as TrackLayer's
``e:<sha256 hex>``, but ascending, so each lands at the end of the b-tree: the cheapest
insert, which makes this the fastest baseline for those rows), committed ``--batch``
events per transaction. No parsing, no Python objects per event beyond the row tuples:
the ceiling an ingest path built on SQLite can approach.

    python bench/sqlite_baseline.py --dir DIR [--seconds 8] [--max-events 2000000]
        [--batch 100] [--body 600] [--dedup 1] [--outbox 1]
        [--profiles 0] [--profile-bytes 800] [--keys 0]

Prints one JSON line: events, seconds, events_per_s, transactions.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import time

try:
    from tracklayer.store.schema import MIGRATIONS
except ImportError:  # standalone: the same tables and indexes
    MIGRATIONS = [
        """
    CREATE TABLE events (id INTEGER PRIMARY KEY, received_at REAL NOT NULL, source TEXT NOT NULL,
        name TEXT NOT NULL, event_id TEXT NOT NULL, body BLOB NOT NULL);
    CREATE INDEX events_received ON events (received_at);
    CREATE TABLE outbox (id INTEGER PRIMARY KEY, destination TEXT NOT NULL, event INTEGER NOT NULL,
        due_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        claimed INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '');
    CREATE INDEX outbox_due ON outbox (destination, claimed, due_at);
    CREATE INDEX outbox_event ON outbox (event);
    CREATE TABLE dedup (key BLOB PRIMARY KEY, seen_at REAL NOT NULL) WITHOUT ROWID;
    CREATE INDEX dedup_seen ON dedup (seen_at);
    CREATE TABLE profiles (id INTEGER PRIMARY KEY, updated_at REAL NOT NULL, data BLOB NOT NULL);
    CREATE TABLE identity_keys (key TEXT PRIMARY KEY, profile INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX identity_keys_profile ON identity_keys (profile);
    CREATE INDEX profiles_updated ON profiles (updated_at);
    """
    ]


def run(
    directory: str,
    seconds: float,
    max_events: int,
    batch: int,
    body_bytes: int,
    dedup_rows: int,
    outbox_rows: int,
    profiles: float = 0.0,
    profile_bytes: int = 800,
    keys: float = 0.0,
) -> dict:
    os.makedirs(directory, exist_ok=True)
    connection = sqlite3.connect(os.path.join(directory, "baseline.db"), isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    for migration in MIGRATIONS:
        connection.executescript(f"BEGIN; {migration} COMMIT;")
    body = os.urandom(body_bytes)
    destinations = [f"hooks{i}" if i else "hooks" for i in range(outbox_rows)]
    profile_data = os.urandom(profile_bytes)
    profiles_per_batch, keys_per_batch = round(batch * profiles), round(batch * keys)
    next_profile = next_key = 1
    next_id = 1
    transactions = 0
    started = time.perf_counter()
    deadline = started + seconds
    while next_id <= max_events and time.perf_counter() < deadline:
        now = time.time()
        ids = range(next_id, next_id + batch)
        next_id += batch
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            "INSERT INTO events (id, received_at, source, name, event_id, body)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(i, now, "segment", "purchase", f"purchase:o-{i}", body) for i in ids],
        )
        if outbox_rows:
            connection.executemany(
                "INSERT INTO outbox (destination, event, due_at) VALUES (?, ?, ?)",
                [(d, i, now) for i in ids for d in destinations],
            )
        if dedup_rows:
            connection.executemany(
                "INSERT OR REPLACE INTO dedup (key, seen_at) VALUES (?, ?)",
                [(os.urandom(16), now) for _ in range(batch * dedup_rows)],
            )
        if profiles_per_batch:
            ids = range(next_profile, next_profile + profiles_per_batch)
            next_profile += profiles_per_batch
            connection.executemany(
                "INSERT OR REPLACE INTO profiles (id, updated_at, data) VALUES (?, ?, ?)",
                [(i, now, profile_data) for i in ids],
            )
            connection.executemany(
                "INSERT OR REPLACE INTO identity_keys (key, profile) VALUES (?, ?)",
                [(f"k:{next_key + k:064d}", ids[k % len(ids)]) for k in range(keys_per_batch)],
            )
            next_key += keys_per_batch
        connection.execute("COMMIT")
        transactions += 1
    elapsed = time.perf_counter() - started
    connection.close()
    events = next_id - 1
    return {
        "events": events,
        "seconds": round(elapsed, 3),
        "events_per_s": events / elapsed if elapsed else 0.0,
        "transactions": transactions,
        "batch": batch,
        "body_bytes": body_bytes,
        "dedup_rows_per_event": dedup_rows,
        "outbox_rows_per_event": outbox_rows,
        "profile_rows_per_event": profiles_per_batch / batch,
        "profile_bytes": profile_bytes,
        "key_rows_per_event": keys_per_batch / batch,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--max-events", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--body", type=int, default=600)
    parser.add_argument("--dedup", type=int, default=1)
    parser.add_argument("--outbox", type=int, default=1)
    parser.add_argument("--profiles", type=float, default=0.0, help="profile rows per event")
    parser.add_argument("--profile-bytes", type=int, default=800)
    parser.add_argument("--keys", type=float, default=0.0, help="identity key rows per event")
    a = parser.parse_args()
    result = run(
        a.dir,
        a.seconds,
        a.max_events,
        a.batch,
        a.body,
        a.dedup,
        a.outbox,
        a.profiles,
        a.profile_bytes,
        a.keys,
    )
    print(json.dumps(result))
