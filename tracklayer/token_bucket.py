"""A token bucket: ``rate`` tokens a second up to ``capacity``, with an optional pause.

Used to pace each destination (requests/s) and to cap a source's ingest rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(
        self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.capacity = capacity
        self.clock = clock
        self.tokens = capacity
        self.updated = clock()
        self.paused_until = 0.0

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def try_take(self, count: float = 1.0) -> float:
        """Take ``count`` tokens and return 0, or return the seconds until they would exist."""
        now = self.clock()
        if now < self.paused_until:
            return self.paused_until - now
        self._refill(now)
        if self.tokens >= count:
            self.tokens -= count
            return 0.0
        return (count - self.tokens) / self.rate

    async def take(self, count: float = 1.0) -> None:
        """Wait until ``count`` tokens can be taken, then take them."""
        while (wait := self.try_take(count)) > 0:
            await asyncio.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hand out nothing for ``seconds`` (a platform's ``Retry-After``); empties the bucket
        so the resumed flow starts at the steady rate rather than with a burst."""
        now = self.clock()
        self.paused_until = max(self.paused_until, now + seconds)
        self.tokens = 0.0
        self.updated = self.paused_until

    def set_rate(self, rate: float) -> None:
        self._refill(self.clock())
        self.rate = rate
