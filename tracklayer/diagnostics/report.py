"""The report: per destination and event, what happened over a period (CONTRACT.md shape).

Read from the per-minute ``stats`` table; keys with no data are left out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import aiosqlite

from tracklayer.diagnostics import match_quality
from tracklayer.store import stats

OUTCOMES = ("accepted", "observed", "warning", "rejected", "retried", "dead")


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class _Tally:
    """One (destination, event)'s rows, folded into the report entry."""

    def __init__(self) -> None:
        self.entry: dict[str, Any] = {key: 0 for key in OUTCOMES}
        self.entry |= {"duplicates": 0, "suppressed": {}}
        self.latency: dict[str, int] = {}
        self.scored = 0
        self.score_total = 0.0
        self.keys: dict[str, int] = {}

    def add(self, outcome: str, code: str, count: int, message: str, total: float) -> None:
        entry = self.entry
        if outcome in OUTCOMES:
            entry[outcome] += count
            if outcome in ("rejected", "dead") and code:
                entry.setdefault("rejections", []).append(
                    {"code": code, "message": message, "count": count}
                )
        elif outcome == "duplicate":
            entry["duplicates"] += count
        elif outcome == "suppressed":
            entry["suppressed"][code] = entry["suppressed"].get(code, 0) + count
        elif outcome in ("consent_purpose", "consent_region"):
            by = entry.setdefault("consent_suppressed", {"purpose": {}, "region": {}})
            side = by["purpose" if outcome == "consent_purpose" else "region"]
            side[code] = side.get(code, 0) + count
        elif outcome == "value":
            values = entry.setdefault("value", {})
            values[code] = round(values.get(code, 0.0) + total, 2)
        elif outcome == "latency":
            self.latency[code] = self.latency.get(code, 0) + count
        elif outcome == "score":
            self.scored += count
            self.score_total += total
        elif outcome == "key":
            self.keys[code] = self.keys.get(code, 0) + count

    def finish(self, weights: Mapping[str, float] | None) -> dict[str, Any]:
        entry = self.entry
        if self.latency:
            entry["latency_ms"] = {
                "p50": percentile(self.latency, 0.50),
                "p99": percentile(self.latency, 0.99),
            }
        if self.scored:
            coverage = {key: round(n / self.scored, 4) for key, n in sorted(self.keys.items())}
            quality: dict[str, Any] = {
                "mean": round(self.score_total / self.scored, 2),
                "coverage": coverage,
            }
            if weights:
                quality["missing"] = match_quality.missing_ranked(weights, coverage)
            entry["match_quality"] = quality
        return entry


def percentile(buckets: Mapping[str, int], share: float) -> float | None:
    """The bucket bound (ms) under which ``share`` of the counted latencies fall."""
    total = sum(buckets.values())
    if not total:
        return None
    seen = 0
    for bound in [*map(str, stats.LATENCY_BUCKETS_MS), "inf"]:
        seen += buckets.get(bound, 0)
        if seen >= share * total:
            return float(bound) if bound != "inf" else float("inf")
    return None


async def build(
    connection: aiosqlite.Connection,
    since: float,
    until: float,
    weights: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """The report over ``[since, until)``; ``weights`` (destination → match weight table)
    lets it rank the missing identifiers by the lift they would bring."""
    tallies: dict[str, dict[str, _Tally]] = {}
    for destination, name, outcome, code, count, message, total in await stats.summary(
        connection, since, until
    ):
        tally = tallies.setdefault(destination, {}).setdefault(name, _Tally())
        tally.add(outcome, code, count, message or "", total or 0.0)
    weights = weights or {}
    return {
        "since": _iso(since),
        "until": _iso(until),
        "destinations": {
            destination: {
                "events": {
                    name: tally.finish(weights.get(destination)) for name, tally in events.items()
                }
            }
            for destination, events in tallies.items()
        },
    }


def render(report: dict[str, Any]) -> str:
    """The report as text for a terminal."""
    lines = [f"TrackLayer report {report['since']} → {report['until']}"]
    if not report["destinations"]:
        lines.append("  no deliveries recorded in this period")
    for destination, data in sorted(report["destinations"].items()):
        lines.append(f"\n{destination}")
        for name, entry in sorted(data["events"].items()):
            counts = ", ".join(f"{k} {entry[k]}" for k in OUTCOMES if entry[k])
            extra = []
            if entry["duplicates"]:
                extra.append(f"duplicates {entry['duplicates']}")
            for reason, count in sorted(entry["suppressed"].items()):
                extra.append(f"suppressed ({reason}) {count}")
            lines.append(f"  {name}: " + (", ".join(filter(None, [counts, *extra])) or "-"))
            if value := entry.get("value"):
                amounts = ", ".join(f"{total:,.2f} {code}" for code, total in sorted(value.items()))
                lines.append(f"    value {amounts}")
            if latency := entry.get("latency_ms"):
                lines.append(
                    f"    latency p50 ≤ {latency['p50']:g} ms, p99 ≤ {latency['p99']:g} ms"
                )
            consent = entry.get("consent_suppressed")
            if consent:
                purposes = ", ".join(f"{k} {v}" for k, v in sorted(consent["purpose"].items()))
                places = ", ".join(f"{k} {v}" for k, v in sorted(consent["region"].items()))
                lines.append(
                    f"    consent suppressions by purpose: {purposes}; by region: {places}"
                )
            quality = entry.get("match_quality")
            if quality:
                lines.append(f"    match quality {quality['mean']:.1f}/10")
                for item in quality.get("missing", [])[:3]:
                    share, key = item["share"], item["key"]
                    better = quality["mean"] + item["lift"]
                    lines.append(
                        f"      {share:.0%} lack {key}; with {key} the mean would rise from"
                        f" {quality['mean']:.1f} to {better:.1f}"
                    )
            for rejection in entry.get("rejections", []):
                lines.append(
                    f"    {rejection['count']} × {rejection['code']}: {rejection['message']}"
                )
    return "\n".join(lines)
