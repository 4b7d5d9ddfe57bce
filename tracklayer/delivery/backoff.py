"""Retry timing: exponential backoff with full jitter, and AIMD pacing on throttling."""

from __future__ import annotations

import random

from tracklayer.destinations.base import RetryPolicy


def backoff_delay(policy: RetryPolicy, attempts: int, rng: random.Random = random._inst) -> float:
    """Seconds before attempt ``attempts + 1``: uniform in ``[0, min(max, initial·2^(n-1))]``
    ("full jitter"), so a fleet of retries spreads out instead of arriving together."""
    ceiling = min(policy.max_backoff, policy.initial_backoff * 2 ** max(0, attempts - 1))
    return rng.uniform(0, ceiling)


class AdaptiveRate:
    """Additive increase, multiplicative decrease of a destination's request rate.

    A throttling answer halves the rate (down to 5 % of the ceiling); each successful request
    adds 5 % of the ceiling back, so a destination recovers within ~20 good requests.
    """

    def __init__(self, ceiling: float) -> None:
        self.ceiling = ceiling
        self.rate = ceiling

    def throttled(self) -> float:
        self.rate = max(self.ceiling * 0.05, self.rate / 2)
        return self.rate

    def succeeded(self) -> float:
        self.rate = min(self.ceiling, self.rate + self.ceiling * 0.05)
        return self.rate
