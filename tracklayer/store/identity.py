"""The identity graph's storage: profiles and the ids that point at them, behind a small
interface (``lookup``, ``profile_for``, the journal hook) so a shared backend can replace
SQLite when several hosts must see one graph.

The hot path reads through an in-memory cache: a request's cache misses are loaded in one
query, and changed profiles are written by a journal hook inside the same group
transaction as the events that changed them.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import aiosqlite
import msgspec

from tracklayer.model import Profile
from tracklayer.pipeline.enrich import merge

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Profile).decode
_CHUNK = 900
_ABSENT = -1


class IdentityGraph:
    def __init__(self, reader: aiosqlite.Connection, capacity: int = 200_000) -> None:
        self.reader = reader
        self.capacity = capacity
        self._keys: OrderedDict[str, int] = OrderedDict()  # key → profile id (_ABSENT: none)
        self._profiles: OrderedDict[int, Profile] = OrderedDict()
        self._dirty: dict[int, Profile] = {}
        self._removed: set[int] = set()
        self._writing: tuple[dict[int, Profile], set[int]] = ({}, set())
        self._next_id = 1

    async def start(self) -> None:
        async with self.reader.execute("SELECT COALESCE(MAX(id), 0) FROM profiles") as cursor:
            row = await cursor.fetchone()
        self._next_id = int(row[0]) + 1 if row else 1

    async def lookup(self, keys: Iterable[str]) -> None:
        """Make sure every key is in the cache (one query for all misses)."""
        missing = [key for key in set(keys) if key not in self._keys]
        for start in range(0, len(missing), _CHUNK):
            chunk = missing[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            async with self.reader.execute(
                "SELECT k.key, p.id, p.data FROM identity_keys k"
                f" JOIN profiles p ON p.id = k.profile WHERE k.key IN ({marks})",
                chunk,
            ) as cursor:
                rows = await cursor.fetchall()
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
        gone = list(removed)

        def write(connection: sqlite3.Connection) -> None:
            if profiles:
                connection.executemany(
                    "INSERT OR REPLACE INTO profiles (id, updated_at, data) VALUES (?, ?, ?)",
                    profiles,
                )
                connection.executemany(
                    "INSERT OR REPLACE INTO identity_keys (key, profile) VALUES (?, ?)", keys
                )
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
