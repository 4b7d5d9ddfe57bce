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
    """A plain bloom filter probed by Kirsch–Mitzenmacher double hashing of one 128-bit
    digest: probe i is ``(low + i * high) % bits``, walked incrementally so a lookup of an
    absent key (the common case) stops at its first clear bit."""

    __slots__ = ("array", "bits", "capacity", "count", "hashes")

    def __init__(self, bits: int, hashes: int, capacity: int) -> None:
        self.array = bytearray((bits + 7) // 8)
        self.bits = bits
        self.hashes = hashes
        self.capacity = capacity  # keys it was sized for
        self.count = 0

    def add(self, key_digest: int) -> None:
        array, bits = self.array, self.bits
        position = (key_digest & 0xFFFFFFFFFFFFFFFF) % bits
        step = (key_digest >> 64) % bits
        for _ in range(self.hashes):
            array[position >> 3] |= 1 << (position & 7)
            position += step
            if position >= bits:
                position -= bits
        self.count += 1

    def has(self, key_digest: int) -> bool:
        array, bits = self.array, self.bits
        position = (key_digest & 0xFFFFFFFFFFFFFFFF) % bits
        step = (key_digest >> 64) % bits
        for _ in range(self.hashes):
            if not array[position >> 3] & 1 << (position & 7):
                return False
            position += step
            if position >= bits:
                position -= bits
        return True


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
    grows another filter instead of saturating, like a scalable bloom filter (Almeida et
    al., 2007): each added filter holds twice the keys of the one before at half its error
    rate, so however large the overload, a span's error stays under twice its share and a
    lookup probes only a logarithmic number of filters.
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
        self._rate = false_positive_rate / (slices + 1)
        self._slices: dict[int, list[BloomSlice]] = {}
        self._newest = -(2**62)

    def _filter(self, level: int) -> BloomSlice:
        """A span's filter number ``level`` (0 first): 2**level the keys at 1/2**level the rate."""
        if level == 0:
            return BloomSlice(self.bits, self.hashes, self.capacity)
        capacity = self.capacity << level
        bits, hashes = optimal_size(capacity, self._rate / (1 << level))
        return BloomSlice(bits, hashes, capacity)

    def add(self, key_digest: int, seen_at: float) -> None:
        """Remember a key seen at ``seen_at``; keys already outside the window are skipped."""
        index = int(seen_at // self.span)
        if index < self._newest - self.keep + 1:
            return
        filters = self._slices.get(index)
        if filters is None:
            filters = self._slices[index] = [self._filter(0)]
            if index > self._newest:
                self._newest = index
                for stale in [i for i in self._slices if i < index - self.keep + 1]:
                    del self._slices[stale]
        elif filters[-1].count >= filters[-1].capacity:
            filters.append(self._filter(len(filters)))
        filters[-1].add(key_digest)

    def maybe_contains(self, key_digest: int, now: float) -> bool:
        """False means definitely not seen within the window; True must be confirmed."""
        oldest = int(now // self.span) - self.keep + 1
        for index, filters in self._slices.items():
            if index >= oldest:
                for bloom in filters:
                    if bloom.has(key_digest):
                        return True
        return False

    @property
    def memory_bytes(self) -> int:
        return sum(len(b.array) for filters in self._slices.values() for b in filters)

    @property
    def keys(self) -> int:
        return sum(b.count for filters in self._slices.values() for b in filters)


class GrowingBloom:
    """A bloom filter for a set that only grows (keys are never removed): a new filter of
    ``capacity`` keys is added whenever the last one is full, so the false-positive rate
    holds however many keys arrive, at about 1.2 bytes per key at 1 %."""

    def __init__(self, capacity: int, false_positive_rate: float) -> None:
        self.capacity = max(1, capacity)
        self.bits, self.hashes = optimal_size(self.capacity, false_positive_rate)
        self._filters = [BloomSlice(self.bits, self.hashes, self.capacity)]

    def add(self, key_digest: int) -> None:
        if self._filters[-1].count >= self.capacity:
            self._filters.append(BloomSlice(self.bits, self.hashes, self.capacity))
        self._filters[-1].add(key_digest)

    def maybe_contains(self, key_digest: int) -> bool:
        return any(bloom.has(key_digest) for bloom in self._filters)

    @property
    def memory_bytes(self) -> int:
        return sum(len(b.array) for b in self._filters)
