"""Multi-row inserts and claims that skip held rows inside SQLite (store/bulk.py,
store/outbox.py): the statements the writer and the workers run under load."""

from __future__ import annotations

import sqlite3

import msgspec
import pytest

from tests.harness import base_config, start_app, track, wait_until, webhook
from tracklayer.model import Event, User
from tracklayer.store import outbox
from tracklayer.store.bulk import MAX_CHUNK_ROWS, chunk_sizes, insert_rows
from tracklayer.store.schema import MIGRATIONS


@pytest.fixture
def connection(tmp_path):
    connection = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    for migration in MIGRATIONS:
        connection.executescript(migration)
    yield connection
    connection.close()


@pytest.mark.parametrize("rows", [0, 1, 2, 3, 17, 1000, 4096, 4097, 10_000])
def test_chunk_sizes_are_powers_of_two_that_add_up(rows):
    sizes = chunk_sizes(rows, MAX_CHUNK_ROWS)
    assert sum(sizes) == rows
    assert all(size & (size - 1) == 0 and size <= MAX_CHUNK_ROWS for size in sizes)
    assert sizes == sorted(sizes, reverse=True)


def test_every_row_is_inserted_within_sqlites_parameter_limit(connection):
    # 3 columns and at most 20 parameters a statement: chunks of at most 4 rows (a power
    # of two fitting 6): a statement over the limit would raise "too many SQL variables"
    connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 20)
    rows = [("hooks", event, float(event)) for event in range(1, 1001)]
    connection.execute("BEGIN")
    insert_rows(connection, "INSERT INTO outbox (destination, event, due_at)", rows)
    connection.execute("COMMIT")
    stored = connection.execute("SELECT destination, event, due_at FROM outbox ORDER BY id")
    assert stored.fetchall() == rows


def test_insert_or_replace_keeps_its_meaning_across_chunks(connection):
    head = "INSERT OR REPLACE INTO dedup (key, seen_at)"
    insert_rows(connection, head, [(bytes([i]) * 16, 1.0) for i in range(100)])
    insert_rows(connection, head, [(bytes([i]) * 16, 2.0) for i in range(50, 150)])
    counts = connection.execute("SELECT seen_at, COUNT(*) FROM dedup GROUP BY seen_at")
    assert dict(counts.fetchall()) == {1.0: 50, 2.0: 100}


def test_nothing_to_insert_runs_no_statement(connection):
    insert_rows(connection, "INSERT INTO no_such_table (a)", [])  # would raise if run


def _queue(connection, count: int) -> list[int]:
    """``count`` stored events, each with an outbox row due at its own second."""
    body = msgspec.msgpack.encode(
        Event(
            event_id="e",
            name="purchase",
            source_name="Order Completed",
            source="segment",
            message_id="m",
            type="track",
            timestamp=1.0,
            received_at=1.0,
            user=User(user_id="u"),
        )
    )
    connection.executemany(
        "INSERT INTO events (id, received_at, source, name, event_id, body) VALUES (?,?,?,?,?,?)",
        [(i, 1.0, "segment", "purchase", f"e{i}", body) for i in range(1, count + 1)],
    )
    connection.executemany(
        "INSERT INTO outbox (destination, event, due_at) VALUES (?, ?, ?)",
        [("hooks", i, float(i)) for i in range(1, count + 1)],
    )
    return [row[0] for row in connection.execute("SELECT id FROM outbox ORDER BY due_at")]


def test_a_claim_skips_thousands_of_held_rows_and_takes_the_oldest_rest(connection):
    ids = _queue(connection, 6000)
    held = set(ids[:5000]) | {ids[5001]}  # more than any per-statement parameter limit
    claimed = outbox.claim(connection, "hooks", 3, now=1e9, in_flight=held)
    assert [row.id for row in claimed] == [ids[5000], ids[5002], ids[5003]]
    assert claimed[0].event.name == "purchase"
    assert outbox.next_due(connection, "hooks", held) == 5001.0
    assert outbox.next_due(connection, "hooks", set(ids)) is None
    assert outbox.claim(connection, "hooks", 10, now=10.5, in_flight=held) == []
    assert [r.id for r in outbox.claim(connection, "hooks", 2, now=1e9)] == ids[:2]


async def test_the_wal_is_checkpointed_off_the_writer(tmp_path, hook):
    """Commits only append to the WAL; the app's checkpointer copies it into the database
    file within a few seconds. ``immutable=1`` reads the file alone, ignoring the WAL."""
    app = await start_app(base_config(tmp_path, destinations=[webhook(hook.url)]))
    try:
        for i in range(20):
            status, _, _ = await app.post("/v1/track", track(messageId=f"wal-{i}"))
            assert status == 200
        path = tmp_path / "data" / "tracklayer.db"

        def in_file_alone() -> int:
            file = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
            try:
                return file.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            except sqlite3.OperationalError:  # not even the schema copied yet
                return 0
            finally:
                file.close()

        await wait_until(lambda: in_file_alone() == 20, timeout=5)
    finally:
        await app.stop()
