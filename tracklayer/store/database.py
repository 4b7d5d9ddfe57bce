"""Opening the SQLite file in WAL mode with the durability the config asks for."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import aiosqlite

from tracklayer.store.schema import migrate

FILE_NAME = "tracklayer.db"


T = TypeVar("T")


async def in_thread(connection: aiosqlite.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``work`` with the raw sqlite3 connection on the aiosqlite connection's own thread.

    A whole transaction then costs one hop from the event loop instead of one per statement
    (each hop waits for the loop to get round to it, which under load is most of a
    commit's time). Uses aiosqlite's ``_execute``, the primitive its public methods are
    built on (aiosqlite 0.17 to 0.22; the version range is pinned in pyproject.toml and the
    store tests exercise it).
    """
    return await connection._execute(lambda: work(connection._conn))


# The writer's page cache (KiB). The dedup and identity tables are keyed by random
# digests, so inserts touch pages all over their b-trees: past SQLite's default 2 MiB
# every insert would read pages back through the OS. Readers keep the default: their
# scans (gauges, reports) would only fill a big cache with pages read once.
WRITER_CACHE_KIB = 16 * 1024

# Checkpoints (copying the WAL back into the database file, with its fsyncs) run on their
# own connection and thread (``checkpoint``, every second from the app), so a commit only
# appends to the WAL: SQLite's default runs them inside the commit that crosses 1,000
# pages, which under batch load was about every other group commit and a fifth of its
# time. The writer still checkpoints itself past this size, should that thread stall.
WRITER_AUTOCHECKPOINT_PAGES = 16_384  # 64 MiB of 4 KiB pages


class StoreUnavailable(Exception):
    """The store could not commit (disk full, I/O error): nothing was acknowledged."""


async def connect(directory: str, durability: str = "process") -> aiosqlite.Connection:
    """A connection to ``directory/tracklayer.db``: WAL, and ``synchronous`` NORMAL
    (survives a killed process) or FULL (``power``: survives power loss)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    connection = await aiosqlite.connect(os.path.join(directory, FILE_NAME), isolation_level=None)
    await connection.execute("PRAGMA journal_mode = WAL")
    synchronous = "FULL" if durability == "power" else "NORMAL"
    await connection.execute(f"PRAGMA synchronous = {synchronous}")
    await connection.execute("PRAGMA busy_timeout = 10000")
    await connection.execute("PRAGMA foreign_keys = OFF")
    return connection


async def open_database(directory: str, durability: str = "process") -> aiosqlite.Connection:
    """Connect and migrate; the connection returned is the single writer's."""
    connection = await connect(directory, durability)
    await connection.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
    await connection.execute(f"PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_PAGES}")
    await migrate(connection)
    return connection


def checkpoint(connection: sqlite3.Connection) -> None:
    """Copy what the WAL holds back into the database file, without waiting for readers or
    the writer (``PASSIVE``)."""
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
