"""Every Prometheus metric TrackLayer exports, declared once (names from CONTRACT.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# The *_created series double the exposition for no use in dashboards.
disable_created_metrics()


class Metrics:
    """One registry per running app, so tests and reloads never collide on globals."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.events_received = Counter(
            "tracklayer_events_received",
            "Events accepted at ingest, by source.",
            ["source"],
            registry=registry,
        )
        self.events_rejected = Counter(
            "tracklayer_events_rejected",
            "Messages refused at ingest, by source and reason.",
            ["source", "reason"],
            registry=registry,
        )
        self.events_filtered = Counter(
            "tracklayer_events_filtered",
            "Events acknowledged but not delivered because the source's allow_events omits them.",
            ["source"],
            registry=registry,
        )
        self.events_duplicate = Counter(
            "tracklayer_events_duplicate",
            "Duplicates dropped: scope message (same messageId) or business (same action).",
            ["scope"],
            registry=registry,
        )
        self.events_suppressed = Counter(
            "tracklayer_events_suppressed",
            "Events not delivered to a destination, by reason (consent, filter).",
            ["destination", "reason"],
            registry=registry,
        )
        self.deliveries = Counter(
            "tracklayer_deliveries",
            "Per-event delivery outcomes.",
            ["destination", "outcome"],
            registry=registry,
        )
        self.delivery_seconds = Histogram(
            "tracklayer_delivery_seconds",
            "Receipt to platform acceptance.",
            ["destination"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
            registry=registry,
        )
        self.outbox_depth = Gauge(
            "tracklayer_outbox_depth",
            "Events waiting for delivery, by destination.",
            ["destination"],
            registry=registry,
        )
        self.dead_letters = Gauge(
            "tracklayer_dead_letters",
            "Events in the dead-letter table, by destination.",
            ["destination"],
            registry=registry,
        )
        self.destination_healthy = Gauge(
            "tracklayer_destination_healthy",
            "1 while a destination answers, 0 after repeated transport or server errors.",
            ["destination"],
            registry=registry,
        )
        self.destination_rate = Gauge(
            "tracklayer_destination_rate",
            "Current request rate allowed to a destination (lowered on 429, recovers).",
            ["destination"],
            registry=registry,
        )
        self.match_quality = Histogram(
            "tracklayer_match_quality",
            "Predicted match quality (0-10) of delivered or observed events.",
            ["destination"],
            buckets=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
            registry=registry,
        )
        self.match_key_coverage = Gauge(
            "tracklayer_match_key_coverage",
            "Share of delivered or observed events whose payload carries each identifier key.",
            ["destination", "key"],
            registry=registry,
        )
        self.anomalies_active = Gauge(
            "tracklayer_anomalies_active",
            "Anomalies currently open, by destination and kind.",
            ["destination", "kind"],
            registry=registry,
        )
        self.store_commits = Counter(
            "tracklayer_store_commits",
            "Group-commit transactions written.",
            registry=registry,
        )
        self.store_failures = Counter(
            "tracklayer_store_failures",
            "Transactions that failed to commit (the requests in them were answered 503).",
            registry=registry,
        )
