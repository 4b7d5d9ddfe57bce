"""The identity graph's storage: profiles and the ids that point at them, behind a small
interface (``lookup``, ``profile_for``, the journal hook) so a shared backend can replace
SQLite when several hosts must see one graph.

The hot path reads through an in-memory cache: a request's cache misses are loaded in one
query, and changed profiles are written by a journal hook inside the same group
transaction as the events that changed them. A bloom filter of every key ever stored
answers "never seen" for a new visitor's ids without asking SQLite at all.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import aiosqlite
import msgspec

from tracklayer.model import Profile
from tracklayer.pipeline.enrich import merge
from tracklayer.store.bloom import GrowingBloom, digest
from tracklayer.store.bulk import insert_rows
from tracklayer.store.database import in_thread

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Profile).decode
_CHUNK = 900
_ABSENT = -1
# Profiles kept in memory, the most recently used. One holds its hashes and click ids, about
# 2 KB: 50,000 is ~100 MB at most, and covers the minutes between a visitor's browser
# events and the server's purchase even at BFCM rates; a miss costs one indexed query.
CACHED_PROFILES = 50_000
# Sizing of the stored-keys filter: a false positive costs only one indexed query.
_KNOWN_KEYS_PER_FILTER = 1_000_000
_KNOWN_KEYS_FALSE_POSITIVES = 0.01


class IdentityGraph:
    def __init__(self, reader: aiosqlite.Connection, capacity: int = CACHED_PROFILES) -> None:
        self.reader = reader
        self.capacity = capacity
        self._keys: OrderedDict[str, int] = OrderedDict()  # key → profile id (_ABSENT: none)
        self._profiles: OrderedDict[int, Profile] = OrderedDict()
        self._dirty: dict[int, Profile] = {}
        self._removed: set[int] = set()
        self._writing: tuple[dict[int, Profile], set[int]] = ({}, set())
        self._next_id = 1
        self._stored = GrowingBloom(_KNOWN_KEYS_PER_FILTER, _KNOWN_KEYS_FALSE_POSITIVES)
        self._unstored: dict[str, int] = {}  # key → digest: known absent, not yet written

    async def start(self) -> None:
        def load(connection: sqlite3.Connection) -> int:
            for (key,) in connection.execute("SELECT key FROM identity_keys"):
                self._stored.add(digest(key))
            row = connection.execute("SELECT COALESCE(MAX(id), 0) FROM profiles").fetchone()
            return int(row[0])

        self._next_id = await in_thread(self.reader, load) + 1

    async def lookup(self, keys: Iterable[str]) -> None:
        """Make sure every key is in the cache (one query for all misses that SQLite may
        hold; keys it never stored are known absent without asking)."""
        missing = []
        for key in set(keys):
            if key in self._keys:
                continue
            key_digest = digest(key)
            if self._stored.maybe_contains(key_digest):
                missing.append(key)
            else:
                self._keys[key] = _ABSENT
                self._unstored[key] = key_digest
        for start in range(0, len(missing), _CHUNK):
            chunk = missing[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            query = (
                "SELECT k.key, p.id, p.data FROM identity_keys k"
                f" JOIN profiles p ON p.id = k.profile WHERE k.key IN ({marks})"
            )
            rows = await in_thread(
                self.reader, lambda c, q=query, chunk=chunk: c.execute(q, chunk).fetchall()
            )
            found = set()
            for key, profile_id, data in rows:
                found.add(key)
                if key in self._keys:
                    continue  # learned meanwhile: the cache is newer than SQLite
                if profile_id not in self._profiles and profile_id not in self._removed:
                    self._profiles[profile_id] = _decode(data)
                self._keys[key] = profile_id
            for key in chunk:
                if key not in found and key not in self._keys:
                    self._keys[key] = _ABSENT
        self._evict()

    def profile_for(self, keys: Sequence[str]) -> Profile:
        """The one profile for these keys (cached by ``lookup``): found, merged when the keys
        pointed at several, or new. The result is marked for writing."""
        found: list[Profile] = []
        for key in keys:
            profile_id = self._keys.get(key, _ABSENT)
            profile = self._profiles.get(profile_id) if profile_id != _ABSENT else None
            if profile is not None and all(p.id != profile.id for p in found):
                found.append(profile)
        if not found:
            profile = Profile(id=self._next_id)
            self._next_id += 1
            self._profiles[profile.id] = profile
        else:
            profile = min(found, key=lambda p: p.id)
            for other in found:
                if other is not profile:
                    merge(profile, other)
                    self._removed.add(other.id)
                    self._profiles.pop(other.id, None)
                    self._dirty.pop(other.id, None)
        for key in keys:
            self._keys[key] = profile.id
        for key in profile.keys:
            self._keys[key] = profile.id
        self._dirty[profile.id] = profile
        self._profiles.move_to_end(profile.id)
        return profile

    def _evict(self) -> None:
        while len(self._profiles) > self.capacity:
            profile_id = next(iter(self._profiles))
            if profile_id in self._dirty:
                self._profiles.move_to_end(profile_id)
                break  # only clean profiles leave; the next flush makes room
            del self._profiles[profile_id]
        while len(self._keys) > self.capacity * 4:
            key, profile_id = self._keys.popitem(last=False)
            if profile_id in self._dirty:
                self._keys[key] = profile_id
                break

    # journal hook --------------------------------------------------------------------------

    def prepare(self) -> Callable[[sqlite3.Connection], None] | None:
        """On the event loop: take every profile changed since the last group and encode it;
        the returned write runs inside the group transaction on the connection's thread."""
        if not self._dirty and not self._removed:
            return None
        dirty, removed = self._dirty, self._removed
        self._writing = (dirty, removed)
        self._dirty, self._removed = {}, set()
        profiles = [(p.id, p.updated_at, _encode(p)) for p in dirty.values()]
        keys = [(key, p.id) for p in dirty.values() for key in p.keys]
        # Into the filter before the commit: a key whose write rolls back costs one query.
        unstored = self._unstored
        for key, _ in keys:
            key_digest = unstored.pop(key, None)
            if key_digest is not None:
                self._stored.add(key_digest)
        if len(unstored) > self.capacity:  # keys looked up but never written anywhere
            for key_digest in unstored.values():
                self._stored.add(key_digest)
            unstored.clear()
        gone = list(removed)

        def write(connection: sqlite3.Connection) -> None:
            if profiles:
                insert_rows(
                    connection, "INSERT OR REPLACE INTO profiles (id, updated_at, data)", profiles
                )
                insert_rows(connection, "INSERT OR REPLACE INTO identity_keys (key, profile)", keys)
            if gone:
                marks = ",".join("?" * len(gone))
                connection.execute(f"DELETE FROM profiles WHERE id IN ({marks})", gone)

        return write

    def rolled_back(self) -> None:
        """The transaction failed: what it would have written is dirty again."""
        dirty, removed = self._writing
        for profile_id, profile in dirty.items():
            self._dirty.setdefault(profile_id, profile)
        self._removed |= removed

    def committed(self) -> None:
        self._writing = ({}, set())
