"""A time-sliced bloom filter: "definitely new" answered in memory, keys expire with the window.

The window is cut into ``slices`` equal spans; a key goes into the span it was seen in and a
lookup asks every live span. When a span falls out of the window it is dropped whole, so
memory stays bounded and old keys stop answering "maybe". One extra span is kept so a key
is remembered for at least the full window.
"""

from __future__ import annotations

import math

import xxhash


class BloomSlice:
    """A plain bloom filter: a bit array probed at positions the caller derives once."""

    __slots__ = ("array", "count")

    def __init__(self, bits: int) -> None:
        self.array = bytearray((bits + 7) // 8)
        self.count = 0

    def add(self, positions: list[int]) -> None:
        array = self.array
        for position in positions:
            array[position >> 3] |= 1 << (position & 7)
        self.count += 1

    def has(self, positions: list[int]) -> bool:
        array = self.array
        return all(array[position >> 3] & 1 << (position & 7) for position in positions)


def optimal_size(keys: int, false_positive_rate: float) -> tuple[int, int]:
    """Bits and hash count for ``keys`` entries at ``false_positive_rate``."""
    bits = math.ceil(-keys * math.log(false_positive_rate) / (math.log(2) ** 2))
    hashes = max(1, round(bits / keys * math.log(2)))
    return max(64, bits), hashes


def digest(key: str | bytes) -> int:
    """The 128-bit xxh3 digest every probe is derived from."""
    return xxhash.xxh3_128_intdigest(key.encode() if isinstance(key, str) else key)


class TimeSlicedBloom:
    """Bloom filter whose keys expire after ``window`` seconds (at the granularity of a slice).

    Sized so that a lookup across every live slice stays within ``false_positive_rate`` when
    ``expected_keys`` arrive per window. A span that receives more than its share (a spike)
    grows another filter instead of saturating, so the error rate holds under bursts at the
    cost of memory, like a scalable bloom filter.
    """

    def __init__(
        self, window: float, expected_keys: int, false_positive_rate: float, slices: int = 8
    ) -> None:
        self.window = window
        self.span = window / slices
        # A lookup probes slices + 1 filters, so each gets its share of the error budget.
        self.bits, self.hashes = optimal_size(
            max(1, math.ceil(expected_keys / slices)), false_positive_rate / (slices + 1)
        )
        self.keep = slices + 1
        self.capacity = max(1, math.ceil(expected_keys / slices))
        self._slices: dict[int, list[BloomSlice]] = {}
        self._newest = -(2**62)

    def positions(self, key_digest: int) -> list[int]:
        """Probe positions by Kirsch–Mitzenmacher double hashing of one 128-bit digest; every
        filter here has the same size, so they are computed once per key."""
        low, high = key_digest & 0xFFFFFFFFFFFFFFFF, key_digest >> 64
        bits = self.bits
        return [(low + i * high) % bits for i in range(self.hashes)]

    def add(self, key_digest: int, seen_at: float) -> None:
        """Remember a key seen at ``seen_at``; keys already outside the window are skipped."""
        index = int(seen_at // self.span)
        if index < self._newest - self.keep + 1:
            return
        filters = self._slices.get(index)
        if filters is None:
            filters = self._slices[index] = [BloomSlice(self.bits)]
            if index > self._newest:
                self._newest = index
                for stale in [i for i in self._slices if i < index - self.keep + 1]:
                    del self._slices[stale]
        elif filters[-1].count >= self.capacity:
            filters.append(BloomSlice(self.bits))
        filters[-1].add(self.positions(key_digest))

    def maybe_contains(self, key_digest: int, now: float) -> bool:
        """False means definitely not seen within the window; True must be confirmed."""
        oldest = int(now // self.span) - self.keep + 1
        positions = self.positions(key_digest)
        for index, filters in self._slices.items():
            if index >= oldest:
                for bloom in filters:
                    if bloom.has(positions):
                        return True
        return False

    @property
    def memory_bytes(self) -> int:
        return sum(len(b.array) for filters in self._slices.values() for b in filters)

    @property
    def keys(self) -> int:
        return sum(b.count for filters in self._slices.values() for b in filters)
