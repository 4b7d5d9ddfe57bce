"""Multi-row INSERTs: one SQLite step per chunk of rows instead of one per row.

Python's sqlite3 releases the GIL around every ``sqlite3_step``, and ``executemany`` steps
once per row, so the writer thread must win the GIL back once per row. While the event loop
is busy each win can take up to the interpreter's switch interval, and a group commit of a
thousand events then spends most of its time waiting. One INSERT with many ``VALUES``
tuples is one step: SQLite does the whole chunk's b-tree work without the GIL, beside the
event loop, and the writer waits for the GIL once per chunk.

Chunks are powers of two, so each table needs at most a dozen distinct statements and
sqlite3's statement cache keeps them all prepared, instead of holding a one-off statement
per group size.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import lru_cache
from itertools import chain

MAX_CHUNK_ROWS = 4096  # the largest statement: bounds a prepared statement's memory


@lru_cache(maxsize=256)
def _statement(head: str, width: int, count: int) -> str:
    row = "(" + ",".join("?" * width) + ")"
    return f"{head} VALUES " + ",".join([row] * count)


def chunk_sizes(rows: int, largest: int) -> list[int]:
    """``rows`` split into powers of two no larger than ``largest`` (itself one)."""
    sizes = []
    while rows:
        size = min(largest, 1 << (rows.bit_length() - 1))
        sizes.append(size)
        rows -= size
    return sizes


def insert_rows(connection: sqlite3.Connection, head: str, rows: Sequence[tuple]) -> None:
    """INSERT every row of ``rows``. ``head`` is the statement up to ``VALUES``, e.g.
    ``INSERT OR REPLACE INTO t (a, b)``; each row holds one value per named column."""
    if not rows:
        return
    width = len(rows[0])
    fitting = connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width
    largest = 1 << (max(1, min(MAX_CHUNK_ROWS, fitting)).bit_length() - 1)
    start = 0
    for size in chunk_sizes(len(rows), largest):
        values = list(chain.from_iterable(rows[start : start + size]))
        connection.execute(_statement(head, width, size), values)
        start += size
