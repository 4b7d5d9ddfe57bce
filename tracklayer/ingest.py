"""The hand-off from sources to the store: route each event, append it to the journal,
count what happened. Answers return only after the journal has committed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from tracklayer.destinations.webhook import iso8601
from tracklayer.metrics import Metrics
from tracklayer.model import Event
from tracklayer.pipeline.enrich import enrich, learn, link_keys
from tracklayer.pipeline.routing import Routes
from tracklayer.store.identity import IdentityGraph
from tracklayer.store.journal import Admission, Journal, Pending
from tracklayer.store.stats import StatsBuffer


class Tail(Protocol):
    """The live tail (diagnostics/live.py): records reach viewers, if any are watching."""

    viewers: set[Any]

    def publish(self, record: dict[str, Any]) -> None: ...


# Events that only carry a consent change: they update the visitor's state (the identity
# graph keeps the latest stated choice) and are stored, but not delivered anywhere.
CONSENT_UPDATES = frozenset({"Segment Consent Preference Updated", "consent_updated"})


class Ingest:
    def __init__(
        self,
        journal: Journal,
        routes: Routes,
        metrics: Metrics,
        stats: StatsBuffer,
        graph: IdentityGraph,
        windows: Mapping[str, float],
        keep_raw: bool,
        live: Tail | None = None,
    ) -> None:
        self.journal = journal
        self.routes = routes
        self.metrics = metrics
        self.stats = stats
        self.graph = graph
        self.windows = windows
        self.keep_raw = keep_raw
        self.live = live
        self._duplicate_message = metrics.events_duplicate.labels("message")
        self._duplicate_business = metrics.events_duplicate.labels("business")

    async def __call__(
        self, source: str, events: Sequence[Event], client_ids: Sequence[bool]
    ) -> None:
        await self.identify(events)
        pending: list[Pending] = []
        filtered_for: list[list[str]] = []
        for event, client_id in zip(events, client_ids, strict=True):
            if event.source_name in CONSENT_UPDATES or event.name in CONSENT_UPDATES:
                pending.append(Pending(event, [], message_dedup=client_id))
                filtered_for.append([])
                continue
            wanted, filtered = self.routes.split(event)
            filtered_for.append(filtered)
            if not event.consent_stated:
                for destination in wanted:  # anomaly detection watches this share
                    self.stats.add(destination, event.name, "no_consent")
            for destination in filtered:
                self.metrics.events_suppressed.labels(destination, "filter").inc()
                self.stats.add(destination, event.name, "suppressed", "filter")
            # A messageId we generated cannot repeat, so it needs no message-scope check.
            pending.append(Pending(event, wanted, message_dedup=client_id))
        admissions = await self.journal.append(pending)
        if self.live is not None and self.live.viewers:
            for event, admission, filtered in zip(events, admissions, filtered_for, strict=True):
                self.live.publish(live_record(event, admission, filtered))
        for event, admission in zip(events, admissions, strict=True):
            if admission.status == "duplicate":
                self._duplicate_message.inc()
                continue
            if admission.duplicate_for:
                self._duplicate_business.inc()
                for destination in admission.duplicate_for:
                    self.stats.add(destination, event.name, "duplicate", "business")

    async def identify(self, events: Sequence[Event]) -> None:
        """Learn from each event, then fill what it lacks from what is known of the person.
        (Duplicates teach the graph too: a late copy may carry the email.)"""
        keys = [link_keys(event) for event in events]
        await self.graph.lookup(key for event_keys in keys for key in event_keys)
        for event, event_keys in zip(events, keys, strict=True):
            if not event_keys:
                continue
            profile = self.graph.profile_for(event_keys)
            learn(profile, event, self.keep_raw)
            enrich(event, profile, self.windows, self.keep_raw)


def live_record(event: Event, admission: Admission, filtered: list[str]) -> dict[str, Any]:
    """What the live debugger shows for one accepted event."""
    if admission.status == "duplicate":
        dedup = "duplicate_message"
    else:
        dedup = "duplicate_business" if admission.duplicate_for and not admission.queued else "new"
    return {
        "type": "event",
        "at": iso8601(event.received_at),
        "source": event.source,
        "source_name": event.source_name,
        "name": event.name,
        "event_id": event.event_id,
        "message_id": event.message_id,
        "dedup": dedup,
        "duplicate_for": admission.duplicate_for,
        "consent": event.consent,
        "queued": admission.queued,
        "filtered": filtered,
    }
