"""Destination health as a state with transitions: logged once when a destination turns
unhealthy and once when it recovers, never a line per failed retry."""

from __future__ import annotations

import logging

log = logging.getLogger("tracklayer.delivery")


class Health:
    """Unhealthy after ``threshold`` consecutive failed requests; healthy on the next answer
    that is not a transport or server failure."""

    def __init__(self, destination: str, threshold: int = 3) -> None:
        self.destination = destination
        self.threshold = threshold
        self.failures = 0
        self.healthy = True
        self.reason = ""

    def failed(self, reason: str) -> bool:
        """Count one failed request; True when this one turned the destination unhealthy."""
        self.failures += 1
        self.reason = reason
        if self.healthy and self.failures >= self.threshold:
            self.healthy = False
            log.warning(
                "destination unhealthy",
                extra={"fields": {"destination": self.destination, "reason": reason}},
            )
            return True
        return False

    def answered(self) -> bool:
        """Record a good answer; True when this one ended an unhealthy spell."""
        recovered = not self.healthy
        if recovered:
            log.info(
                "destination recovered",
                extra={"fields": {"destination": self.destination, "after": self.failures}},
            )
        self.failures, self.healthy, self.reason = 0, True, ""
        return recovered
