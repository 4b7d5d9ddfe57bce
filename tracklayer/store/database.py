"""Opening the SQLite file in WAL mode with the durability the config asks for."""

from __future__ import annotations

import os
from pathlib import Path

import aiosqlite

from tracklayer.store.schema import migrate

FILE_NAME = "tracklayer.db"


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
    await migrate(connection)
    return connection
