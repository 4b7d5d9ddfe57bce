"""The group-commit journal: the only writer to SQLite.

Requests hand their events to ``append()`` and wait; one writer task drains everything that
queued up while the previous transaction was committing, writes it all in one transaction,
commits, and only then resolves each waiter. A request is therefore answered 200 only after
its events are durable, and durability costs one commit per group, not per request.

The whole transaction (dedup confirmation, inserts, delivery bookkeeping, identity
profiles, COMMIT) runs as one function on the connection's thread: one hop from the event
loop per group instead of one per statement, so a busy loop never stretches a commit.

Delivery's bookkeeping (completions, retries, dead letters) goes through the same writer
as small operations, so there is never a second writer contending for the lock. Claiming
rows is a read: which rows a worker holds lives in its memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import aiosqlite
import msgspec

from tracklayer.model import Event
from tracklayer.store.bulk import insert_rows
from tracklayer.store.database import StoreUnavailable, in_thread
from tracklayer.store.dedup import DedupRegistry, business_key, message_key, rows

log = logging.getLogger("tracklayer.store.journal")

# A write run inside a group transaction, on the connection's thread.
Operation = Callable[[sqlite3.Connection], Any]

_encode_event = msgspec.msgpack.Encoder().encode


def stored_body(event: Event) -> bytes:
    """The event as stored (MessagePack). JSON numbers are unbounded and MessagePack holds
    64-bit integers: a bigger one in the properties or integrations is stored as a float,
    as JavaScript (and so Segment) reads such a number, or as its digits when no float
    holds it, rather than failing the whole group."""
    try:
        return _encode_event(event)
    except OverflowError:
        event.properties = _fit_integers(event.properties)
        event.integrations = _fit_integers(event.integrations)
        return _encode_event(event)


def _fit_integers(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _fit_integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_fit_integers(item) for item in value]
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        try:
            return float(value)
        except OverflowError:
            return str(value)
    return value


class Pending(msgspec.Struct):
    """An event ready to store, with the destinations routing chose for it."""

    event: Event
    destinations: list[str]
    message_dedup: bool = True


class Admission(msgspec.Struct):
    """What the journal decided for one event."""

    status: Literal["accepted", "duplicate"]
    queued: list[str] = []  # destinations that got an outbox row
    duplicate_for: list[str] = []  # destinations that already had this business action


class Hook(Protocol):
    """Writes that ride along in every group transaction (the identity graph's profiles).
    ``prepare`` runs on the event loop and returns the write to run on the thread."""

    def prepare(self) -> Operation | None: ...

    def rolled_back(self) -> None: ...

    def committed(self) -> None: ...


class _Batch:
    __slots__ = ("future", "pending")

    def __init__(self, pending: Sequence[Pending], future: asyncio.Future) -> None:
        self.pending = pending
        self.future = future


class _Op:
    __slots__ = ("future", "operation")

    def __init__(self, operation: Operation, future: asyncio.Future) -> None:
        self.operation = operation
        self.future = future


class _Keyed:
    """One pending event made ready on the event loop: its dedup keys and stored body."""

    __slots__ = ("body", "business", "message")

    def __init__(self, message: int | None, business: list[tuple[str, int]], body: bytes) -> None:
        self.message = message
        self.business = business
        self.body = body


class _Group:
    """One transaction's work and, once run, its results (filled on the thread)."""

    def __init__(self, batches: list[_Batch], ops: list[_Op], hooks: list[Operation]) -> None:
        self.batches = batches
        self.ops = ops
        self.hooks = hooks
        self.keyed: list[_Keyed] = []  # per pending event, in order (on the loop)
        self.maybe: list[int] = []  # keys the dedup filter cannot rule out (on the loop)
        self.admissions: list[list[Admission]] = []
        self.op_results: list[tuple[Any, BaseException | None]] = []
        self.queued: Counter[str] = Counter()
        self.fresh: list[int] = []  # keys first seen in this group


class Journal:
    """Single writer with group commit. ``on_commit`` learns how many rows each destination
    just got, so delivery wakes without polling."""

    def __init__(
        self,
        connection: aiosqlite.Connection,
        dedup: DedupRegistry,
        on_commit: Callable[[Counter[str]], None] = lambda queued: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.connection = connection
        self.dedup = dedup
        self.on_commit = on_commit
        self.clock = clock
        self.healthy = True
        self.last_error = ""
        self.commits = 0
        self.hooks: list[Hook] = []
        self._queue: list[_Batch | _Op] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task | None = None
        self._next_event_id = 0

    async def start(self) -> None:
        async with self.connection.execute("SELECT COALESCE(MAX(id), 0) FROM events") as cursor:
            row = await cursor.fetchone()
        self._next_event_id = int(row[0]) + 1 if row else 1
        self._task = asyncio.create_task(self._run(), name="journal-writer")

    async def stop(self) -> None:
        """Commit what is queued, then stop accepting."""
        self._closing = True
        self._wake.set()
        if self._task:
            await self._task

    async def append(self, pending: Sequence[Pending]) -> list[Admission]:
        """Store ``pending`` durably; raises ``StoreUnavailable`` when it could not commit."""
        return await self._submit(_Batch(pending, self._future()))

    async def run(self, operation: Operation) -> Any:
        """Run ``operation(connection)`` inside the next group transaction (on the
        connection's thread: it must not touch the event loop)."""
        return await self._submit(_Op(operation, self._future()))

    async def probe(self) -> bool:
        """Try a request-sized write: True when the store commits again (``healthy``
        follows). The row is written and removed in one transaction, so it needs real free
        space (new pages, and WAL frames at commit) yet leaves nothing behind."""

        def write_and_remove(connection: sqlite3.Connection) -> None:
            connection.execute("INSERT INTO probe (id, pad) VALUES (1, zeroblob(65536))")
            connection.execute("DELETE FROM probe")

        try:
            await self.run(write_and_remove)
        except StoreUnavailable:
            return False
        return True

    def _future(self) -> asyncio.Future:
        return asyncio.get_running_loop().create_future()

    async def _submit(self, item: _Batch | _Op) -> Any:
        if self._closing:
            raise StoreUnavailable("the store is shutting down")
        self._queue.append(item)
        self._wake.set()
        return await item.future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            items, self._queue = self._queue, []
            if items:
                await self._commit(items)
            elif self._closing:
                return

    async def _commit(self, items: list[_Batch | _Op]) -> None:
        hook_writes = [write for hook in self.hooks if (write := hook.prepare()) is not None]
        group = _Group(
            [item for item in items if isinstance(item, _Batch)],
            [item for item in items if isinstance(item, _Op)],
            hook_writes,
        )
        now = self.clock()
        try:
            if group.batches:
                self._screen(group, now)
            await in_thread(self.connection, lambda c: self._transaction(c, group, now))
        except Exception as error:
            if not isinstance(error, (sqlite3.Error, ValueError)):
                # a bug, not the store: this group fails (503, nothing acknowledged) and
                # the writer goes on, instead of dying and leaving every request waiting
                log.exception("group commit failed")
            for hook in self.hooks:
                hook.rolled_back()
            self._fail(items, error)
            return
        self.dedup.remember(group.fresh, now)
        for hook in self.hooks:
            hook.committed()
        self.commits += 1
        if not self.healthy:
            log.info("store writable again")
        self.healthy, self.last_error = True, ""
        for batch, admission in zip(group.batches, group.admissions, strict=True):
            if not batch.future.done():
                batch.future.set_result(admission)
        for op, (result, error) in zip(group.ops, group.op_results, strict=True):
            if op.future.done():
                continue
            if error is not None:
                op.future.set_exception(error)
            else:
                op.future.set_result(result)
        if group.queued:
            self.on_commit(group.queued)

    def _screen(self, group: _Group, now: float) -> None:
        """On the event loop: each event's dedup keys and stored body, and which keys the
        filter cannot rule out. Everything Python can do before the transaction is done
        here, so the writer thread holds the GIL as little as possible: while it works in
        SQLite without it, the event loop keeps serving."""
        wanted: list[int] = []
        keyed = group.keyed
        for batch in group.batches:
            for pending in batch.pending:
                event = pending.event
                message = (
                    message_key(event.source, event.message_id) if pending.message_dedup else None
                )
                business_action = event.business_key()
                business = [(d, business_key(d, business_action)) for d in pending.destinations]
                keyed.append(_Keyed(message, business, stored_body(event)))
                if message is not None:
                    wanted.append(message)
                wanted.extend(b for _, b in business)
        group.maybe = self.dedup.screen(wanted, now)

    # on the connection's thread -------------------------------------------------------------

    def _transaction(self, connection: sqlite3.Connection, group: _Group, now: float) -> None:
        """BEGIN … COMMIT for one group; any SQLite error rolls the whole group back."""
        connection.execute("BEGIN IMMEDIATE")
        try:
            if group.batches:
                self._write_events(connection, group, now)
            for op in group.ops:
                group.op_results.append(self._run_op(connection, op))
            for write in group.hooks:
                write(connection)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                # the connection itself may be failing; the caller reports the first error
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            raise

    def _run_op(self, connection: sqlite3.Connection, op: _Op) -> tuple[Any, BaseException | None]:
        """One delivery operation in a savepoint: a failing operation cannot take the
        events of the same group down with it (unless SQLite itself is failing)."""
        connection.execute("SAVEPOINT op")
        try:
            result = op.operation(connection)
        except sqlite3.Error:
            raise
        except Exception as error:  # a bug in one operation: undo it, report it to its caller
            connection.execute("ROLLBACK TO op")
            connection.execute("RELEASE op")
            return None, error
        connection.execute("RELEASE op")
        return result, None

    def _write_events(self, connection: sqlite3.Connection, group: _Group, now: float) -> None:
        """Confirm the screened keys, then insert every new event of the group."""
        seen = self.dedup.confirm(connection, group.maybe, now)
        event_rows: list[tuple] = []
        outbox_rows: list[tuple] = []
        fresh = group.fresh
        queued = group.queued
        keyed = iter(group.keyed)
        for batch in group.batches:
            results: list[Admission] = []
            for pending in batch.pending:
                ready = next(keyed)
                message = ready.message
                if message is not None:
                    if message in seen:
                        results.append(Admission("duplicate"))
                        continue
                    seen.add(message)
                    fresh.append(message)
                event_id = self._next_event_id
                self._next_event_id += 1
                event = pending.event
                event_rows.append(
                    (
                        event_id,
                        event.received_at,
                        event.source,
                        event.name,
                        event.event_id,
                        ready.body,
                    )
                )
                admission = Admission("accepted")
                for destination, key in ready.business:
                    if key in seen:
                        admission.duplicate_for.append(destination)
                        continue
                    seen.add(key)
                    fresh.append(key)
                    admission.queued.append(destination)
                    outbox_rows.append((destination, event_id, now))
                    queued[destination] += 1
                results.append(admission)
            group.admissions.append(results)

        insert_rows(
            connection,
            "INSERT INTO events (id, received_at, source, name, event_id, body)",
            event_rows,
        )
        insert_rows(connection, "INSERT INTO outbox (destination, event, due_at)", outbox_rows)
        insert_rows(connection, "INSERT OR REPLACE INTO dedup (key, seen_at)", rows(fresh, now))

    def _fail(self, items: list[_Batch | _Op], error: BaseException) -> None:
        if self.healthy:
            log.error("store cannot commit", extra={"fields": {"error": str(error)}})
        self.healthy, self.last_error = False, str(error)
        failure = StoreUnavailable(str(error))
        for item in items:
            if not item.future.done():
                item.future.set_exception(failure)
