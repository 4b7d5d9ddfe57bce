"""Which destinations an event is for, from each destination's ``events`` list."""

from __future__ import annotations

from collections.abc import Iterable

from tracklayer.destinations.base import DestinationConfig
from tracklayer.model import Event


class Routes:
    def __init__(self, destinations: Iterable[DestinationConfig]) -> None:
        self.routes = [
            (d.id, frozenset(d.events) if d.events is not None else None) for d in destinations
        ]

    def split(self, event: Event) -> tuple[list[str], list[str]]:
        """(destinations that take the event, destinations whose ``events`` filter it out)."""
        wanted: list[str] = []
        filtered: list[str] = []
        for destination, names in self.routes:
            if names is None or event.name in names:
                wanted.append(destination)
            else:
                filtered.append(destination)
        return wanted, filtered
